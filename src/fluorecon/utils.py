"""Small shared utilities: seeding, determinism and device choice."""

from __future__ import annotations

import os
import random

import numpy as np


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


def resolve_device(device: str = "auto"):
    """Turn ``"cpu" | "cuda" | "auto"`` into a ``torch.device``.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    from fluorecon.errors import FluoreconError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FluoreconError("--device cuda was requested but no CUDA GPU is available",
                             hint="use --device cpu or --device auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise FluoreconError(f"unknown device {device!r}", hint="use cpu, cuda or auto")
    return torch.device(device)
