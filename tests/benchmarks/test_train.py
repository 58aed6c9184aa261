"""benchmarks.train: a longer run of the same recipe continues the longest shorter one."""

from types import SimpleNamespace

import torch

from benchmarks import train
from pyro_vae.interface import config_for


def _state(folder, epochs):
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(f"state after {epochs} epochs".encode())


def test_the_longest_shorter_run_of_the_same_recipe_is_found(tmp_path):
    _state(tmp_path / "mnist-vae_beta1-e30-seed0", 30)
    _state(tmp_path / "mnist-vae_beta1-e80-seed0", 80)
    _state(tmp_path / "mnist-vae_beta1-e120-seed0", 120)  # longer: not a start
    _state(tmp_path / "mnist-vae_beta1-e50-seed1", 50)  # another seed
    _state(tmp_path / "mnist-vae_beta1-e60-w1-seed0", 60)  # another KL warm-up
    _state(tmp_path / "mnist-vae_beta5-e70-seed0", 70)  # another model
    (tmp_path / "mnist-vae_beta1-e90-seed0").mkdir()  # no state: nothing to continue
    found = train.longest_shorter_run(tmp_path / "mnist-vae_beta1-e100-seed0")
    assert found == tmp_path / "mnist-vae_beta1-e80-seed0"
    assert train.longest_shorter_run(tmp_path / "mnist-vae_beta1-e30-seed0") is None
    assert train.longest_shorter_run(tmp_path / "mnist-vae_beta1-e61-w1-seed0") == \
        tmp_path / "mnist-vae_beta1-e60-w1-seed0"


def test_train_one_starts_from_the_shorter_runs_state_and_records_it(tmp_path, monkeypatch):
    _state(tmp_path / "mnist-vae_beta1-e2-seed0", 2)
    folder = tmp_path / "mnist-vae_beta1-e3-seed0"
    seen = {}

    def fake_train_vae(vae, splits, config, *, state_path, **kwargs):
        seen["state"] = state_path.read_bytes()
        return SimpleNamespace(seconds=[1.0, 1.0, 1.0],
                               record=lambda: {"epochs": 3, "epoch_seconds": [1.0] * 3})

    monkeypatch.setattr(train, "train_vae", fake_train_vae)
    monkeypatch.setattr(train, "save_checkpoint", lambda vae, path, metadata: None)
    arguments = SimpleNamespace(epochs=3, seed=0, kl_warmup_epochs=0, no_progress=True,
                                dataset="colormnist", all_colours=True)
    splits = SimpleNamespace(train=[None] * 7)  # the images per epoch the record reports
    _, metadata = train.train_one(splits, config_for("vae", beta=1.0, num_channels=1), arguments,
                                  torch.device("cpu"), folder)
    assert metadata["train_points"] == 7 and metadata["all_colours"] is True
    assert seen["state"] == b"state after 2 epochs"  # the shorter run's state, copied
    assert (tmp_path / "mnist-vae_beta1-e2-seed0" / "state.pt").exists()  # and left in place
    assert metadata["continued_from"] == "mnist-vae_beta1-e2-seed0"
    assert not (folder / "state.pt.partial").exists()

    # interrupted after the copy and run again: the state is resumed, the origin still recorded
    seen.clear()
    (folder / "state.pt").write_bytes(b"state after 2 epochs, then 1 more")
    _, metadata = train.train_one(splits, config_for("vae", beta=1.0, num_channels=1), arguments,
                                  torch.device("cpu"), folder)
    assert seen["state"] == b"state after 2 epochs, then 1 more"
    assert metadata["continued_from"] == "mnist-vae_beta1-e2-seed0"


def test_a_finished_run_reports_the_run_it_continued(tmp_path, monkeypatch):
    folder = tmp_path / "mnist-vae_beta1-e3-seed0"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"finished")
    (folder / train.CONTINUED_FROM).write_text("mnist-vae_beta1-e2-seed0\n")
    # a checkpoint written before its metadata carried the origin
    monkeypatch.setattr(train, "load_checkpoint",
                        lambda path, **kwargs: ("model", {"epochs": 3}))
    _, metadata = train.train_one(None, None, None, torch.device("cpu"), folder)
    assert metadata == {"epochs": 3, "continued_from": "mnist-vae_beta1-e2-seed0"}


def test_zoo_refuses_a_dirty_tree_unless_allowed(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "uncommitted_files", lambda: ["pyro_vae/train.py"])
    dirty = train.parse_arguments(["--dataset", "mnist", "--zoo", "--out", str(tmp_path)])
    try:
        train.main(["--dataset", "mnist", "--zoo", "--out", str(tmp_path)])
    except SystemExit as error:
        assert "pyro_vae/train.py" in str(error) and "--allow-dirty" in str(error)
    else:
        raise AssertionError("a dirty tree was accepted for the zoo")
    assert not dirty.allow_dirty
    allowed = train.parse_arguments(["--dataset", "mnist", "--zoo", "--allow-dirty"])
    assert train.check_clean_tree(allowed) == {"allow_dirty": True,
                                               "uncommitted_files": ["pyro_vae/train.py"]}
    # without --zoo nothing is registered, so nothing is checked
    assert train.check_clean_tree(train.parse_arguments(["--dataset", "mnist"])) == {}
    monkeypatch.setattr(train, "uncommitted_files", lambda: [])
    assert train.check_clean_tree(dirty) == {"allow_dirty": False, "uncommitted_files": []}
