"""The reproduction pipeline, one resumable stage at a time (PROTOCOL.md, all sections).

data → models (SVI) → latent classifiers → stratified references → attacks (SKL on the guide,
classifier attack per task) → defence (MCMC on p(z | x_a), one batched call per model) → metrics.
Each stage's output goes through ``RunDirectory.stage``: a rerun loads what is finished.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

import pyro
import torch
from tqdm.auto import tqdm

from attacks import (ClassifierCrossEntropy, EncoderDivergence, PGDConfig, adversarial_accuracy,
                     classifier_accuracy, encoder_from_guide, mean_and_standard_error, ms_ssim,
                     pgd_attack, stratified_references, train_latent_classifier)
from inference import (ks_two_sample, log_posterior_ratio, sample_posterior, save_netcdf,
                       summarize, to_inference_data)
from pyro_vae import (ConvVAE, TrainConfig, VAEConfig, batch_of, evaluate_vae, load_checkpoint,
                      load_dataset, save_checkpoint, train_vae)

from .artifacts import RunDirectory
from .frechet import FeatureCNN, feature_accuracy, prior_sample_fd, train_feature_cnn
from .profiles import Profile

MAX_TREE_DEPTH = 6  # NUTS: at most 63 leapfrog steps per transition, about 3 × the HMC's L = 20
NETCDF_MAX_DRAWS = 100  # thinning for the saved chains; R-hat / ESS are computed on all draws


@dataclass(frozen=True)
class Settings:
    dataset: str
    profile: Profile
    sampler: str
    device: torch.device
    seed: int
    data_root: str | None
    progress: bool

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("digit", "colour") if self.dataset == "colormnist" else ("class",)


def _scalar_summary(idata) -> dict:
    """The ArviZ summary's scalar fields (worst R-hat, smallest ESS, acceptance, divergences)."""
    summary = asdict(summarize(idata))
    return {k: v for k, v in summary.items() if not isinstance(v, np.ndarray)}


