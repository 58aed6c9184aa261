"""The NLL estimator of pyro_vae/evaluate.py against a closed form: a linear-Gaussian model,
p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), has log p(x) = log N(x; b, WWᵀ + σ²I) and the
posterior p(z|x) = N(ΣWᵀ(x − b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹, exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae import entropy_floor, evaluate_vae
from pyro_vae.evaluate import importance_log_weights

LATENT, SHAPE = 2, (1, 2, 3)  # x is a tiny "image" of 6 pixels
PIXELS = math.prod(SHAPE)


class LinearGaussianVAE(nn.Module):
    """The model/guide pair with the interface evaluate_vae uses; the guide is the exact
    posterior, optionally shifted and widened (``shift``, ``widen``) to make it a poor one."""

    def __init__(self, shift=0.0, widen=1.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(PIXELS, LATENT, generator=g, dtype=torch.float64)
        self.bias = torch.randn(PIXELS, generator=g, dtype=torch.float64)
        self.noise, self.shift, self.widen = 0.5, shift, widen
        self.cov = torch.linalg.inv(torch.eye(LATENT, dtype=torch.float64)
                                    + self.weight.T @ self.weight / self.noise**2)

    def posterior_mean(self, x):
        return (x.flatten(1) - self.bias) @ self.weight @ self.cov / self.noise**2

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
            loc = (z @ self.weight.T + self.bias).view(-1, *SHAPE)
            pyro.sample("x", dist.Normal(loc, self.noise).to_event(3), obs=x)

    def guide(self, x):
        scale_tril = torch.linalg.cholesky(self.cov) * self.widen
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(self.posterior_mean(x) + self.shift, scale_tril=scale_tril))

    def reconstruct(self, x):
        return (self.posterior_mean(x) @ self.weight.T + self.bias).view(-1, *SHAPE)

    def exact_log_evidence(self, x):
        cov = self.weight @ self.weight.T + self.noise**2 * torch.eye(PIXELS, dtype=torch.float64)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov).log_prob(x.flatten(1))


class Points:
    """A dataset of fixed points drawn from the model, with the ``batch`` method of ours."""

    def __init__(self, vae, count=40, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(count, LATENT, generator=g, dtype=torch.float64)
        noise = torch.randn(count, PIXELS, generator=g, dtype=torch.float64)
        self.x = (z @ vae.weight.T + vae.bias + vae.noise * noise).view(-1, *SHAPE)

    def __len__(self):
        return len(self.x)

    def batch(self, indices):
        return self.x[indices], torch.zeros(len(indices))




@pytest.mark.parametrize("k", [1, 7])
def test_with_the_exact_posterior_as_guide_every_weight_is_the_evidence(k):
    """q = p(z|x) makes every importance weight p(x, z)/q(z|x) = p(x): the estimate is exact for
    any k, and so is the ELBO. Catches a wrong log k normalisation, a missing density term, a
    sign error, or weights paired with the wrong point (the points' evidences differ)."""
    vae = LinearGaussianVAE()
    points = Points(vae)
    exact = -vae.exact_log_evidence(points.x)
    assert exact.std() > 1.0  # pairing weights with other points would show
    result = evaluate_vae(vae, points, num_importance_samples=k, samples_per_batch=7 * 6, progress=False)
    assert result.nll == pytest.approx(exact.mean().item(), abs=1e-8)
    assert result.elbo == pytest.approx(-exact.mean().item(), abs=1e-8)
    assert result.nll_standard_error == pytest.approx(exact.std().item() / math.sqrt(len(points)), rel=1e-6)
    log_w = importance_log_weights(vae, points.x, k)
    torch.testing.assert_close(log_w, -exact.expand(k, -1), rtol=0, atol=1e-9)


def test_with_a_poor_guide_the_estimate_tightens_to_the_evidence():
    """A shifted, widened guide q = N(μ + s, c²Σ). With one sample the NLL estimate is the
    negative ELBO, above −log p(x) by KL(q ‖ p(z|x)) = ½[D c² + sᵀΣ⁻¹s − D − 2D log c] on average
    (within 4 standard errors of the per-point gaps); k = 4000 samples bring it to −log p(x)
    within five of its own Monte Carlo standard errors (delta method: sd(w)/(√k·mean(w)) per
    point, from the weights themselves). Catches an estimator that does not tighten with k (a
    mean of log weights instead of a log of the mean weight) or misses the gap."""
    shift, widen, k = 0.2, 1.5, 4000
    vae = LinearGaussianVAE(shift=shift, widen=widen)
    points = Points(vae)
    exact = -vae.exact_log_evidence(points.x).mean().item()
    s = torch.full((LATENT,), shift, dtype=torch.float64)
    kl = 0.5 * (LATENT * widen**2 + s @ torch.linalg.solve(vae.cov, s) - LATENT - 2 * LATENT * math.log(widen))
    one = evaluate_vae(vae, points, num_importance_samples=1, progress=False)
    assert one.nll == pytest.approx(-one.elbo, abs=1e-9)  # k = 1: the same single weight
    assert kl.item() > 1.0  # the gap is visible
    torch.manual_seed(0)  # evaluate_vae's seed: its one batch of 40 points, drawn again
    gap = -importance_log_weights(vae, points.x, 1)[0] + vae.exact_log_evidence(points.x)
    assert one.nll - exact == pytest.approx(gap.mean().item(), abs=1e-9)
    assert abs(gap.mean().item() - kl.item()) < 4 * gap.std().item() / math.sqrt(len(points))

    many = evaluate_vae(vae, points, num_importance_samples=k, progress=False)
    torch.manual_seed(1)
    log_w = importance_log_weights(vae, points.x, k)
    w = (log_w - log_w.max(0).values).exp()
    error = (w.std(0) / (math.sqrt(k) * w.mean(0))).mean().item()
    assert error < 0.05
    assert abs(many.nll - exact) < 5 * error


def test_entropy_floor_is_the_pixels_binary_entropy():
    """Closed forms: a pixel at 0.5 carries log 2 nats, one at 0 or 1 none; 0.25 carries
    H(0.25) = −0.25 log 0.25 − 0.75 log 0.75. Mean and SE over images."""
    images = torch.stack([torch.full((1, 2, 2), 0.5), torch.tensor([[[0.0, 1.0], [0.25, 0.5]]])])

    class Images:  # the vectorised-dataset protocol of pyro_vae.data
        def __len__(self):
            return len(images)

        def batch(self, indices):
            return images[indices], torch.zeros(len(indices))

    subset = Images()
    h_quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    per_image = torch.tensor([4 * math.log(2), h_quarter + math.log(2)], dtype=torch.float64)
    mean, standard_error = entropy_floor(subset)
    assert mean == pytest.approx(float(per_image.mean()))
    assert standard_error == pytest.approx(float(per_image.std() / math.sqrt(2)))
    # And no model beats it: a Bernoulli mean at the pixel itself attains it exactly.
    x = images[1].double()
    best = -(x * x.clamp_min(1e-300).log() + (1 - x) * (1 - x).clamp_min(1e-300).log()).sum()
    assert float(best) == pytest.approx(float(per_image[1]))
