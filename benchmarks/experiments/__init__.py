"""The experiments ``python -m benchmarks.run --experiment NAME`` runs (see :mod:`.base`).

Adding one: a module with an ``EXPERIMENT`` and one line below. The order here is the report's.
"""

from . import adaptive, objectives, posterior_ratio, radius, samplers, tables, transitions
from .base import Experiment, ExperimentRegistry

EXPERIMENTS = ExperimentRegistry([
    tables.EXPERIMENT,
    posterior_ratio.EXPERIMENT,
    transitions.EXPERIMENT,
    radius.EXPERIMENT,
    objectives.EXPERIMENT,
    samplers.EXPERIMENT,
    adaptive.EXPERIMENT,
])

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentRegistry"]
