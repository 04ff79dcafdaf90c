"""Small shared utilities: seeding, determinism and device choice."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError


def seed_everything(seed: int, deterministic: bool = False) -> np.random.Generator:
    """Seed Python, NumPy and torch; optionally force deterministic torch kernels.

    Parameters
    ----------
    seed : int
        The seed.
    deterministic : bool
        If True, ``torch.use_deterministic_algorithms(True)`` so CPU results are bit-identical.

    Returns
    -------
    numpy.random.Generator
        A generator seeded with ``seed`` for the caller's own draws.

    Examples
    --------
    >>> rng = seed_everything(0)
    >>> float(rng.random()) == float(seed_everything(0).random())
    True
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - third-party code may still draw from the legacy global state
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    return np.random.default_rng(seed)


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A generator from a seed, or the generator itself (so simulators can share one stream).

    Examples
    --------
    >>> g = np.random.default_rng(1)
    >>> as_rng(g) is g, bool(as_rng(3).random() == np.random.default_rng(3).random())
    (True, True)
    """
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def resolve_device(device: str = "auto"):
    """Turn ``"cpu" | "cuda" | "auto"`` into a ``torch.device``.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch


    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FluoreconError("--device cuda was requested but no CUDA GPU is available",
                             hint="use --device cpu or --device auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise FluoreconError(f"unknown device {device!r}", hint="use cpu, cuda or auto")
    return torch.device(device)


def to_json(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and pydantic models into JSON values (NaN → None).

    The one JSON conversion of the package (provenance, CLI ``--json``, reports, bundles).

    Examples
    --------
    >>> to_json({"a": np.float32(1.5), "b": (1, 2), "c": float("nan")})
    {'a': 1.5, 'b': [1, 2], 'c': None}
    """
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_json(v) for v in obj]
    if hasattr(obj, "model_dump"):  # pydantic models
        return to_json(obj.model_dump(mode="json"))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return to_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    if hasattr(obj, "to_dict"):
        return to_json(obj.to_dict())
    return str(obj)


def array_hash(a: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (provenance of inputs).

    Examples
    --------
    >>> array_hash(np.zeros(3, np.float32)) == array_hash(np.zeros(3, np.float32)), len(array_hash(np.zeros(3)))
    (True, 64)
    """
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(json.dumps([list(a.shape), str(a.dtype)]).encode())
    h.update(a.tobytes())
    return h.hexdigest()