def encoder_latent(vae: ConvVAE, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ q(z|x) drawn from ``generator`` (the paper's reconstruction latent), or the encoder
    mean when ``generator`` is None. Shape: x (B, C, H, W) → (B, D)."""
    loc, scale = vae.encode(x)
    if generator is None:
        return loc
    return loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device)


def model_tag(kind: str, beta: float) -> str:
    return f"{kind}_beta{beta:g}"


def _labels(targets: torch.Tensor) -> torch.Tensor:
    """Targets as (N, tasks): ColorMNIST already is (digit, colour); others get one column."""
    return targets if targets.dim() == 2 else targets.unsqueeze(1)


@torch.no_grad()
def _encoder_means(vae: ConvVAE, subset, device, limit: int | None = None) -> tuple:
    size = len(subset) if limit is None else min(limit, len(subset))
    means, labels = [], []
    for start in range(0, size, 2048):
        x, targets = batch_of(subset, torch.arange(start, min(start + 2048, size)))
        means.append(vae.encode(x.to(device))[0])
        labels.append(_labels(targets).to(device))
    return torch.cat(means), torch.cat(labels)


class Experiment:
    """Runs every stage for one dataset; ``run()`` returns the results dictionary."""

    def __init__(self, settings: Settings, run_dir: RunDirectory) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.profile = settings.profile
        self.device = settings.device
        self.wall_times: dict[str, float] = {}
        self.splits = load_dataset(settings.dataset, settings.data_root,
                                   all_colours=self.profile.all_colours, seed=settings.seed)

    # ----------------------------------------------------------------- shared stages
    def references(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stratified test references: indices (N,), images (N, C, H, W), labels (N, tasks)."""
        test_labels = _labels(self.splits.test.dataset.targets[self.splits.test.indices])

        def choose():
            generator = torch.Generator().manual_seed(self.settings.seed)
            return {"indices": stratified_references(test_labels, total=self.profile.references,
                                                     generator=generator)}

        indices = self.run_dir.stage("references.pt", choose)["indices"]
        x, targets = batch_of(self.splits.test, indices)
        return indices, x.to(self.device), _labels(targets).to(self.device)

    def feature_network(self) -> tuple[FeatureCNN, float]:
        """The CNN behind FD-CNN, and its test accuracy."""
        def fit():
            network = train_feature_cnn(self.splits, epochs=self.profile.feature_epochs,
                                        device=self.device, seed=self.settings.seed,
                                        max_points=self.profile.max_train_points)
            accuracy = feature_accuracy(network, self.splits.test, points=2000,
                                        device=self.device)
            return {"state_dict": network.state_dict(), "test_accuracy": accuracy}

        saved = self.timed("feature network", lambda: self.run_dir.stage("feature_cnn.pt", fit))
        network = FeatureCNN(self.splits.num_channels).to(self.device)
        network.load_state_dict(saved["state_dict"])
        return network.eval().requires_grad_(False), saved["test_accuracy"]

    def timed(self, name: str, work):
        started = time.perf_counter()
        result = work()
        self.wall_times[name] = self.wall_times.get(name, 0.0) + time.perf_counter() - started
        return result

    # ----------------------------------------------------------------- per-model stages
    def model(self, kind: str, beta: float) -> tuple[ConvVAE, dict]:
        """The trained VAE, frozen (attacks and the defence differentiate inputs and latents
        only), and its training metadata."""
        tag = model_tag(kind, beta)
        path = self.run_dir.path(f"models/{tag}.pt")
        if path.exists() and not self.run_dir.fresh:
            vae, metadata = load_checkpoint(path, map_location=self.device, with_metadata=True)
            return vae.requires_grad_(False), metadata
        config = VAEConfig(kind=kind, beta=beta, num_channels=self.splits.num_channels)
        vae = ConvVAE(config)
        train_config = TrainConfig(epochs=self.profile.epochs, seed=self.settings.seed,
                                   max_train_points=self.profile.max_train_points)
        started = time.perf_counter()
        history = train_vae(vae, self.splits, train_config, device=self.device,
                            progress=self.settings.progress,
                            validation_points=self.profile.eval_points)
        metadata = {"train_seconds": time.perf_counter() - started,
                    "train_loss": history.train_loss, "validation_loss": history.validation_loss,
                    "learning_rate": history.learning_rate, "epoch_seconds": history.seconds}
        save_checkpoint(vae, path, metadata=metadata)
        self.run_dir.computed.append(f"models/{tag}.pt")
        return vae.to(self.device).eval().requires_grad_(False), metadata

    def quality(self, vae: ConvVAE, tag: str, network: FeatureCNN) -> dict:
        def evaluate():
            evaluation = evaluate_vae(vae, self.splits.test, device=self.device,
                                      num_importance_samples=self.profile.nll_samples,
                                      max_points=self.profile.eval_points,
                                      progress=self.settings.progress, seed=self.settings.seed)
            fd = prior_sample_fd(network, vae, self.splits.test, points=self.profile.fid_points,
                                 device=self.device, seed=self.settings.seed)
            return {**evaluation.to_dict(), "fd_cnn": fd}

        return self.run_dir.stage(f"quality/{tag}.json", evaluate)

    def classifiers(self, vae: ConvVAE, tag: str) -> tuple[dict[str, torch.nn.Linear], dict]:
        """Latent classifiers per task and their clean test accuracy."""
        def fit():
            train_codes, train_labels = _encoder_means(vae, self.splits.train, self.device,
                                                       self.profile.max_train_points)
            val_codes, val_labels = _encoder_means(vae, self.splits.validation, self.device)
            test_codes, test_labels = _encoder_means(vae, self.splits.test, self.device)
            fitted = {}
            for column, task in enumerate(self.settings.tasks):
                generator = torch.Generator(device=self.device).manual_seed(self.settings.seed)
                layer = train_latent_classifier(
                    train_codes=train_codes, train_labels=train_labels[:, column],
                    val_codes=val_codes, val_labels=val_labels[:, column], generator=generator)
                fitted[task] = {"weight": layer.weight.cpu(), "bias": layer.bias.cpu(),
                                "test_accuracy": classifier_accuracy(
                                    layer, codes=test_codes, labels=test_labels[:, column])}
            return fitted

        saved = self.run_dir.stage(f"classifiers/{tag}.pt", fit)
        layers = {}
        for task, state in saved.items():
            layer = torch.nn.Linear(*reversed(state["weight"].shape)).to(self.device)
            layer.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
            layers[task] = layer.requires_grad_(False).eval()
        return layers, {task: saved[task]["test_accuracy"] for task in saved}

    def attacks(self, vae: ConvVAE, tag: str, x_ref: torch.Tensor,
                classifiers: dict) -> dict[str, torch.Tensor]:
        """name → adversarial inputs (K radii, N refs, R restarts, C, H, W)."""
        encode = encoder_from_guide(vae.guide)
        objectives = {"skl": EncoderDivergence(encode)}
        objectives |= {f"classifier_{task}": ClassifierCrossEntropy(encode, layer)
                       for task, layer in classifiers.items()}
        config = PGDConfig(num_steps=self.profile.attack_steps, restarts=self.profile.restarts)

        def attack():
            results = {}
            for name, objective in tqdm(objectives.items(), desc=f"attack {tag}",
                                        disable=not self.settings.progress):
                generator = torch.Generator(device=self.device).manual_seed(self.settings.seed)
                results[name] = pgd_attack(objective, x_ref, radii=self.profile.radii,
                                           config=config, generator=generator).adversarial.cpu()
            return results

        return {k: v.to(self.device) for k, v in
                self.run_dir.stage(f"attacks/{tag}.pt", attack).items()}

    def sample(self, vae: ConvVAE, inputs: torch.Tensor, init="sample"):
        """The profile's sampler on p(z | inputs): T transitions, the first ``warmup_fraction``
        adapting; ``init`` as in :func:`inference.sample_posterior`. Returns PosteriorSamples."""
        num_transitions, step_size = self.profile.sampler_settings(self.settings.dataset)
        num_warmup = int(round(self.profile.warmup_fraction * num_transitions))
        with pyro.validation_enabled(False):  # inputs are in [0, 1] by construction
            return sample_posterior(
                vae.model, vae.guide, (inputs,), sampler=self.settings.sampler,
                num_chains=self.profile.num_chains, num_warmup=num_warmup,
                num_samples=num_transitions - num_warmup, step_size=step_size,
                num_leapfrog_steps=self.profile.num_leapfrog_steps, init=init,
                max_tree_depth=MAX_TREE_DEPTH, seed=self.settings.seed,
                progress_bar=self.settings.progress)

    def defend(self, vae: ConvVAE, tag: str, x_ref: torch.Tensor,
               adversarial: dict[str, torch.Tensor]) -> dict:
        """One batched MCMC call over every input that needs a defence.

        Groups: ``clean`` (the references) and ``<attack>@<radius>`` for every attack and radius.
        Returns the final latent of every chain per group, (chains, points, D), the diagnostics
        summary per group, and the sampler's wall time per point.
        """
        groups = {"clean": x_ref}
        for name, per_radius in adversarial.items():
            for k, radius in enumerate(self.profile.radii):
                groups[f"{name}@{radius:g}"] = per_radius[k].flatten(0, 1)

        def run_chains():
            inputs = torch.cat(list(groups.values()))
            started = time.perf_counter()
            samples = self.sample(vae, inputs)
            seconds = time.perf_counter() - started
            idata = to_inference_data(samples)
            bounds, start = {}, 0
            for name, x in groups.items():
                bounds[name] = (start, start + len(x))
                start += len(x)
            diagnostics = {name: _scalar_summary(idata.isel(point=slice(*span)))
                           for name, span in bounds.items()}
            thin = max(1, samples.z.shape[1] // NETCDF_MAX_DRAWS)
            save_netcdf(idata.isel(draw=slice(None, None, thin)),
                        self.run_dir.path(f"chains/{tag}.nc"))
            mean_z = samples.z.mean(1)  # posterior mean of the kept draws, per chain
            return {"final_z": {name: samples.final_z[:, slice(*span)].cpu()
                                for name, span in bounds.items()},
                    "mean_z": {name: mean_z[:, slice(*span)].cpu()
                               for name, span in bounds.items()},
                    "diagnostics": diagnostics,
                    "seconds_per_point": seconds / len(inputs),
                    "num_transitions": samples.config.num_warmup + samples.config.num_samples,
                    "num_warmup": samples.config.num_warmup,
                    "step_size": samples.config.step_size, "sampler_config": asdict(samples.config),
                    "final_step_size_mean": float(samples.step_size.mean())}

        return self.timed("defence", lambda: self.run_dir.stage(f"chains/{tag}.pt", run_chains))

    # ----------------------------------------------------------------- metrics
    @torch.no_grad()
    def robustness(self, vae: ConvVAE, x_ref: torch.Tensor, y_ref: torch.Tensor,
                   classifiers: dict, adversarial: dict, defended: dict | None) -> dict:
        """MS-SSIM, adversarial accuracy and reference MSE, without and with the defence.

        Reconstructions follow the paper: x̃ = decode(z) with z ~ q(z|x) for the reference and
        the undefended attack, and z the chain's final state for the defence; every comparison
        draws its own z. The ``*_mean_reconstruction`` variants (beyond the paper) decode the
        encoder mean instead, and for the defence the mean of the kept draws of each chain.
        ``ms_ssim_clean`` is the ceiling of the sampled metric: MS-SSIM between two independent
        sampled reconstructions of each reference (R pairs). With ``defended`` None (attacks
        only) every entry holds its "plain" value alone.
        """
        refs, restarts, chains = len(x_ref), self.profile.restarts, self.profile.num_chains
        generator = torch.Generator(device=self.device).manual_seed(self.settings.seed)
        defended_latents = defended and {"sample": defended["final_z"],
                                         "mean": defended["mean_z"]}

        def reconstruct(x, mode):
            return vae.decode(encoder_latent(vae, x, generator if mode == "sample" else None))

        def decode_defended(name, mode):  # point-major, chain-minor: (points · chains, C, H, W)
            z = defended_latents[mode][name].to(self.device)
            return vae.decode(z.transpose(0, 1).flatten(0, 1))

        def similarity(images, copies, mode):  # images (refs · copies, ...) → (refs, copies)
            reference = reconstruct(x_ref.repeat_interleave(copies, 0), mode)
            return ms_ssim(reference, images).view(refs, copies)

        def squared_error(images, copies):  # reference MSE on the 0–255 scale, (refs, copies)
            difference = 255 * (images - x_ref.repeat_interleave(copies, 0))
            return (difference**2).flatten(1).mean(1).view(refs, copies)

        def entry(plain, guarded):  # guarded: a thunk, evaluated only when there is a defence
            summary = {"plain": mean_and_standard_error(plain)}
            if defended is not None:
                summary["defended"] = mean_and_standard_error(guarded())
            return summary

        metrics: dict = {"accuracy": {}}
        for mode, suffix in (("sample", ""), ("mean", "_mean_reconstruction")):
            per_radius = {}
            for k, radius in enumerate(self.profile.radii):
                x_adv = adversarial["skl"][k].flatten(0, 1)
                per_radius[f"{radius:g}"] = entry(
                    similarity(reconstruct(x_adv, mode), restarts, mode),
                    lambda: similarity(decode_defended(f"skl@{radius:g}", mode),
                                       restarts * chains, mode))
            metrics[f"ms_ssim{suffix}"] = per_radius
            metrics[f"mse_references{suffix}"] = entry(
                squared_error(reconstruct(x_ref, mode), 1),
                lambda: squared_error(decode_defended("clean", mode), chains))
        # Drawn last so that the generator's stream, hence every number above, is unchanged.
        clean_copies = reconstruct(x_ref.repeat_interleave(restarts, 0), "sample")
        metrics["ms_ssim_clean"] = mean_and_standard_error(
            similarity(clean_copies, restarts, "sample"))
        final = defended and {name: z.to(self.device) for name, z in defended["final_z"].items()}
        for column, (task, layer) in enumerate(classifiers.items()):
            clean_prediction = layer(vae.encode(x_ref)[0]).argmax(-1)
            truth = y_ref[:, column]
            per_radius = {"0": entry(
                adversarial_accuracy(clean_prediction.unsqueeze(1), reference_classes=truth),
                lambda: adversarial_accuracy(layer(final["clean"]).argmax(-1).T,
                                             reference_classes=truth))}
            for k, radius in enumerate(self.profile.radii):
                name = f"classifier_{task}"
                x_adv = adversarial[name][k].flatten(0, 1)
                plain = layer(vae.encode(x_adv)[0]).argmax(-1).view(refs, restarts)
                # final latents (chains, refs·R, D) → predictions (refs, R·chains)
                per_radius[f"{radius:g}"] = entry(
                    adversarial_accuracy(plain, reference_classes=clean_prediction),
                    lambda: adversarial_accuracy(
                        layer(final[f"{name}@{radius:g}"]).argmax(-1).T.reshape(
                            refs, restarts * chains), reference_classes=clean_prediction))
            metrics["accuracy"][task] = per_radius
        return metrics

    @torch.no_grad()
    def posterior_ratio(self, vae: ConvVAE, x_ref: torch.Tensor, adversarial: dict,
                        defended: dict) -> dict:
        """Eq. 11 at the first radius: z₁ ~ q(z|x_r), z₂ = z_a ~ q(z|x_a) or z_a after MCMC."""
        radius = self.profile.radii[0]
        x_adv = adversarial["skl"][0].flatten(0, 1)
        x_ref_tiled = x_ref.repeat_interleave(self.profile.restarts, 0)
        generator = torch.Generator(device=self.device).manual_seed(self.settings.seed)

        z_ref = encoder_latent(vae, x_ref_tiled, generator)
        z_adv = encoder_latent(vae, x_adv, generator)
        z_defended = defended["final_z"][f"skl@{radius:g}"][0].to(self.device)
        without = log_posterior_ratio(vae.model, (x_ref_tiled,), z_ref, z_adv)
        with_mcmc = log_posterior_ratio(vae.model, (x_ref_tiled,), z_ref, z_defended)
        test = ks_two_sample(without.cpu().numpy(), with_mcmc.cpu().numpy())
        return {"radius": radius, "without_defence": without.cpu().tolist(),
                "with_defence": with_mcmc.cpu().tolist(),
                "ks_statistic": float(test.statistic), "ks_pvalue": float(test.pvalue)}

    def robustness_over_time(self, vae: ConvVAE, x_ref: torch.Tensor, adversarial: dict) -> dict:
        """Figure 6 / Table 5: MS-SSIM after t transitions, and seconds per point.

        On the first restart of every reference at the first radius, one chain per input runs
        max(t) transitions with the paper's never-frozen adaptation (Algorithm 1); the state after
        t transitions is read off that run, and t transitions are charged t times the measured
        time per transition.
        """
        radius = self.profile.radii[0]
        x_adv = adversarial["skl"][0][:, 0]  # (refs, C, H, W)
        horizon = max(max(self.profile.timing_transitions), 1)
        _, step_size = self.profile.sampler_settings(self.settings.dataset)
        started = time.perf_counter()
        with pyro.validation_enabled(False):
            samples = sample_posterior(
                vae.model, vae.guide, (x_adv,), sampler=self.settings.sampler, num_chains=1,
                num_warmup=0, num_samples=horizon, step_size=step_size,
                num_leapfrog_steps=self.profile.num_leapfrog_steps, adapt_after_warmup=True,
                max_tree_depth=MAX_TREE_DEPTH, seed=self.settings.seed)
        seconds_per_transition = (time.perf_counter() - started) / horizon / len(x_adv)
        generator = torch.Generator(device=self.device).manual_seed(self.settings.seed)

        def decode_sample(x):  # the paper's reconstruction: decode z ~ q(z|x)
            return vae.decode(encoder_latent(vae, x, generator))

        with torch.no_grad():
            encode_start = time.perf_counter()
            plain = decode_sample(x_adv)
            encode_seconds = (time.perf_counter() - encode_start) / len(x_adv)
            curve = []
            for steps in self.profile.timing_transitions:
                images = plain if steps == 0 else vae.decode(samples.z[0, steps - 1])
                score = ms_ssim(decode_sample(x_ref), images)
                mean, error = mean_and_standard_error(score)
                curve.append({"transitions": steps, "ms_ssim": mean, "standard_error": error,
                              "seconds_per_point": encode_seconds + steps * seconds_per_transition})
        return {"radius": radius, "points": len(x_adv), "curve": curve}

    # ----------------------------------------------------------------- all of it
    def run(self) -> dict:
        """Every stage for every model of the profile; returns the results dictionary."""
        network, feature_accuracy_ = self.feature_network()
        indices, x_ref, y_ref = self.references()
        results = {"references": indices.tolist(), "feature_network_accuracy": feature_accuracy_,
                   "models": {}}
        for position, (kind, beta) in enumerate(self.profile.models):
            tag = model_tag(kind, beta)
            vae, training = self.timed("training", lambda: self.model(kind, beta))
            quality = self.timed("evaluation", lambda: self.quality(vae, tag, network))
            classifiers, accuracy = self.timed("classifiers", lambda: self.classifiers(vae, tag))
            adversarial = self.timed("attacks",
                                     lambda: self.attacks(vae, tag, x_ref, classifiers))
            defended = self.defend(vae, tag, x_ref, adversarial)
            robustness = self.timed("metrics", lambda: self.run_dir.stage(
                f"metrics/{tag}.json",
                lambda: self.robustness(vae, x_ref, y_ref, classifiers, adversarial, defended)))
            entry = {"kind": kind, "beta": beta, "training": training, "quality": quality,
                     "classifier_test_accuracy": accuracy, "robustness": robustness,
                     "defence": {k: v for k, v in defended.items()
                                 if k not in ("final_z", "mean_z")}}
            if position == 0:  # figures 2 and 6 are about the plain VAE
                entry["posterior_ratio"] = self.timed("posterior ratio", lambda: self.run_dir.stage(
                    f"metrics/{tag}_posterior_ratio.json",
                    lambda: self.posterior_ratio(vae, x_ref, adversarial, defended)))
                entry["robustness_over_time"] = self.timed("time curve", lambda: self.run_dir.stage(
                    f"metrics/{tag}_time_curve.json",
                    lambda: self.robustness_over_time(vae, x_ref, adversarial)))
                entry["examples"] = self.examples(vae, x_ref, adversarial, defended)
            results["models"][tag] = entry
        results["wall_seconds"] = dict(self.wall_times)
        return results

    @torch.no_grad()
    def examples(self, vae: ConvVAE, x_ref, adversarial, defended, count: int = 8) -> dict:
        """Figure 3 rows for the first radius: x_r, x̃_r, x_a, x̃_a, x̃_a after the defence."""
        radius = self.profile.radii[0]
        pick = torch.linspace(0, len(x_ref) - 1, min(count, len(x_ref))).long().to(self.device)
        x_adv = adversarial["skl"][0][pick, 0]
        z = defended["final_z"][f"skl@{radius:g}"][0].to(self.device)[pick * self.profile.restarts]
        rows = {"x_r": x_ref[pick], "recon_x_r": vae.reconstruct(x_ref[pick]), "x_a": x_adv,
                "recon_x_a": vae.reconstruct(x_adv), "recon_x_a_defended": vae.decode(z)}
        return {"radius": radius, "rows": {k: v.cpu() for k, v in rows.items()}}
