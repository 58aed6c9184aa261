import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import PosteriorTarget, initial_latents


def test_potential_is_minus_closed_form_log_joint(problem):
    x = problem.data(7)
    target = PosteriorTarget(problem.model, (x,), num_chains=3)
    z = torch.randn(3, 7, problem.latent_dim)
    expected = -torch.stack([problem.log_joint(x, z[c]) for c in range(3)])
    assert target.potential(z).shape == (3, 7)
    assert torch.allclose(target.potential(z), expected, atol=1e-5)


def test_value_and_grad_matches_closed_form_gradient(problem):
    x = problem.data(4)
    target = PosteriorTarget(problem.model, (x,), num_chains=2)
    z = torch.randn(2, 4, problem.latent_dim)
    value, grad = target.value_and_grad(z)
    residual = x - (z @ problem.weight.T + problem.bias)
    expected_grad = z - residual @ problem.weight / problem.noise**2
    assert torch.allclose(value, target.potential(z))
    assert torch.allclose(grad, expected_grad, atol=1e-4)
    assert not value.requires_grad and not grad.requires_grad


def test_one_batched_model_call_with_tiled_args(problem):
    x = problem.data(5)
    seen = []

    def counting_model(x):
        seen.append(x.shape)
        problem.model(x)

    target = PosteriorTarget(counting_model, (x,), num_chains=4, compile=False)
    seen.clear()
    target.value_and_grad(torch.randn(4, 5, problem.latent_dim))
    assert seen == [torch.Size([20, x.shape[1]])]
    assert torch.equal(target._tiled_args[0][5:10], x)  # chain-major tiling


def test_wrong_latent_shape_is_rejected(problem):
    target = PosteriorTarget(problem.model, (problem.data(5),), num_chains=2)
    with pytest.raises(ValueError, match="shape"):
        target.potential(torch.zeros(3, 5, problem.latent_dim))


def test_model_structure_is_checked(problem):
    x = problem.data(5)

    def extra_latent(x):
        problem.model(x)
        with pyro.plate("data2", x.shape[0]):
            pyro.sample("w", dist.Normal(0.0, 1.0))

    def global_site(x):
        pyro.sample("g", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))
        problem.model(x)

    with pytest.raises(ValueError, match="unobserved sample site 'w'"):
        PosteriorTarget(extra_latent, (x,))
    with pytest.raises(ValueError, match="one term per point"):
        PosteriorTarget(global_site, (x,))
    with pytest.raises(ValueError, match="no unobserved sample site named 'u'"):
        PosteriorTarget(problem.model, (x,), latent_site="u")


def test_target_leaves_global_rng_alone(problem):
    x = problem.data(5)
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    PosteriorTarget(problem.model, (x,))
    assert torch.equal(torch.rand(1), expected)


def test_initial_latents_sample_and_mean(problem):
    x = problem.data(6)
    loc = 0.3 * (x - problem.bias) @ problem.weight
    mean = initial_latents(problem.guide, (x,), num_chains=2, init="mean")
    assert mean.shape == (2, 6, problem.latent_dim)
    assert torch.allclose(mean[1], loc)
    first = initial_latents(problem.guide, (x,), num_chains=2, generator=torch.Generator().manual_seed(5))
    again = initial_latents(problem.guide, (x,), num_chains=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])
    with pytest.raises(ValueError, match="init"):
        initial_latents(problem.guide, (x,), init="mode")


def test_tensor_kwargs_are_tiled_like_args(scaled_problem):
    x, scale = torch.randn(4, 2), torch.tensor([0.1, 1.0, 2.0, 0.5])
    z = torch.randn(3, 4, 2)
    by_position = PosteriorTarget(scaled_problem.model, (x, scale), num_chains=3)
    by_keyword = PosteriorTarget(scaled_problem.model, (x,), num_chains=3, model_kwargs={"scale": scale})
    assert torch.allclose(by_keyword.potential(z), by_position.potential(z))


class MaskedScaledModel:
    """Exercises what the fast potential must count as Pyro does: a scaled latent site (β-VAE
    style), a masked observation and a Bernoulli likelihood on [0, 1] intensities."""

    @staticmethod
    def model(x, keep):
        with pyro.plate("data", x.shape[0], dim=-1):
            with pyro.poutine.scale(scale=2.5):
                z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            probs = torch.sigmoid(z @ torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]]))
            pyro.sample("x", dist.Bernoulli(probs=probs, validate_args=False).to_event(1), obs=x)
            with pyro.poutine.mask(mask=keep):
                pyro.sample("extra", dist.Normal(z.sum(-1), 0.5), obs=x[:, 0])


