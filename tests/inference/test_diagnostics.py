import warnings

import arviz as az
import numpy as np
import pytest

from inference import convergence, sample_posterior, save_netcdf, summarize, to_inference_data
from inference.diagnostics import nested_rhat, rank_diagnostics

NUM_POINTS, NUM_DRAWS = 5, 40


def run(problem, sampler="hmc", num_chains=2):
    return sample_posterior(problem.model, problem.guide, (problem.data(NUM_POINTS),), sampler=sampler,
                            num_chains=num_chains, num_warmup=10, num_samples=NUM_DRAWS, step_size=0.2,
                            num_leapfrog_steps=4, max_tree_depth=4, seed=3)


@pytest.mark.parametrize("sampler", ["hmc", "nuts", "mala"])
def test_inference_data_layout(problem, sampler):
    result = run(problem, sampler)
    idata = to_inference_data(result)
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "point", "latent")
    assert z.shape == (2, NUM_DRAWS, NUM_POINTS, problem.latent_dim)
    assert list(idata.posterior.coords["point"].values) == list(range(NUM_POINTS))
    np.testing.assert_array_equal(z.values, result.z.numpy())

    stats = idata.sample_stats
    expected = {"diverging", "acceptance_rate", "step_size", "energy", "lp", "n_steps", "n_grad_evals"}
    expected |= {"tree_depth"} if sampler == "nuts" else {"accepted"}
    assert set(stats.data_vars) == expected
    assert stats["diverging"].dims == ("chain", "draw", "point")
    assert stats["diverging"].dtype == bool
    assert idata.warmup_sample_stats["step_size"].shape == (2, 10, NUM_POINTS)
    assert idata.posterior.attrs["sampler"] == sampler
    assert idata.posterior.attrs["jitter"] == result.config.jitter


def test_convergence_and_summary(problem):
    idata = to_inference_data(run(problem))
    conv = convergence(idata)
    for name in ("rhat", "ess_bulk", "ess_tail"):
        assert conv[name].dims == ("point", "latent")
        assert conv[name].shape == (NUM_POINTS, problem.latent_dim)
    np.testing.assert_allclose(conv["rhat"].values, az.rhat(idata)["z"].values)

    summary = summarize(idata)
    assert summary.max_rhat == pytest.approx(float(conv["rhat"].max()))
    assert summary.min_ess_bulk == pytest.approx(float(conv["ess_bulk"].min()))
    assert summary.min_ess_tail == pytest.approx(float(conv["ess_tail"].min()))
    assert summary.mean_accept_prob == pytest.approx(float(idata.sample_stats["acceptance_rate"].mean()))
    assert summary.num_divergent == int(idata.sample_stats["diverging"].sum())
    assert summary.rhat_per_point.shape == (NUM_POINTS,)
    assert 0.9 < summary.max_rhat < 1.5 and summary.min_ess_bulk > 5


