"""The smoke-profile run that the benchmark tests share (one per test session)."""

import pytest

from benchmarks import run as runner


def _smoke_arguments(root, out, *extra):
    return ["--dataset", "mnist", "--profile", "smoke", "--data-root", str(root), "--out",
            str(out), "--no-progress", *extra]


@pytest.fixture(scope="session")
def smoke_arguments():
    """argv for ``benchmarks.run`` on the smoke profile: ``smoke_arguments(root, out, *extra)``."""
    return _smoke_arguments


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, mnist_root):
    """(data root, run directory, results) of ``benchmarks.run`` on the smoke profile."""
    out = tmp_path_factory.mktemp("smoke")
    results = runner.main(_smoke_arguments(mnist_root, out))
    return mnist_root, out, results
