"""Where a result came from: the commit of the code that produced it and what was uncommitted."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(*words: str) -> str:
    return subprocess.run(["git", *words], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent).stdout


def current_commit() -> str:
    """The commit the code is at, marked '-dirty' when the working tree has changes; "unknown"
    outside a git checkout."""
    try:
        return _git("describe", "--always", "--dirty", "--abbrev=40").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def uncommitted_files() -> list[str]:
    """Tracked files that differ from the commit (untracked files are not code that ran)."""
    try:
        status = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(line[3:] for line in status.splitlines() if line.strip())
