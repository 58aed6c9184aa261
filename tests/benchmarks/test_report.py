"""The verdict column: ours against the paper in combined standard errors."""

import math

import pytest

from benchmarks.report import parse_published, verdict


@pytest.mark.parametrize("text, expected", [
    ("0.70 (0.02)", (0.70, 0.02)), ("1.00", (1.0, 0.0)), ("578.7", (578.7, 0.0)),
    ("0.45–0.46", (0.455, 0.005)), ("", None)])
def test_published_cells_parse(text, expected):
    parsed = parse_published(text)
    assert parsed == expected if expected is None else parsed == pytest.approx(expected)


def test_verdict_counts_combined_standard_errors():
    # (0.74 − 0.70) / hypot(0.01, 0.02) = 1.79 → within 2
    assert verdict((0.74, 0.01), "0.70 (0.02)") == "✓ +0.04 (1.8 SE)"
    # (0.62 − 0.70) / hypot(0.02, 0.02) = 2.83 → off
    assert verdict((0.62, 0.02), "0.70 (0.02)") == "✗ −0.08 (2.8 SE)"
    assert verdict((0.5, 0.1), "") == ""
    assert verdict((math.nan, math.nan), "0.70 (0.02)") == ""
    assert verdict((1.0, 0.0), "1.00") == "✓ +0.00 (no SE)"
