"""The runner end to end on the smoke profile, its resume logic, its outputs and its errors."""

import json
import math
import statistics
from collections import Counter

import arviz as az
import jsonschema
import pytest
import torch

from benchmarks import run as runner
from inference import SAMPLERS
from pyro_vae import batch_of, load_dataset
from benchmarks.stages import defence
from benchmarks.schema import RESULTS_SCHEMA


@pytest.mark.slow
def test_smoke_results_follow_the_schema_and_record_what_the_sampler_ran(smoke_run):
    """The sampler configuration each model's defence recorded is the profile's (T, L, chains,
    its adaptation and mass matrix or the sampler's defaults where the profile leaves them),
    and the HMC defence spent chains × (1 + T × L) gradient evaluations per point."""
    _, out, first = smoke_run
    assert set(first["experiments"]) == {"tables"}  # other experiments may have joined since
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    tables, profile = results["experiments"]["tables"], results["profile"]
    assert set(tables["models"]) == {"vae_beta1", "beta_vae_beta5"}
    assert results["environment"]["packages"]["pyro-ppl"]
    assert len(set(tables["references"])) == len(tables["references"]) == profile["references"]
    spec = SAMPLERS[results["sampler"]]
    for entry in tables["models"].values():
        config = entry["defence"]["sampler_config"]
        assert config["sampler"] == results["sampler"] == "hmc"
        assert (config["num_chains"], config["num_leapfrog_steps"]) == (
            profile["num_chains"], profile["num_leapfrog_steps"])
        transitions = config["num_warmup"] + config["num_samples"]
        assert transitions == profile["num_transitions"]
        assert config["num_warmup"] == round(profile["warmup_fraction"] * transitions)
        assert config["adapt"] == (profile["adapt"] or spec.default_adapt)
        assert config["mass_matrix"] == (profile["mass_matrix"] or spec.default_mass)
        assert entry["defence"]["gradient_evaluations_per_point"] == (
            config["num_chains"] * (1 + transitions * config["num_leapfrog_steps"]))
        quality = entry["quality"]  # the clamp's shares on the NLL's first images
        assert 0.0 <= quality["stuck_share"] <= quality["clamped_share"] <= 1.0
        assert quality["clamp_points"] == min(profile["eval_points"], 1000)


@pytest.mark.slow
def test_smoke_stores_attacks_and_chains_of_the_profiles_size(smoke_run):
    """Per model: the attacks (radii, references, restarts, image) inside their L∞ ball and the
    pixel box, radius by radius; the final latents (chains, points, D) of every input group;
    the NetCDF with every point and its kept draws."""
    root, out, results = smoke_run
    profile, radii = results["profile"], results["profile"]["radii"]
    refs, restarts, chains = profile["references"], profile["restarts"], profile["num_chains"]
    indices = torch.load(out / "references.pt", weights_only=True)["indices"]
    x_ref, _ = batch_of(load_dataset("mnist", root, download=False).test, indices)
    assert indices.tolist() == results["experiments"]["tables"]["references"]
    for tag, entry in results["experiments"]["tables"]["models"].items():
        attacks = torch.load(out / f"attacks/{tag}.pt", weights_only=True)
        assert set(attacks) == {"skl", "classifier_class"}
        for attack in attacks.values():
            adversarial = attack["adversarial"]
            assert adversarial.shape == (len(radii), refs, restarts, 1, 28, 28)
            assert attack["objective"].shape == (len(radii), refs, restarts)
            assert 0 <= adversarial.min() and adversarial.max() <= 1
            reach = (adversarial - x_ref[:, None]).abs().flatten(2).amax(dim=(1, 2))
            assert (reach <= torch.tensor(radii) + 1e-6).all()
            assert (reach[1:] > torch.tensor(radii[:-1])).all()  # radius k is the k-th radius
        final_z = torch.load(out / f"chains/{tag}.pt", weights_only=True)["final_z"]
        groups = {"clean": refs} | {f"{name}@{r:g}": refs * restarts
                                    for name in attacks for r in radii}
        assert {name: tuple(z.shape) for name, z in final_z.items()} == {
            name: (chains, points, 64) for name, points in groups.items()}
        chains_file = az.from_netcdf(out / f"chains/{tag}.nc")
        assert dict(chains_file.posterior.sizes) == {
            "chain": chains, "draw": entry["defence"]["sampler_config"]["num_samples"],
            "point": sum(groups.values()), "latent": 64}
        assert Counter(chains_file["point_diagnostics"]["input_group"].values.tolist()) == groups
    assert (out / "examples.png").stat().st_size > 1000
    assert not list(out.rglob("*.tmp"))


def _pair(cell: str) -> tuple[float, float]:
    """'0.70 (0.04)' → (0.70, 0.04); '1.00' → (1.0, 0.0)."""
    mean, _, error = cell.partition(" (")
    return float(mean), float(error.rstrip(")") or 0)


