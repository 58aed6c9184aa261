"""Smoke test of ``python -m benchmarks.sampler_speed`` on a tiny setting."""

from benchmarks.sampler_speed import main


def test_benchmark_prints_a_row_per_method(capsys):
    main(["--num-points", "3", "--num-transitions", "1", "--num-leapfrog-steps", "2",
          "--max-tree-depth", "2", "--timed-points", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("3 ")]
    assert len(rows) == 6
    assert any("batched hmc" in row for row in rows) and any("stock nuts, 1 chain/point" in row for row in rows)
    overheads = [float(row.split()[-1]) for row in rows if "batched" in row]
    assert all(0.1 < overhead < 10 for overhead in overheads)
