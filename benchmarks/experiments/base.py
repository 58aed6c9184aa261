"""What an experiment is, and the registry ``--experiment`` chooses from.

An experiment composes the cached stages of :mod:`benchmarks.stages` (models, references,
attacks, chains, metrics) into one question, and answers it with a section of ``results.json``,
a section of ``report.md`` and a figure. Adding one is one file (an :class:`Experiment` with its
``run``, ``render`` and ``figure``) and one line in :mod:`benchmarks.experiments`.

Each experiment has its own knobs per profile (``smoke``: seconds, for CI; ``quick``: at most
about 15 minutes on a 2-core CPU; ``paper``: the paper's setting), on top of the run's
:class:`~benchmarks.profiles.Profile`, which every experiment of a run directory shares so that
their stages are reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from ..context import RunContext

PROFILE_NAMES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    ``run(context, knobs) -> section``: the section of ``results.json`` (plain data);
    ``render(run, section) -> lines``: its part of ``report.md`` (``run`` holds the run's shared
    fields: dataset, sampler, profile, environment, ...); ``figure(run, section, folder)``:
    writes its PNG(s) into the run directory; ``knobs``: the experiment's own settings per
    profile name (a frozen dataclass or None); ``samplers``: the run samplers it works with,
    ``model_kinds``: the kinds of its model (the profile's first) it works with (None: any),
    both checked when the command line is parsed.
    """

    name: str
    summary: str
    run: Callable[[RunContext, Any], dict]
    render: Callable[[dict, dict], list[str]]
    figure: Callable[[dict, dict, Path], None]
    knobs: Mapping[str, Any]
    samplers: tuple[str, ...] | None = None
    model_kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        missing = [p for p in PROFILE_NAMES if p not in self.knobs]
        if missing:
            raise ValueError(f"experiment {self.name!r} has no knobs for profiles {missing}")

    def knobs_for(self, profile_name: str):
        return self.knobs[profile_name]

    def knobs_dict(self, profile_name: str) -> dict | None:
        knobs = self.knobs_for(profile_name)
        return asdict(knobs) if is_dataclass(knobs) else knobs


class ExperimentRegistry(Mapping):
    """Name → :class:`Experiment`, in registration order (the report's order)."""

    def __init__(self, experiments: Iterable[Experiment] = ()):
        self._experiments: dict[str, Experiment] = {}
        for experiment in experiments:
            self.register(experiment)

    def register(self, experiment: Experiment) -> Experiment:
        if experiment.name in self._experiments:
            raise ValueError(f"experiment {experiment.name!r} is registered twice")
        self._experiments[experiment.name] = experiment
        return experiment

    def __getitem__(self, name: str) -> Experiment:
        return self._experiments[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._experiments)

    def __len__(self) -> int:
        return len(self._experiments)
