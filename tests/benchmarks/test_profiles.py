import pytest

from benchmarks.profiles import (EVALUATION_FIELDS, PAPER_SAMPLER, PROFILES, TRAINING_FIELDS,
                                 with_overrides)
from benchmarks.stages.defence import profile_adaptation


def test_paper_profile_is_the_protocol():
    paper = PROFILES["paper"]
    assert paper.references == 50 and paper.restarts == 10 and paper.radii == (0.1, 0.2)
    assert paper.num_leapfrog_steps == 20 and paper.attack_steps == 50 and paper.epochs == 300
    assert len(paper.models) == 7 and paper.cuts("colormnist") == []
    assert paper.sampler_settings("colormnist") == PAPER_SAMPLER["colormnist"] == (1000, 0.05)


def test_hierarchical_models_get_the_nvae_settings_of_table_8():
    assert PROFILES["paper"].sampler_settings("mnist", hierarchical=True) == (2000, 1e-4)
    # the paper's sampler moves z itself; the quick profile leaves the choice to the sampler
    # (non-centred groups for a hierarchical model)
    assert profile_adaptation(PROFILES["paper"], "hmc") == {
        "adapt": "paper", "mass_matrix": "identity", "parametrisation": "centred"}
    assert profile_adaptation(PROFILES["quick"], "hmc")["parametrisation"] == "auto"
    assert "parametrisation = the sampler's default (paper: centred)" in PROFILES["quick"].cuts("mnist")
    quick_transitions = PROFILES["quick"].num_transitions
    assert PROFILES["quick"].sampler_settings("mnist", hierarchical=True) == (quick_transitions, 0.03)
    override = with_overrides(PROFILES["quick"], step_size=0.2)
    assert override.sampler_settings("mnist", hierarchical=True) == (quick_transitions, 0.2)


def test_quick_profile_reports_what_it_cuts():
    cuts = PROFILES["quick"].cuts("colormnist")
    assert any(c.startswith("epochs = 4") for c in cuts)
    assert any(c.startswith("all_colours = False") for c in cuts)
    assert not any("all_colours" in c for c in PROFILES["quick"].cuts("mnist"))


def test_overrides_replace_only_given_knobs():
    profile = with_overrides(PROFILES["quick"], epochs=2, radii=None)
    assert profile.epochs == 2 and profile.radii == PROFILES["quick"].radii
    with pytest.raises(TypeError):
        with_overrides(PROFILES["quick"], not_a_knob=1)


def test_evaluation_fields_are_overridable_and_training_fields_hide_only_the_epochs():
    tiny = with_overrides(PROFILES["paper"], **dict.fromkeys(EVALUATION_FIELDS, 3))
    assert all(getattr(tiny, name) == 3 for name in EVALUATION_FIELDS)
    assert len(tiny.cuts("mnist")) == len(EVALUATION_FIELDS)
    # a cut training split also cuts the classifiers' and FD-CNN's data: shown with zoo models
    cut = with_overrides(PROFILES["paper"], epochs=1, max_train_points=100)
    assert cut.cuts("mnist", ignore=TRAINING_FIELDS) == ["max_train_points = 100 (paper: all)"]