def test_fast_potential_equals_the_traced_log_density_per_point():
    x = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([True, False, True, True, False, True])
    target = PosteriorTarget(MaskedScaledModel.model, (x, keep), num_chains=2)
    z = torch.randn(2, 6, 2, generator=torch.Generator().manual_seed(1))
    expected = torch.empty(2, 6)
    for chain in range(2):
        for point in range(6):
            conditioned = pyro.poutine.condition(MaskedScaledModel.model, data={"z": z[chain, point : point + 1]})
            trace = pyro.poutine.trace(conditioned).get_trace(x[point : point + 1], keep[point : point + 1])
            expected[chain, point] = trace.log_prob_sum()
    assert torch.allclose(target.log_joint(z), expected, atol=1e-5)


def test_rows_evaluation_matches_the_full_batch(problem):
    x = problem.data(5)
    target = PosteriorTarget(problem.model, (x,), num_chains=3)
    z = torch.randn(3, 5, problem.latent_dim)
    value, grad = target.value_and_grad(z)
    rows = torch.tensor([13, 0, 7, 6])  # flat chain-major indices c·N + n
    row_value, row_grad = target.value_and_grad_rows(z.reshape(15, -1)[rows], rows)
    assert row_value.shape == (4,) and row_grad.shape == (4, problem.latent_dim)
    assert torch.allclose(row_value, value.reshape(15)[rows], atol=1e-5)
    assert torch.allclose(row_grad, grad.reshape(15, -1)[rows], atol=1e-5)


def test_compiled_potential_matches_the_handler_and_skips_the_python(problem):
    x = problem.data(5)
    calls = []

    def counting_model(x):
        calls.append(x.shape)
        problem.model(x)

    compiled = PosteriorTarget(counting_model, (x,), num_chains=2)
    plain = PosteriorTarget(problem.model, (x,), num_chains=2, compile=False)
    assert compiled.compiled and not plain.compiled
    calls.clear()
    z = torch.randn(2, 5, problem.latent_dim)
    (value, grad), (plain_value, plain_grad) = compiled.value_and_grad(z), plain.value_and_grad(z)
    assert calls == []  # the traced program runs, not the model's Python
    assert torch.allclose(value, plain_value, atol=1e-5) and torch.allclose(grad, plain_grad, atol=1e-5)


def test_potential_that_cannot_be_traced_faithfully_is_not_compiled(problem):
    x = problem.data(5)

    def branching_model(x):  # Python control flow on a tensor value: a trace would freeze it
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            scale = 1.0 if bool(z.sum() > 1e6) else 2.0
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True) * scale, 1.0).to_event(1), obs=x[:, :1])

    def baking_model(x):  # a value read into Python would become a constant of a trace
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            shift = float(z[0, 0])
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True) + shift, 1.0).to_event(1), obs=x[:, :1])

    z = torch.randn(1, 5, 3)
    for model in (branching_model, baking_model):
        target = PosteriorTarget(model, (x,))
        assert not target.compiled
        value, grad = target.value_and_grad(z)
        faithful_value, faithful_grad = PosteriorTarget(model, (x,), compile=False).value_and_grad(z)
        assert torch.equal(value, faithful_value) and torch.equal(grad, faithful_grad)

    # Far from the check's prior draw the branch flips: the target still follows the model.
    far = torch.full((1, 5, 3), 1e6)
    expected = 0.5 * (far**2).sum(-1) + 0.5 * (x[:, 0] - far.sum(-1)) ** 2 + 2 * math.log(2 * math.pi)
    assert torch.allclose(PosteriorTarget(branching_model, (x,)).value_and_grad(far)[0], expected, rtol=1e-5)


def test_compiled_potential_of_a_model_whose_parameters_require_grad(problem):
    x = problem.data(5)
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))

    def parameter_model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal((z * weight).sum(-1, keepdim=True), 1.0).to_event(1), obs=x[:, :1])

    target = PosteriorTarget(parameter_model, (x,))
    assert target.compiled
    z = torch.randn(1, 5, 3)
    value, grad = target.value_and_grad(z)
    residual = x[:, 0] - (z * weight).sum(-1)
    expected = 0.5 * (z**2).sum(-1) + 0.5 * residual**2 + 2 * math.log(2 * math.pi)
    assert torch.allclose(value, expected, rtol=1e-5)
    assert torch.allclose(grad, z - residual.unsqueeze(-1) * weight.detach(), atol=1e-5)
    assert weight.grad is None  # the program differentiates z only
