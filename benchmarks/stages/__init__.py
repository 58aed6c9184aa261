"""The stages of a benchmark run, each a function of a :class:`benchmarks.context.RunContext`.

models (zoo or SVI) → quality, latent classifiers → references → attacks → defence (MCMC) →
metrics. Every stage caches its output in the run directory with a fingerprint of the code that
produced it (``benchmarks.artifacts``); an experiment composes the stages it needs.
"""
