"""Locate the third-party data in ``../shared/data`` for tests and benchmarks.

The data are never shipped with the package. A user's fresh clone has no ``../shared``; callers get
``None`` (benchmarks) or a pytest skip with the reason (tests, via ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "FLUORECON_SHARED_DATA"


def shared_data_root() -> Path | None:
    """Return the ``shared/data`` folder if one can be found, else ``None``.

    Search order: ``$FLUORECON_SHARED_DATA``; then ``../shared/data`` beside the repository (walking
    up from this file and from the current directory).

    Examples
    --------
    >>> root = shared_data_root()
    >>> root is None or root.is_dir()
    True
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    starts = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in starts:
        for parent in [start, *start.parents]:
            cand = parent / "shared" / "data"
            if cand.is_dir() and (cand / "README.md").exists():
                return cand
    return None


def shared_data(name: str) -> Path | None:
    """Return ``shared/data/<name>`` if present, else ``None``.

    Examples
    --------
    >>> p = shared_data("fmd-confocal-pairs")
    >>> p is None or p.name == "fmd-confocal-pairs"
    True
    """
    root = shared_data_root()
    if root is None:
        return None
    p = root / name
    return p if p.exists() else None
