"""The runner end to end on the smoke profile, its resume logic, its outputs and its errors."""

import json

import jsonschema
import pytest

from benchmarks import run as runner
from benchmarks.stages import defence
from benchmarks.schema import RESULTS_SCHEMA


@pytest.mark.slow
def test_smoke_results_follow_the_schema(smoke_run):
    _, out, first = smoke_run
    assert set(first["experiments"]) == {"tables"}  # other experiments may have joined since
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert set(results["experiments"]["tables"]["models"]) == {"vae_beta1", "beta_vae_beta5"}
    assert results["environment"]["packages"]["pyro-ppl"]


@pytest.mark.slow
def test_smoke_writes_report_figures_and_chains(smoke_run):
    _, out, _ = smoke_run
    report = (out / "report.md").read_text()
    assert "## Table 2" in report and "VAE + HMC (ours)" in report and "(paper)" in report
    for name in ("examples.png", "chains/vae_beta1.nc", "chains/beta_vae_beta5.nc"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, name
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(smoke_run, smoke_arguments):
    root, out, first = smoke_run
    first = first["experiments"]["tables"]
    assert "models/beta_vae_beta5.pt" in first["stages_computed"]  # not in the zoo: trained
    again = runner.main(smoke_arguments(root, out))["experiments"]["tables"]
    assert again["stages_computed"] == []
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
    skl = entry["robustness"]["ms_ssim"]["0.1"]
    assert len(skl["per_reference"]["defended"]) == results["profile"]["references"]
    report = (out / "report.md").read_text()
    assert "| HVAE (ours) |" in report and "| HVAE + HMC (ours) |" in report
    assert (out / "chains/hvae_beta1.nc").stat().st_size > 1000
