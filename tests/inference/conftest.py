"""A linear-Gaussian latent model with a closed-form posterior, written as a Pyro model/guide
pair with the VAE's interface (data plate over dim -1, latent site "z", observed site "x").

p(z) = N(0, I_D), p(x|z) = N(Wz + b, σ² I_P)  =>  p(z|x) = N(Σ Wᵀ(x − b)/σ², Σ),
Σ = (I + WᵀW/σ²)⁻¹.
"""

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch

LATENT_DIM, DATA_DIM = 3, 5


@dataclass(frozen=True)
class LinearGaussian:
    weight: torch.Tensor  # (P, D)
    bias: torch.Tensor  # (P,)
    noise: float

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            loc = z @ self.weight.T + self.bias
            pyro.sample("x", dist.Normal(loc, self.noise).to_event(1), obs=x)

    def guide(self, x):
        # A deliberately poor encoder: the sampler has to move away from it.
        with pyro.plate("data", x.shape[0], dim=-1):
            loc = 0.3 * (x - self.bias) @ self.weight
            pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))

    def to(self, device):
        return LinearGaussian(self.weight.to(device), self.bias.to(device), self.noise)

    def posterior(self, x):
        """Exact posterior mean (N, D) and covariance (D, D)."""
        precision = torch.eye(self.latent_dim) + self.weight.T @ self.weight / self.noise**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ cov / self.noise**2
        return mean, cov

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def data_dim(self) -> int:
        return self.weight.shape[0]

    def data(self, num_points, seed=1):
        """x drawn from the model, shape (num_points, P)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(num_points, self.latent_dim, generator=g)
        noise = torch.randn(num_points, self.data_dim, generator=g)
        return z @ self.weight.T + self.bias + self.noise * noise

    def log_joint(self, x, z):
        prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        like = dist.Normal(z @ self.weight.T + self.bias, self.noise).log_prob(x).sum(-1)
        return prior + like


def make_problem(noise=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(DATA_DIM, LATENT_DIM, generator=g)
    bias = torch.randn(DATA_DIM, generator=g)
    return LinearGaussian(weight, bias, noise)


def make_narrow_problem(posterior_sd=(0.10, 0.13, 0.16, 0.19), data_dim=6, seed=0):
    """Unit noise and W = Q·diag(√(1/s² − 1)) with orthonormal columns Q, so the posterior
    covariance is exactly diag(s²): narrow, axis-aligned, with known widths."""
    sd = torch.tensor(posterior_sd)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(data_dim, len(posterior_sd), generator=g))
    return LinearGaussian(q * (1 / sd**2 - 1).sqrt(), torch.zeros(data_dim), 1.0)


@pytest.fixture
def problem():
    return make_problem()


@pytest.fixture
def narrow_problem():
    return make_narrow_problem()


@pytest.fixture(autouse=True)
def _clear_param_store():
    pyro.clear_param_store()
    yield


class PerPointScale:
    """p(z) = N(0, I_2), p(x_n|z_n) = N(z_n, s_n² I): posterior widths set per point by s."""

    @staticmethod
    def model(x, scale):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, scale.unsqueeze(-1)).to_event(1), obs=x)

    @staticmethod
    def guide(x, scale):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(0.5 * x, 0.1).to_event(1))


@pytest.fixture
def scaled_problem():
    return PerPointScale()


# Posterior sds spanning 49×: one coordinate near the prior's 1 beside sharp ones, as in a VAE
# whose decoder ignores some latent coordinates.
ANISOTROPIC_SD = (0.02, 0.1, 0.5, 0.98)


@pytest.fixture
def anisotropic_problem():
    return make_narrow_problem(posterior_sd=ANISOTROPIC_SD)


@dataclass(frozen=True)
class TwoLevelGaussian:
    """A two-group hierarchy with a closed-form posterior, coupled like a hierarchical VAE's
    groups: per coordinate j (D of them, independent),

        top_j ~ N(0, 1),  low_j | top_j ~ N(a·top_j, s²),  x_j | low_j ~ N(low_j, τ²).

    With a = 2, s = 0.2, τ = 0.5 the posterior correlation of (top_j, low_j) is 0.92 in z and
    0.36 in the non-centred (top_j, ε_j), ε_j = (low_j − a·top_j) / s.
    """

    coupling: float = 2.0
    spread: float = 0.2
    noise: float = 0.5
    dim: int = 2
    sites: tuple = ("top", "low")

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            top = pyro.sample("top", dist.Normal(x.new_zeros(self.dim), 1.0).to_event(1))
            low = pyro.sample("low", dist.Normal(self.coupling * top, self.spread).to_event(1))
            pyro.sample("x", dist.Normal(low, self.noise).to_event(1), obs=x)

    def guide(self, x):
        # a poor encoder, as in LinearGaussian: the chains have to move
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("top", dist.Normal(0.3 * x, 0.5).to_event(1))
            pyro.sample("low", dist.Normal(x, 0.3).to_event(1))

    def data(self, num_points, seed=1):
        g = torch.Generator().manual_seed(seed)
        top = torch.randn(num_points, self.dim, generator=g)
        low = self.coupling * top + self.spread * torch.randn(num_points, self.dim, generator=g)
        return low + self.noise * torch.randn(num_points, self.dim, generator=g)

    def posterior(self, x):
        """Exact mean (N, 2D) and covariance (2D, 2D) of the flat z = (top, low)."""
        a, s2, t2 = self.coupling, self.spread**2, self.noise**2
        precision = torch.tensor([[1 + a * a / s2, -a / s2], [-a / s2, 1 / s2 + 1 / t2]])
        pair_cov = torch.linalg.inv(precision)  # (top_j, low_j) for every j
        mean = torch.cat([pair_cov[0, 1] * x / t2, pair_cov[1, 1] * x / t2], dim=1)
        cov = torch.kron(pair_cov.contiguous(), torch.eye(self.dim))
        return mean, cov


@pytest.fixture
def two_level_problem():
    return TwoLevelGaussian()
