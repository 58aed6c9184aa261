import pytest
import torch

from inference import StepSizeAdaptation, adapt_end_warmup, adapt_init, adapt_update, sample_posterior


def test_paper_rule_is_eq_of_protocol():
    config = StepSizeAdaptation("paper")
    state = adapt_init(torch.tensor([0.1, 0.1, 0.1]))
    state = adapt_update(config, state, torch.tensor([0.45, 0.9, float("nan")]))
    # η_t = η + 0.01 (α − 0.9)/0.9 η, NaN counted as α = 0
    expected = torch.tensor([0.1 * (1 - 0.005), 0.1, 0.1 * (1 - 0.01)])
    assert torch.allclose(state.step_size, expected)


def test_dual_averaging_reaches_target_acceptance():
    # A toy chain whose acceptance is exp(−η): the target 0.8 is met at η = −log 0.8.
    config = StepSizeAdaptation("dual_averaging", target_accept=0.8)
    state = adapt_init(torch.tensor([1.0, 0.001]))
    for _ in range(3000):
        state = adapt_update(config, state, torch.exp(-state.step_size))
    final = adapt_end_warmup(config, state).step_size
    assert torch.allclose(final, torch.full((2,), -torch.log(torch.tensor(0.8)).item()), rtol=0.05)


@pytest.mark.parametrize("adapt", ["paper", "dual_averaging"])
def test_step_sizes_follow_each_points_scale(scaled_problem, adapt):
    scale = torch.tensor([0.02, 1.0, 0.02, 1.0])
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    result = sample_posterior(scaled_problem.model, scaled_problem.guide, (x, scale), sampler="hmc",
                              num_chains=3, num_warmup=150, num_samples=5, step_size=0.1,
                              num_leapfrog_steps=3, adapt=adapt, mass_matrix="identity", seed=0)
    step = result.step_size  # (chains, points); in model units only with unit mass
    narrow, wide = step[:, [0, 2]], step[:, [1, 3]]
    assert narrow.max() < 0.5 * wide.min()
    assert torch.unique(step).numel() == step.numel()  # every chain adapted on its own


@pytest.mark.parametrize("sampler, adapt", [("hmc", "paper"), ("hmc", "dual_averaging"), ("nuts", "dual_averaging"),
                                            ("mala", "dual_averaging")])
def test_adaptation_frozen_after_warmup_unless_asked(problem, sampler, adapt):
    x = problem.data(4)
    options = dict(sampler=sampler, num_chains=2, num_warmup=20, num_samples=10, step_size=0.3,
                   num_leapfrog_steps=3, max_tree_depth=3, adapt=adapt, jitter=0.0, seed=1)
    frozen = sample_posterior(problem.model, problem.guide, (x,), **options)
    steps = frozen.sample_stats["step_size"]
    assert not frozen.config.adapt_after_warmup
    assert (steps == steps[:, :1]).all()
    assert torch.equal(frozen.step_size, steps[:, -1])
    assert (frozen.warmup_stats["step_size"] != frozen.warmup_stats["step_size"][:, :1]).any()

    continued = sample_posterior(problem.model, problem.guide, (x,), adapt_after_warmup=True, **options)
    assert continued.config.adapt_after_warmup
    assert (continued.sample_stats["step_size"] != continued.sample_stats["step_size"][:, :1]).any()


@pytest.mark.parametrize("sampler", ["hmc", "nuts"])
def test_jittered_step_sizes_spread_around_the_frozen_one(problem, sampler):
    x = problem.data(4)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler=sampler, num_chains=2, num_warmup=20,
                              num_samples=200, step_size=0.3, num_leapfrog_steps=3, max_tree_depth=3,
                              jitter=0.5, seed=1)
    assert result.config.jitter == 0.5
    ratio = result.sample_stats["step_size"] / result.step_size.unsqueeze(1)  # (C, S, N)
    assert ((ratio >= 0.5) & (ratio <= 1.5)).all()
    # uniform on [0.5, 1.5] per chain and transition: mean 1, sd 1/√12 ≈ 0.29
    assert abs(float(ratio.mean()) - 1.0) < 0.03 and abs(float(ratio.std()) - 12**-0.5) < 0.03
    assert (ratio[:, 1:] != ratio[:, :1]).any(1).all() and (ratio[0] != ratio[1]).any()


def test_default_jitter_per_sampler(problem):
    x = problem.data(3)
    options = dict(num_chains=2, num_warmup=2, num_samples=2, num_leapfrog_steps=2, max_tree_depth=2, seed=0)
    defaults = {name: sample_posterior(problem.model, problem.guide, (x,), sampler=name, **options).config
                for name in ("hmc", "nuts", "mala", "map")}
    assert {name: config.jitter for name, config in defaults.items()} == {"hmc": 0.5, "nuts": 0.0, "mala": 0.0,
                                                                            "map": 0.0}
    assert defaults["mala"].num_leapfrog_steps == 1
    assert (defaults["mala"].adapt, defaults["mala"].target_accept) == ("dual_averaging", 0.574)


def test_no_adaptation_keeps_the_initial_step_size(problem):
    result = sample_posterior(problem.model, problem.guide, (problem.data(3),), num_warmup=5,
                              num_samples=5, num_leapfrog_steps=2, step_size=0.07, adapt=None, jitter=0, seed=0)
    assert (result.warmup_stats["step_size"] == 0.07).all() and (result.sample_stats["step_size"] == 0.07).all()
    assert (result.step_size == 0.07).all()
