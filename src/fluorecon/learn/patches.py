"""Training data: normalisation, patch sampling with foreground bias, augmentation, splits, pairs.

Images are handled as ``(C, *spatial)`` float32 arrays inside the engine (``C`` = network channels);
:func:`to_internal` converts a user array + axes into a list of such samples (``T`` and, for a 2D
model, ``Z`` become separate samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.io import IMAGE_FILE_SUFFIXES, read_image
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.validation import as_image

__all__ = [
    "PercentileNormalizer", "to_internal", "from_internal", "PatchSampler", "augment", "split_train_val",
    "load_pairs", "pairs_from_forward", "check_pair",
]


def to_internal(image: np.ndarray, axes: str, dim: int = 2) -> list[np.ndarray]:
    """Split an image into samples of shape ``(C, *spatial)`` for a ``dim``-D network.

    Examples
    --------
    >>> [s.shape for s in to_internal(np.zeros((3, 8, 9)), "ZYX", dim=2)]
    [(1, 8, 9), (1, 8, 9), (1, 8, 9)]
    >>> to_internal(np.zeros((2, 8, 9)), "CYX")[0].shape
    (2, 8, 9)
    """

    arr, axes = as_image(image, axes)
    if dim == 3 and "Z" not in axes:
        raise FluoreconError(f"a 3D network needs a Z axis, but the axes are {axes!r}",
                             hint="pass a ZYX stack, or train a 2D network")
    spatial = axes[-dim:]
    batch = [a for a in axes if a not in spatial and a != "C"]
    order = [axes.index(a) for a in batch] + ([axes.index("C")] if "C" in axes else []) + [axes.index(a) for a in spatial]
    x = np.transpose(arr, order)
    nc = arr.shape[axes.index("C")] if "C" in axes else 1
    x = x.reshape((-1, nc, *x.shape[-dim:]))
    return [np.ascontiguousarray(s, dtype=np.float32) for s in x]


def from_internal(sample: np.ndarray, axes: str) -> np.ndarray:
    """Inverse of :func:`to_internal` for a single sample (drops a singleton channel if no ``C``)."""
    return sample if "C" in axes else sample[0]


def check_pair(a: np.ndarray, b: np.ndarray, name_a: str = "input", name_b: str = "target") -> None:
    """Raise if two paired arrays differ in shape."""
    if a.shape != b.shape:
        raise FluoreconError(f"paired images differ in shape: {name_a} {a.shape} vs {name_b} {b.shape}",
                             hint="pairs must be pixel-aligned images of the same shape")


def augment(patches: np.ndarray, rng: np.random.Generator, dim: int, anisotropic: bool = False) -> np.ndarray:
    """Random flips and 90° rotations, per patch; for 3D only in the YX plane (plus Z flip if isotropic).

    ``patches`` has shape ``(N, K, C, *spatial)`` where ``K`` stacks arrays that must be transformed
    together (input and target). Rotations need square YX patches.
    """
    out = np.empty_like(patches)
    for i in range(patches.shape[0]):
        p = patches[i]
        k = int(rng.integers(4))
        p = np.rot90(p, k, axes=(-2, -1))
        if rng.random() < 0.5:
            p = p[..., ::-1]
        if dim == 3 and not anisotropic and rng.random() < 0.5:
            p = p[..., ::-1, :, :]
        out[i] = p
    return out


class PatchSampler:
    """Random patches from a list of samples (each ``(K, C, *spatial)``), with a foreground bias.

    Parameters
    ----------
    samples : list of numpy.ndarray
        Each ``(K, C, *spatial)`` (``K`` = 1 for self-supervised, 2 for input/target pairs).
    patch_size : sequence of int
        Spatial patch shape.
    foreground_bias : float
        Probability of drawing a patch among the brighter ones (the best of 4 random candidates by
        mean intensity of the first array); 0 = uniform.
    seed : int or numpy.random.Generator

    Examples
    --------
    >>> s = PatchSampler([np.random.default_rng(0).random((1, 1, 40, 40), dtype=np.float32)], (16, 16), seed=0)
    >>> s.sample(5).shape
    (5, 1, 1, 16, 16)
    """

    def __init__(self, samples: Sequence[np.ndarray], patch_size: Sequence[int], foreground_bias: float = 0.5,
                 seed: int | np.random.Generator | None = 0, augment_data: bool = True, anisotropic: bool = False):
        self.samples = list(samples)
        self.patch = tuple(int(p) for p in patch_size)
        self.dim = len(self.patch)
        for s in self.samples:
            sp = s.shape[-self.dim:]
            if any(a < b for a, b in zip(sp, self.patch, strict=True)):
                raise FluoreconError(f"image of spatial shape {tuple(sp)} is smaller than the patch size {self.patch}",
                                     hint="use a smaller --patch-size (or a larger image)")
        self.bias = float(foreground_bias)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.augment = augment_data
        self.anisotropic = anisotropic
        sizes = np.array([np.prod(s.shape[-self.dim:]) for s in self.samples], dtype=np.float64)
        self.p = sizes / sizes.sum()

    def _corner(self, s: np.ndarray) -> tuple[int, ...]:
        sp = s.shape[-self.dim:]
        return tuple(int(self.rng.integers(0, a - b + 1)) for a, b in zip(sp, self.patch, strict=True))

    def _crop(self, s: np.ndarray, c: tuple[int, ...]) -> np.ndarray:
        return s[(Ellipsis, *[slice(a, a + b) for a, b in zip(c, self.patch, strict=True)])]

    def sample(self, n: int) -> np.ndarray:
        """Return ``n`` patches, shape ``(n, K, C, *patch)``, float32."""
        idx = self.rng.choice(len(self.samples), size=n, p=self.p)
        out = []
        for i in idx:
            s = self.samples[i]
            c = self._corner(s)
            if self.bias > 0 and self.rng.random() < self.bias:
                cands = [c] + [self._corner(s) for _ in range(3)]
                c = max(cands, key=lambda cc: float(self._crop(s[0], cc).mean()))
            out.append(self._crop(s, c))
        arr = np.stack(out).astype(np.float32, copy=False)
        if self.augment:
            square = self.patch[-1] == self.patch[-2]
            arr = augment(arr, self.rng, self.dim, self.anisotropic) if square else arr
        return np.ascontiguousarray(arr)


def split_train_val(samples: list[np.ndarray], val_fraction: float = 0.1, seed: int = 0,
                    min_size: Sequence[int] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split samples into training and validation sets.

    With several samples, whole samples are held out; with one, a strip along the last spatial axis is
    held out (so validation pixels are never seen in training).
    """
    if not 0 <= val_fraction < 1:
        raise FluoreconError(f"val_fraction must be in [0, 1), got {val_fraction}", hint="e.g. 0.1")
    if val_fraction == 0 or not samples:
        return list(samples), []
    if len(samples) >= 5:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(samples))
        n_val = max(1, int(round(val_fraction * len(samples))))
        val = [samples[i] for i in sorted(order[:n_val])]
        tr = [samples[i] for i in sorted(order[n_val:])]
        return tr, val
    tr, val = [], []
    for s in samples:
        w = s.shape[-1]
        cut = int(round(w * (1 - val_fraction)))
        if min_size is not None:
            mx = int(min_size[-1])
            if w - cut < mx or cut < mx:
                tr.append(s)
                continue
        tr.append(np.ascontiguousarray(s[..., :cut]))
        val.append(np.ascontiguousarray(s[..., cut:]))
    return tr, val