def test_chains_that_never_moved_are_flagged_not_skipped():
    draws = np.random.default_rng(0).normal(size=(2, 100, 1, 3))  # (chain, draw, point, latent)
    draws[:, :, 0, 0] = 0.5  # both chains started at one point and never accepted a move
    draws[1, :, 0, 1] = draws[0, 0, 0, 1]  # one chain stuck, the other moving
    stats = {"acceptance_rate": np.zeros((2, 100, 1)), "diverging": np.zeros((2, 100, 1), dtype=bool)}
    idata = az.from_dict(posterior={"z": draws}, sample_stats=stats, dims={"z": ["point", "latent"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the zero variances must not surface as RuntimeWarnings
        conv = convergence(idata)
        summary = summarize(idata, "z")
    assert conv["rhat"].values[0, 0] == np.inf and conv["ess_bulk"].values[0, 0] == 0
    assert conv["ess_tail"].values[0, 0] == 0
    assert conv["rhat"].values[0, 1] > 1.1 and conv["rhat"].values[0, 2] < 1.1
    assert summary.max_rhat == np.inf and summary.min_ess_bulk == 0  # not hidden by the max


def test_rhat_needs_two_chains(problem):
    with pytest.raises(ValueError, match="at least 2 chains"):
        convergence(to_inference_data(run(problem, num_chains=1)))


def test_netcdf_round_trip_is_atomic(problem, tmp_path):
    idata = to_inference_data(run(problem, "nuts"))
    path = save_netcdf(idata, tmp_path / "runs" / "defence.nc")
    assert sorted(p.name for p in path.parent.iterdir()) == ["defence.nc"]  # no temporary left
    loaded = az.from_netcdf(path)
    np.testing.assert_array_equal(loaded.posterior["z"].values, idata.posterior["z"].values)
    np.testing.assert_array_equal(loaded.sample_stats["tree_depth"].values,
                                  idata.sample_stats["tree_depth"].values)
    assert loaded.posterior.attrs["adapt"] == "dual_averaging"
    assert loaded.posterior.attrs["adapt_after_warmup"] == 0


def test_netcdf_failure_leaves_no_partial_file(problem, tmp_path):
    path = tmp_path / "defence.nc"
    with pytest.raises(Exception):
        save_netcdf(object(), path)  # not an InferenceData
    assert list(tmp_path.iterdir()) == []


def autocorrelated_draws(chains, draws, columns, seed=0):
    """AR(1) chains with per-column correlation, some columns with chains that disagree and one
    with many ties (rounded values, as rejected moves repeat a state)."""
    rng = np.random.default_rng(seed)
    phi = rng.uniform(-0.5, 0.95, size=columns)
    x = np.zeros((chains, draws, columns))
    x[:, 0] = rng.normal(size=(chains, columns))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=(chains, columns))
    x[:, :, :3] += 3 * rng.normal(size=(chains, 1, 3))
    x[:, :, 3] = np.round(x[:, :, 3])
    return x


@pytest.mark.parametrize("chains, draws", [(2, 50), (2, 7), (4, 13), (3, 4), (1, 20)])
def test_vectorised_rank_diagnostics_equal_arviz(chains, draws):
    x = autocorrelated_draws(chains, draws, 12)
    rhat, ess_bulk, ess_tail = rank_diagnostics(x)
    dataset = az.convert_to_dataset({"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about one chain
        expected_rhat = az.rhat(dataset)["x"].values if chains > 1 else np.full(12, np.nan)
        expected_bulk = az.ess(dataset, method="bulk")["x"].values
        expected_tail = az.ess(dataset, method="tail")["x"].values
    np.testing.assert_allclose(rhat, expected_rhat, rtol=1e-9)
    np.testing.assert_allclose(ess_bulk, expected_bulk, rtol=1e-9)
    np.testing.assert_allclose(ess_tail, expected_tail, rtol=1e-9)


def test_a_nan_rhat_is_reported_not_skipped_by_the_max():
    draws = np.random.default_rng(0).normal(size=(2, 40, 3, 2))  # (chain, draw, point, latent)
    draws[1, 7, 1, 0] = np.nan  # one coordinate of point 1 has no R-hat
    stats = {"acceptance_rate": np.ones((2, 40, 3)), "diverging": np.zeros((2, 40, 3), dtype=bool)}
    idata = az.from_dict(posterior={"z": draws}, sample_stats=stats,
                         dims={"z": ["point", "latent"], **{k: ["point"] for k in stats}})
    assert np.isnan(convergence(idata)["rhat"].values[1, 0])
    summary = summarize(idata)
    assert np.isnan(summary.max_rhat) and np.isnan(summary.sites["z"].max_rhat)
    assert np.isnan(summary.min_ess_bulk) and np.isnan(summary.min_ess_tail)
    assert np.isnan(summary.rhat_per_point[1]) and np.isfinite(summary.rhat_per_point[[0, 2]]).all()
    assert np.isnan(summary.rhat_p90)  # a distribution with an undefined point is undefined


def nested_rhat_by_definition(x, ids):
    """Margossian et al. (2024), eq. 6–8, one column at a time, written out with loops."""
    groups = [x[ids == k] for k in np.unique(ids)]
    superchain_means = [g.mean() for g in groups]
    between = np.var(superchain_means, ddof=1)
    within = np.mean([(np.var(g.mean(axis=1), ddof=1) if len(g) > 1 else 0.0)
                      + np.mean([np.var(chain, ddof=1) for chain in g]) for g in groups])
    return np.sqrt(1 + between / within)


def test_nested_rhat_follows_its_definition_and_flags_a_stuck_superchain():
    rng = np.random.default_rng(2)
    ids = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    x = rng.normal(size=(12, 5, 4))  # many short chains: 12 chains of 5 draws
    x[ids == 3, :, 2] += 4.0  # one superchain never left its start in coordinate 2
    values = nested_rhat(x, ids)
    expected = [nested_rhat_by_definition(x[..., k], ids) for k in range(4)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert values[2] > 1.5 and np.delete(values, 2).max() < 1.3
    single = nested_rhat(x[:, :, :1], np.arange(12))  # every chain its own superchain
    np.testing.assert_allclose(single, [nested_rhat_by_definition(x[..., 0], np.arange(12))])
    assert np.isnan(nested_rhat(x, np.zeros(12))).all()  # one superchain: undefined
    assert np.isnan(nested_rhat(x, np.r_[np.zeros(5), np.ones(7)])).all()  # unequal sizes


def test_many_short_chains_summary(problem):
    result = run(problem, "hmc", num_chains=3)
    idata = to_inference_data(result)
    summary = summarize(idata)
    conv = convergence(idata)
    rhat = conv["rhat"].max("latent").values
    assert summary.rhat_median == np.quantile(rhat, 0.5, method="higher")
    assert summary.rhat_p90 == np.quantile(rhat, 0.9, method="higher")
    assert summary.max_rhat == rhat.max()
    ess = conv["ess_bulk"].min("latent").values
    assert summary.ess_bulk_p10 == np.quantile(ess, 0.1, method="lower")
    per_gradient = 1000 * ess / result.num_grad_evals.sum(0).numpy()
    np.testing.assert_allclose(summary.ess_bulk_per_1k_grad_per_point, per_gradient)
    assert summary.ess_bulk_per_1k_grad_min == pytest.approx(per_gradient.min())
    energy = idata.sample_stats["energy"].values  # (chain, draw, point)
    expected = np.stack([az.bfmi(energy[..., n]) for n in range(NUM_POINTS)], axis=1)
    np.testing.assert_allclose(summary.ebfmi_per_chain, expected, rtol=1e-6)
    assert summary.ebfmi_fraction_low == pytest.approx((expected < 0.3).mean())
    diverging = result.sample_stats["diverging"].float().mean().item()
    assert summary.divergence_rate == pytest.approx(diverging)
    # independent starts z0 ~ q(z|x): each chain is its own superchain
    assert summary.chains_per_superchain == 1
    draws = idata.posterior["z"].values.reshape(3, NUM_DRAWS, -1)
    nested = nested_rhat(draws, np.arange(3)).reshape(NUM_POINTS, -1).max(1)
    np.testing.assert_allclose(summary.nested_rhat_per_point, nested)
    # a shared start (the encoder mean) makes one superchain per point: not reported
    shared = summarize(to_inference_data(sample_posterior(
        problem.model, problem.guide, (problem.data(NUM_POINTS),), sampler="hmc", num_chains=2,
        num_warmup=5, num_samples=NUM_DRAWS, step_size=0.2, num_leapfrog_steps=4, init="mean",
        seed=3)))
    assert shared.nested_rhat_max is None and shared.chains_per_superchain is None
    # R-hat of the log joint: ArviZ's on each point's lp draws (in float64, as summarize computes)
    lp = idata.sample_stats["lp"].values  # (chain, draw, point)
    expected_lp = [az.rhat(az.convert_to_dataset({"lp": lp[..., n].astype(np.float64)}))["lp"].values
                   for n in range(NUM_POINTS)]
    np.testing.assert_allclose(summary.lp_rhat_per_point, expected_lp, rtol=1e-9)
    assert summary.lp_rhat_p90 == np.quantile(summary.lp_rhat_per_point, 0.9, method="higher")
    # printed, the summary is a few lines of the distributions, not the per-point arrays
    text = str(summary)
    assert len(text.splitlines()) == 7 and "[" not in text
    assert f"R-hat median {summary.rhat_median:.3f}" in text
    assert f"{summary.divergence_rate:.2%} of kept transitions" in text
    assert len(str(shared).splitlines()) == 6  # no nested R-hat line


def test_summary_without_energy_or_gradient_counts(problem):
    summary = summarize(to_inference_data(run(problem, "map")))
    assert summary.ebfmi_median is None and summary.ebfmi_fraction_low is None
    assert summary.ess_bulk_per_1k_grad_median is not None  # MAP counts its evaluations
    assert "E-BFMI" not in str(summary) and "gradient evaluations" in str(summary)


def test_chains_stuck_at_two_values_have_infinite_rhat_as_arviz():
    draws = np.zeros((2, 6, 1))
    draws[1] = 1.0  # each chain constant, at different values: the folded draws all tie
    rhat, _, _ = rank_diagnostics(draws)
    assert rhat[0] == np.inf == az.rhat(az.convert_to_dataset({"x": draws[..., 0]}))["x"].values
