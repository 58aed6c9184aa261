"""MALA, the Metropolis-adjusted Langevin algorithm, as batched HMC with one leapfrog step.

One leapfrog step of size ε from z with p ~ N(0, I) proposes z' = z − (ε²/2)∇U(z) + ε p, the
Langevin proposal with time step ε²/2, and the HMC Metropolis test on H = U + ½|p|² is exactly
MALA's (Roberts & Tweedie 1996; the equivalence: Neal 2011, "MCMC using Hamiltonian dynamics",
Section 5.5.2). It costs one potential-and-gradient evaluation per transition, the finest grain
at which the defence's cost can be spent.

Its own adaptation: acceptance is driven to 0.574, the optimal rate of MALA as the dimension
grows (Roberts & Rosenthal 1998, "Optimal scaling of discrete approximations to Langevin
diffusions"), by dual averaging unless another kind is asked for (see the registration in
:mod:`inference.samplers`).
"""

from __future__ import annotations

from inference.kernels import BatchedHMC

MALA_TARGET_ACCEPT = 0.574


class BatchedMALA(BatchedHMC):
    """MALA for every chain of every point: :class:`~inference.kernels.BatchedHMC` with L = 1.

    Shape: as :class:`~inference.kernels.BatchedKernel`: initial latents (C, N, D), one
    evaluation per chain and transition (``HMCInfo.num_grad_evals`` = 1).
    """

    def __init__(self, model=None, potential_fn=None, **kwargs):
        super().__init__(model, potential_fn, num_leapfrog_steps=1, **kwargs)

    @classmethod
    def _config_options(cls, config) -> dict:
        return {}
