import warnings

import arviz as az
import numpy as np
import pytest

from inference import convergence, sample_posterior, save_netcdf, summarize, to_inference_data

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
