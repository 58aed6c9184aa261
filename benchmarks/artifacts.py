"""The run directory: resumable stages whose outputs are written atomically.

A stage's output is a file; if the file exists the stage is done and is loaded instead of
recomputed (``--fresh`` recomputes everything). Files appear only complete (temporary file, then
``os.replace``), so an interrupted run never leaves a truncated artifact behind, and a rerun picks
up at the first unfinished stage. Tensors are saved with ``torch.save`` and read back with
``weights_only=True``: plain data, never code.

A cached stage must not outlive the code that produced it: each stage names the modules it runs
(``code=``) and the stages whose outputs it consumes (``after=``); its fingerprint hashes their
source and the fingerprints of those stages, and is recorded in ``fingerprints.json``. A stage
whose fingerprint changed (a metric fixed, an attack changed upstream) is recomputed, and so,
through ``after=``, is everything downstream of it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import torch

from pyro_vae.checkpoint import atomic_path, atomic_torch_save

T = TypeVar("T")
FINGERPRINTS = "fingerprints.json"


def source_fingerprint(modules: Iterable[str | ModuleType]) -> str:
    """sha256 of the source of the named modules (a package: every ``.py`` file under it)."""
    digest = hashlib.sha256()
    for module in modules:
        module = importlib.import_module(module) if isinstance(module, str) else module
        origin = Path(module.__file__)
        files = (sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py"
                 else [origin])
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class ConfigurationMismatch(ValueError):
    """The run directory was made by a run with other settings."""


class RunDirectory:
    """One run's folder; ``stage(name, compute)`` returns the cached or freshly computed result.

    ``computed`` lists the stages this process computed (rather than loaded), which the resume
    test and the log use.
    """

    def __init__(self, root: Path, *, fresh: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fresh = fresh
        self.computed: list[str] = []

    def path(self, name: str) -> Path:
        return self.root / name

    def fingerprint(self, name: str) -> str | None:
        """The recorded fingerprint of stage ``name`` (None for stages cached without one)."""
        return self._fingerprints().get(name)

    def _fingerprints(self) -> dict[str, str]:
        path = self.path(FINGERPRINTS)
        return json.loads(path.read_text()) if path.exists() else {}

    def stage(self, name: str, compute: Callable[[], T], *,
              code: Iterable[str | ModuleType] = (), after: Iterable[str] = (),
              identity: str = "") -> T:
        """Load ``<root>/<name>`` (``.pt`` or ``.json``) if present and produced by the same code,
        else compute and save it.

        ``code``: modules the stage runs; ``after``: stages whose outputs it uses; ``identity``:
        anything else that defines the output (e.g. the sha256 of a zoo checkpoint).
        """
        path = self.path(name)
        digest = hashlib.sha256((source_fingerprint(code) + identity).encode())
        for upstream in after:
            digest.update(f"{upstream}={self.fingerprint(upstream)}".encode())
        fingerprint = digest.hexdigest()
        if path.exists() and not self.fresh and self.fingerprint(name) == fingerprint:
            return _load(path)
        if path.exists() and not self.fresh:
            print(f"  stage {name}: its code or inputs changed since it was cached; recomputing")
        result = compute()
        _save(path, result)
        atomic_write_text(self.path(FINGERPRINTS), json.dumps(
            self._fingerprints() | {name: fingerprint}, indent=2, sort_keys=True))
        self.computed.append(name)
        # Hand back what a rerun would load (JSON has lists, not tuples), so both paths agree.
        return _load(path) if path.suffix == ".json" else result

    def pin_configuration(self, configuration: dict) -> None:
        """Record ``configuration`` on first use; refuse a directory that holds another one.

        Stages are reused by file name, so one directory must only ever hold one configuration
        (a changed knob would otherwise silently reuse stale stages).
        """
        recorded = self.stage("configuration.json", lambda: configuration)
        wanted = json.loads(json.dumps(configuration))
        if recorded != wanted:
            changes = "; ".join(configuration_changes(recorded, wanted)[:4])
            raise ConfigurationMismatch(
                f"{self.root} holds a run with another configuration ({changes}); use --fresh "
                "to recompute it, or --out for a new directory")

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path(name), text)
        return self.path(name)


def configuration_changes(recorded, wanted, path: str = "") -> list[str]:
    """Where two JSON configurations differ, as "key.sub: recorded → wanted" lines ("absent"
    for a key one of them lacks, e.g. a knob added to the profile since the run)."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        changes = []
        for key in sorted(set(recorded) | set(wanted), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in recorded or key not in wanted:
                changes.append(f"{where}: {recorded.get(key, 'absent')!r} → "
                               f"{wanted.get(key, 'absent')!r}")
            else:
                changes += configuration_changes(recorded[key], wanted[key], where)
        return changes
    return [] if recorded == wanted else [f"{path}: {recorded!r} → {wanted!r}"]


def _load(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return torch.load(path, map_location="cpu", weights_only=True)


def _save(path: Path, value) -> None:
    if path.suffix == ".json":
        atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True))
    else:
        atomic_torch_save(value, path)
