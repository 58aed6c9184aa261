"""Run-directory stages: cached by name, recomputed when their code or inputs change."""

import sys

import pytest

from benchmarks.artifacts import ConfigurationMismatch, RunDirectory


@pytest.fixture
def stage_module(tmp_path, monkeypatch):
    """An importable module ``stage_code`` whose source the test can edit."""
    source = tmp_path / "stage_code.py"
    source.write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield source
    sys.modules.pop("stage_code", None)


def test_a_stage_is_computed_once_then_loaded(tmp_path, stage_module):
    run = RunDirectory(tmp_path / "run")
    calls = []
    for _ in range(2):
        value = run.stage("metrics.json", lambda: calls.append(1) or {"x": 1}, code=("stage_code",))
    assert value == {"x": 1} and len(calls) == 1 and run.computed == ["metrics.json"]


def test_changed_code_recomputes_the_stage_and_everything_after_it(tmp_path, stage_module):
    run = RunDirectory(tmp_path / "run")
    run.stage("attacks.json", lambda: {"skl": 1}, code=("stage_code",))
    run.stage("metrics.json", lambda: {"ms_ssim": 0.5}, after=("attacks.json",))
    stage_module.write_text("SCALE = 2  # a fixed metric\n")
    rerun = RunDirectory(tmp_path / "run")
    assert rerun.stage("attacks.json", lambda: {"skl": 2}, code=("stage_code",)) == {"skl": 2}
    assert rerun.stage("metrics.json", lambda: {"ms_ssim": 0.6},
                       after=("attacks.json",)) == {"ms_ssim": 0.6}
    assert rerun.computed == ["attacks.json", "metrics.json"]
    untouched = RunDirectory(tmp_path / "run")
    untouched.stage("attacks.json", lambda: {"skl": 3}, code=("stage_code",))
    untouched.stage("metrics.json", lambda: {"ms_ssim": 0.7}, after=("attacks.json",))
    assert untouched.computed == []


def test_another_model_identity_recomputes(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.stage("chains.json", lambda: [1], identity="zoo:aaa")
    assert run.stage("chains.json", lambda: [2], identity="zoo:bbb") == [2]


def test_a_directory_refuses_another_configuration(tmp_path):
    RunDirectory(tmp_path / "run").pin_configuration({"seed": 0, "profile": {"chains": 2}})
    with pytest.raises(ConfigurationMismatch, match=r"another configuration \(seed: 0 → 1\)"):
        RunDirectory(tmp_path / "run").pin_configuration({"seed": 1, "profile": {"chains": 2}})
    # a knob added since the run is named as such
    with pytest.raises(ConfigurationMismatch, match="profile.knob: 'absent' → None"):
        RunDirectory(tmp_path / "run").pin_configuration({"seed": 0,
                                                          "profile": {"chains": 2, "knob": None}})
