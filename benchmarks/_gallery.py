"""Failure cases of a benchmark: its worst cases by a score, as a small image gallery plus a JSON list.

The review's fifth reproducibility guideline asks for failure cases, not only means. A benchmark
collects one ``Case`` per (image, method, seed) it scored and calls :func:`save_gallery` per method:
the ``n`` lowest scores are drawn as rows of panels (the recording, the result, the reference and the
absolute error), each cropped around the place where the result is furthest from the reference, so
the failure is visible at a glance instead of averaged away.

Examples
--------
>>> import numpy as np
>>> truth = np.zeros((64, 64), np.float32)
>>> cases = [Case(f"img{i}", score=float(-i), panels={"result": truth + i, "reference": truth})
...          for i in range(5)]
>>> [c.label for c in worst(cases, 3)]
['img4', 'img3', 'img2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage


@dataclass
class Case:
    """One scored result. ``score``: higher is better (e.g. PSNR gain); ``panels``: name → 2D/3D image.

    Panels named ``result`` and ``reference`` give the error panel and the crop centre; 3D panels are
    shown as their middle plane along the first axis.
    """

    label: str
    score: float
    panels: Mapping[str, np.ndarray] = field(default_factory=dict)
    info: Mapping[str, object] = field(default_factory=dict)


def worst(cases: Sequence[Case], n: int = 3) -> list[Case]:
    """The ``n`` cases with the lowest score (NaN counts as worst), worst first."""
    def key(c: Case) -> float:
        return -np.inf if not np.isfinite(c.score) else c.score
    return sorted(cases, key=key)[:n]


def _plane(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a


def crop_centre(result: np.ndarray, reference: np.ndarray, sigma: float = 4.0) -> tuple[int, int]:
    """Pixel where the locally averaged absolute error is largest (the failure to show).

    >>> r = np.zeros((50, 60)); r[40, 10] = 5.0
    >>> crop_centre(r, np.zeros((50, 60)))
    (40, 10)
    """
    err = ndimage.gaussian_filter(np.abs(_plane(result) - _plane(reference)), sigma)
    j = np.unravel_index(int(np.argmax(err)), err.shape)
    return int(j[0]), int(j[1])


def _crop(a: np.ndarray, centre: tuple[int, int], size: int) -> np.ndarray:
    sl = []
    for c, n in zip(centre, a.shape, strict=True):
        h = min(size, n)
        lo = int(np.clip(c - h // 2, 0, n - h))
        sl.append(slice(lo, lo + h))
    return a[tuple(sl)]


def save_gallery(cases: Sequence[Case], path: str | Path, title: str, n: int = 3, crop: int = 128) -> list[dict]:
    """Draw the ``n`` worst cases to ``path`` (PNG) and return their labels, scores and crop boxes.

    Every panel of a row shares the reference's display range (1st–99.9th percentile), so a result
    that is too bright or too dark looks so; the error panel has its own range, given in its title.
    """
    rows = worst(cases, n)
    out: list[dict] = []
    if not rows:
        return out
    names = list(rows[0].panels)
    with_err = "result" in names and "reference" in names
    ncol = len(names) + int(with_err)
    fig, axs = plt.subplots(len(rows), ncol, figsize=(2.3 * ncol, 2.4 * len(rows)), squeeze=False)
    for i, c in enumerate(rows):
        planes = {k: _plane(v) for k, v in c.panels.items()}
        if with_err:
            centre = crop_centre(planes["result"], planes["reference"])
        else:
            first = next(iter(planes.values()))
            centre = (first.shape[0] // 2, first.shape[1] // 2)
        ref = planes.get("reference", next(iter(planes.values())))
        lo, hi = np.percentile(ref, [1, 99.9])
        hi = hi if hi > lo else lo + 1.0
        for j, k in enumerate(names):
            ax = axs[i, j]
            ax.imshow(_crop(planes[k], centre, crop), cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(k if j else f"{c.label}\n{k}", fontsize=7)
        if with_err:
            e = np.abs(planes["result"] - planes["reference"])
            ec = _crop(e, centre, crop)
            ax = axs[i, -1]
            ax.imshow(ec, cmap="magma", vmin=0, vmax=float(np.percentile(e, 99.9)) or 1.0)
            ax.set_title(f"|error| (score {c.score:.3g})", fontsize=7)
        for ax in axs[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        out.append({"label": c.label, "score": float(c.score), "crop_centre": list(centre), "crop": crop,
                    **{k: v for k, v in c.info.items()}})
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out
