import pytest
import torch

from attacks import stratified_references


def digit_labels():
    return torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(0))


def test_per_class_selection_is_stratified_distinct_and_reproducible():
    labels = digit_labels()
    chosen = stratified_references(labels, per_class=5, generator=torch.Generator().manual_seed(1))
    again = stratified_references(labels, per_class=5, generator=torch.Generator().manual_seed(1))
    other = stratified_references(labels, per_class=5, generator=torch.Generator().manual_seed(2))
    assert chosen.shape == (50,) and chosen.unique().numel() == 50
    assert torch.equal(torch.bincount(labels[chosen], minlength=10), torch.full((10,), 5))
    assert torch.equal(labels[chosen], labels[chosen].sort().values)  # grouped by class
    assert torch.equal(chosen, again) and not torch.equal(chosen, other)


def test_joint_strata_of_two_label_columns():
    generator = torch.Generator().manual_seed(3)
    labels = torch.stack([torch.randint(0, 10, (3000,), generator=generator),
                          torch.randint(0, 7, (3000,), generator=generator)], dim=1)
    chosen = stratified_references(labels, per_class=2, generator=torch.Generator().manual_seed(4))
    pairs = labels[chosen, 0] * 7 + labels[chosen, 1]
    assert torch.equal(torch.bincount(pairs, minlength=70), torch.full((70,), 2))


def test_total_spreads_as_evenly_as_possible():
    labels = torch.arange(70).repeat(5)  # 70 strata, e.g. digit × colour
    chosen = stratified_references(labels, total=50, generator=torch.Generator().manual_seed(5))
    counts = torch.bincount(labels[chosen], minlength=70)
    assert chosen.shape == (50,) and counts.max() == 1 and counts.sum() == 50
    chosen = stratified_references(labels, total=75, generator=torch.Generator().manual_seed(5))
    assert sorted(torch.bincount(labels[chosen], minlength=70).unique().tolist()) == [1, 2]


def test_total_over_two_columns_balances_both_margins():
    """ColorMNIST's 50 references: 5 per digit, each digit in 5 distinct colours, 7 or 8 per
    colour, every digit present (a joint-stratum draw can leave a digit out)."""
    generator = torch.Generator().manual_seed(6)
    labels = torch.stack([torch.randint(0, 10, (5000,), generator=generator),
                          torch.randint(0, 7, (5000,), generator=generator)], dim=1)
    for seed in range(5):
        chosen = stratified_references(labels, total=50,
                                       generator=torch.Generator().manual_seed(seed))
        digits, colours = labels[chosen, 0], labels[chosen, 1]
        assert chosen.unique().numel() == 50
        assert torch.equal(torch.bincount(digits, minlength=10), torch.full((10,), 5))
        assert sorted(torch.bincount(colours, minlength=7).unique().tolist()) == [7, 8]
        assert all(colours[digits == d].unique().numel() == 5 for d in range(10))


def test_selection_is_uniform_within_a_stratum():
    labels = torch.zeros(4, dtype=torch.long)
    hits = torch.zeros(4)
    for seed in range(400):
        hits[stratified_references(labels, per_class=1,
                                   generator=torch.Generator().manual_seed(seed))] += 1
    assert hits.min() > 60


def test_errors():
    labels = torch.tensor([0, 0, 1])
    with pytest.raises(ValueError, match="stratum \\[?1\\]? has 1 points"):
        stratified_references(labels, per_class=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="exactly one"):
        stratified_references(labels, generator=torch.Generator())
    with pytest.raises(ValueError, match="exactly one"):
        stratified_references(labels, per_class=1, total=2, generator=torch.Generator())