@pytest.mark.slow
def test_smoke_report_cells_are_the_per_reference_statistics_and_verdicts_agree(smoke_run):
    """Every cell of the VAE's rows in Table 2 is the mean (standard error) of the per-reference
    values stored beside it in results.json, and every verdict is ✓ exactly when ours and the
    paper's printed numbers lie within 2 combined standard errors."""
    _, out, results = smoke_run
    rows = {}
    for line in (out / "report.md").read_text().splitlines():
        if line.startswith("| VAE"):  # Table 2's first rows of each label
            label, *cells = line.split(" | ")
            rows.setdefault(label.lstrip("| "), [cell.strip(" |") for cell in cells])
    robustness = results["experiments"]["tables"]["models"]["vae_beta1"]["robustness"]
    radii = [f"{r:g}" for r in results["profile"]["radii"]]
    columns = ([robustness["ms_ssim"][r] for r in radii]
               + [robustness["accuracy"]["class"][r] for r in ("0", *radii)]
               + [robustness["mse_references"]])
    for label, defended in (("VAE", "plain"), ("VAE + HMC", "defended")):
        ours = rows[f"{label} (ours)"]
        assert len(ours) == len(columns)
        for cell, summary, digits in zip(ours, columns, [2] * (len(columns) - 1) + [1]):
            values = summary["per_reference"][defended]
            assert len(values) == results["profile"]["references"]
            error = statistics.stdev(values) / math.sqrt(len(values))
            assert cell == f"{statistics.fmean(values):.{digits}f} ({error:.{digits}f})"
        paper, verdicts = rows[f"{label} (paper)"], rows[f"{label}: verdict"]
        assert len(paper) == len(verdicts) == len(columns)
        for summary, published, verdict in zip(columns, paper, verdicts):
            if not published:
                assert verdict == ""
                continue
            (mean, error), (paper_mean, paper_error) = summary[defended], _pair(published)
            sigmas = abs(mean - paper_mean) / math.hypot(error, paper_error)
            mark, difference, shown = verdict.split(" ", 2)
            assert mark == ("✓" if sigmas <= 2 else "✗"), verdict
            assert float(difference.replace("−", "-")) == pytest.approx(mean - paper_mean,
                                                                         abs=0.051)
            assert shown == f"({sigmas:.1f} SE)"


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(smoke_run, smoke_arguments):
    root, out, first = smoke_run
    first = first["experiments"]["tables"]
    assert "models/beta_vae_beta5.pt" in first["stages_computed"]  # not in the zoo: trained
    again = runner.main(smoke_arguments(root, out))["experiments"]["tables"]
    assert again["stages_computed"] == []
    # the re-render keeps what the computation took, not its own cache-reading seconds
    assert again["computed_in"] == {"commit": first["commit"],
                                    "wall_seconds_total": first["wall_seconds_total"]}
    assert again["models"]["vae_beta1"]["robustness"] == first["models"]["vae_beta1"]["robustness"]


@pytest.mark.slow
def test_interrupted_run_resumes_after_last_finished_stage(smoke_run, smoke_arguments, tmp_path,
                                                        monkeypatch):
    root, _, _ = smoke_run
    out = tmp_path / "interrupted"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(defence, "defend", interrupt)
        with pytest.raises(KeyboardInterrupt):
            runner.main(smoke_arguments(root, out, "--models", "vae", "--train"))
    finished = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"models/vae_beta1.pt", "attacks/vae_beta1.pt"} <= finished
    assert not any(name.endswith(".tmp") for name in finished)
    resumed = runner.main(smoke_arguments(root, out, "--models", "vae", "--train"))
    resumed = resumed["experiments"]["tables"]
    assert "models/vae_beta1.pt" not in resumed["stages_computed"]
    assert "attacks/vae_beta1.pt" not in resumed["stages_computed"]
    assert "chains/vae_beta1.pt" in resumed["stages_computed"]


@pytest.mark.parametrize("argument, choices", [
    (["--dataset", "cifar"], "'mnist', 'fashionmnist', 'colormnist'"),
    (["--dataset", "mnist", "--profile", "huge"], "'paper', 'quick', 'smoke'"),
    (["--dataset", "mnist", "--sampler", "gibbs"], "'hmc', 'nuts', 'map'"),
    (["--dataset", "mnist", "--chains", "1"], "at least 2"),
    (["--dataset", "mnist", "--radii", "0.1,2"], "radii must lie in"),
    (["--dataset", "mnist", "--models", "vae:5"], "a plain vae has β = 1"),
    (["--dataset", "mnist", "--models", "beta_vae"], "needs its β"),
    (["--dataset", "mnist", "--models", "beta_tcvae:-1"], "positive finite"),
    (["--dataset", "mnist", "--models", "vqvae"], "valid forms: vae, beta_vae:<β>"),
    (["--dataset", "mnist", "--references", "0"], "must be at least 1"),
    (["--dataset", "mnist", "--experiment", "ablate"], "'tables', 'posterior_ratio'"),
])
def test_bad_arguments_exit_with_the_choices(argument, choices, capsys):
    with pytest.raises(SystemExit):
        runner.parse_arguments(argument)
    assert choices in capsys.readouterr().err


