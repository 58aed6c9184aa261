"""Samplers and diagnostics for the MCMC defence (Kuzina et al. 2022, Section 3, Algorithm 1).

Needs only a Pyro model conditioned on its data (or a bare potential) and initial latents; it
knows nothing about images or VAEs.
"""

from inference.adaptation import AdaptState, StepSizeAdaptation, adapt_end_warmup, adapt_init, adapt_update
from inference.api import PosteriorSamples, SamplerConfig, sample_posterior
from inference.chees import BatchedChEES
from inference.diagnostics import (DiagnosticsSummary, SiteSummary, convergence, save_netcdf, summarize,
                                   summarize_sites, to_inference_data)
from inference.hmc import HMCInfo, HMCNoise, HMCState, draw_hmc_noise, hmc_init, hmc_move, hmc_step
from inference.integrator import leapfrog
from inference.kernels import BatchedHMC, BatchedKernel, BatchedMAP, BatchedNUTS, jittered_step_size
from inference.layout import LatentLayout
from inference.mala import BatchedMALA
from inference.map import MAPInfo, MAPState, map_init, map_step
from inference.nuts import NUTSInfo, nuts_step
from inference.posterior_ratio import KSResult, ks_two_sample, log_posterior_ratio
from inference.samplers import SAMPLERS, RunResult, SamplerRegistry, SamplerSpec
from inference.target import PosteriorTarget, draw_initial_latents, initial_latents
from inference.unrolled import (ChainNoise, UnrolledHMC, differentiable_value_and_grad, draw_chain_noise,
                                unrolled_hmc)

__all__ = [
    "SAMPLERS",
    "AdaptState",
    "BatchedChEES",
    "BatchedHMC",
    "BatchedKernel",
    "BatchedMALA",
    "BatchedMAP",
    "BatchedNUTS",
    "ChainNoise",
    "DiagnosticsSummary",
    "HMCInfo",
    "HMCNoise",
    "HMCState",
    "KSResult",
    "LatentLayout",
    "MAPInfo",
    "MAPState",
    "NUTSInfo",
    "PosteriorSamples",
    "PosteriorTarget",
    "RunResult",
    "SamplerConfig",
    "SamplerRegistry",
    "SamplerSpec",
    "SiteSummary",
    "StepSizeAdaptation",
    "UnrolledHMC",
    "adapt_end_warmup",
    "adapt_init",
    "adapt_update",
    "convergence",
    "differentiable_value_and_grad",
    "draw_chain_noise",
    "draw_hmc_noise",
    "draw_initial_latents",
    "hmc_init",
    "hmc_move",
    "hmc_step",
    "initial_latents",
    "jittered_step_size",
    "ks_two_sample",
    "leapfrog",
    "log_posterior_ratio",
    "map_init",
    "map_step",
    "nuts_step",
    "sample_posterior",
    "save_netcdf",
    "summarize",
    "summarize_sites",
    "to_inference_data",
    "unrolled_hmc",
]