def load_pairs(input_dir: str | Path, target_dir: str | Path, axes: str | None = None
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[Path], str]:
    """Load pairs from two folders, matched by file name.

    Returns
    -------
    inputs, targets : lists of numpy.ndarray
    paths : list of Path
        The input and target files (for provenance hashes).
    axes : str

    Raises
    ------
    FluoreconError
        Missing folder, no images, a file without a partner (named), or mismatched shapes.
    """

    a, b = Path(input_dir), Path(target_dir)
    for d in (a, b):
        if not d.is_dir():
            raise FluoreconError(f"pair folder {d} not found", hint="give two folders of images with matching names")

    def listing(d: Path) -> dict[str, Path]:
        return {q.name: q for q in sorted(d.iterdir()) if q.suffix.lower() in IMAGE_FILE_SUFFIXES and not q.name.startswith(".")}

    la, lb = listing(a), listing(b)
    if not la:
        raise FluoreconError(f"no images in {a}", hint="put TIFF/PNG/NPY images in the input folder")
    missing = sorted(set(la) - set(lb))
    extra = sorted(set(lb) - set(la))
    if missing or extra:
        msg = []
        if missing:
            msg.append(f"{len(missing)} input(s) without a target in {b} (e.g. {missing[0]})")
        if extra:
            msg.append(f"{len(extra)} target(s) without an input in {a} (e.g. {extra[0]})")
        raise FluoreconError("; ".join(msg), hint="every input needs a target file with the same name")
    xs, ys, paths = [], [], []
    used_axes = axes
    for name in la:
        ia = read_image(la[name], axes=axes)
        ib = read_image(lb[name], axes=axes)
        check_pair(ia.data, ib.data, str(la[name]), str(lb[name]))
        used_axes = used_axes or ia.axes
        xs.append(np.asarray(ia.data, np.float32))
        ys.append(np.asarray(ib.data, np.float32))
        paths += [la[name], lb[name]]
    return xs, ys, paths, str(used_axes)


def pairs_from_forward(truths: Sequence[np.ndarray], forward, seed: int = 0, n_noisy: int = 1
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Simulate training pairs with a forward model: ``(x, y)`` = (recording, truth on x's grid).

    Parameters
    ----------
    truths : sequence of numpy.ndarray
        Clean images (e.g. ``physics.phantoms``).
    forward : fluorecon.physics.forward.Forward
        ``forward.simulate(y, seed) -> (x, y_ref)``.
    n_noisy : int
        Independent noise draws per truth.
    """
    xs, ys = [], []
    k = 0
    for y in truths:
        for _ in range(n_noisy):
            x, yref = forward.simulate(np.asarray(y, np.float32), seed=seed + k)
            k += 1
            check_pair(np.asarray(x), np.asarray(yref), "simulated recording", "reference")
            xs.append(np.asarray(x, np.float32))
            ys.append(np.asarray(yref, np.float32))
    return xs, ys