def test_a_bad_model_list_stops_before_the_run_directory_is_pinned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        runner.main(["--dataset", "mnist", "--models", "vae:5", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_default_run_directories_keep_decoder_outputs_and_training_apart():
    """The README's two ColorMNIST commands must not collide in one pinned directory."""
    def folder(*extra):
        arguments = runner.parse_arguments(["--dataset", "colormnist", *extra])
        profile = runner.PROFILES[arguments.profile]
        return runner.default_run_directory(arguments, profile).as_posix()

    assert folder() == "runs/colormnist-quick-hmc"
    assert folder("--decoder-output", "identity") == "runs/colormnist-quick-hmc-identity"
    assert folder("--train", "--sampler", "nuts") == "runs/colormnist-quick-nuts-train"
    assert folder("--models", "hvae") == "runs/colormnist-quick-hmc-hvae_beta1"
    assert folder("--models", "vae") == "runs/colormnist-quick-hmc"  # the profile's own


def test_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(runner.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        runner.resolve_device("cuda")


def test_missing_data_says_what_to_do(smoke_arguments, tmp_path, monkeypatch):
    monkeypatch.setattr("pyro_vae.data._download", lambda *a: (_ for _ in ()).throw(OSError()))
    with pytest.raises(SystemExit, match="PYRO_VAE_DATA"):
        runner.main(smoke_arguments(tmp_path / "empty", tmp_path / "out"))


@pytest.mark.slow
def test_smoke_runs_the_hierarchical_vae(smoke_arguments, mnist_root, tmp_path):
    """``--models hvae``: the zoo's or trained in the run, attacked on its top groups,
    defended over all groups jointly, with per-group chain diagnostics in the report."""
    out = tmp_path / "hvae"
    results = runner.main(smoke_arguments(mnist_root, out, "--models", "hvae"))
    entry = results["experiments"]["tables"]["models"]["hvae_beta1"]
    assert entry["kind"] == "hvae"
    assert entry["defence"]["sampler_config"]["parametrisation"] == "noncentred"
    assert entry["quality"]["clamped_share"] is None  # no single decoder network to probe
    skl = entry["robustness"]["ms_ssim"]["0.1"]
    assert len(skl["per_reference"]["defended"]) == results["profile"]["references"]
    report = (out / "report.md").read_text()
    assert "| HVAE (ours) |" in report and "| HVAE + HMC (ours) |" in report
    assert (out / "chains/hvae_beta1.nc").stat().st_size > 1000


@pytest.mark.slow
def test_a_checkpoint_is_the_runs_one_model(smoke_run, smoke_arguments, tmp_path):
    """``--checkpoint``: the file's kind and β become the run's model, its sha256 and training
    record land in results.json, and the results pages' command names the file."""
    from benchmarks.docs import command
    root, run, _ = smoke_run
    checkpoint = run / "models" / "beta_vae_beta5.pt"
    results = runner.main(smoke_arguments(root, tmp_path, "--checkpoint", str(checkpoint),
                                          "--references", "3"))
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["model_source"] == "checkpoint"
    assert list(results["experiments"]["tables"]["models"]) == ["beta_vae_beta5"]
    assert results["checkpoint"]["sha256"] == runner.sha256_of(checkpoint)
    assert (results["checkpoint"]["kind"], results["checkpoint"]["beta"]) == ("beta_vae", 5.0)
    assert f"--checkpoint {checkpoint}" in command(results, "tables")
    wrong_dataset = runner.parse_arguments(["--dataset", "colormnist", "--checkpoint", str(checkpoint)])
    with pytest.raises(SystemExit, match="1-channel model; colormnist images have 3"):
        runner.read_checkpoint(wrong_dataset)


def test_bad_checkpoint_arguments_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        runner.parse_arguments(["--dataset", "mnist", "--checkpoint", str(tmp_path / "no.pt")])
    assert "no such file" in capsys.readouterr().err
    present = tmp_path / "model.pt"
    present.write_bytes(b"")
    with pytest.raises(SystemExit):
        runner.parse_arguments(["--dataset", "mnist", "--checkpoint", str(present),
                                "--models", "vae"])
    assert "--models and --decoder-output do not apply" in capsys.readouterr().err
    not_a_model = runner.parse_arguments(["--dataset", "mnist", "--checkpoint", str(present)])
    with pytest.raises(SystemExit, match="error: "):
        runner.read_checkpoint(not_a_model)
