"""Load a benchmark script (they live outside the package) as a fresh module, for the tests beside this file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(stem: str, name: str | None = None, register: bool = False) -> ModuleType:
    """Execute ``benchmarks/<stem>.py`` afresh (so monkeypatched constants never leak between tests).

    ``register`` puts it in ``sys.modules`` under ``name`` (dataclasses look their module up there).
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the scripts import _provenance, _gallery, _stats, _peers
    name = name or f"{stem}_bench"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
