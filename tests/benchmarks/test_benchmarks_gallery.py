"""benchmarks/_gallery.py: the worst cases are the lowest scores, the crop sits on the error, the PNG is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _bench import load_benchmark
from skimage import io as skio

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("_gallery", "_gallery", register=True)


def test_worst_orders_by_score_and_puts_nan_first():
    g = _module()
    cases = [g.Case("a", 3.0), g.Case("b", -1.0), g.Case("c", float("nan")), g.Case("d", 0.5)]
    assert [c.label for c in g.worst(cases, 3)] == ["c", "b", "d"]


def test_gallery_crops_where_the_result_departs_from_the_reference(tmp_path):
    g = _module()
    rng = np.random.default_rng(0)
    ref = rng.random((200, 300)).astype(np.float32)
    cases = []
    for i, (y, x) in enumerate([(30, 250), (150, 40), (100, 150), (180, 280)]):
        res = ref.copy()
        res[y - 3:y + 4, x - 3:x + 4] += 2.0 + i  # a failure: a bright invented blob at a known place
        cases.append(g.Case(f"img{i}", score=-float(i), panels={"recording": ref, "result": res, "reference": ref}))
    out = g.save_gallery(cases, tmp_path / "worst.png", "test", n=3, crop=64)
    assert [o["label"] for o in out] == ["img3", "img2", "img1"]
    assert [tuple(o["crop_centre"]) for o in out] == [(180, 280), (100, 150), (150, 40)]
    png = skio.imread(tmp_path / "worst.png")
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 400  # 3 rows × 4 panels were drawn


def test_docstring_examples_run():
    import doctest

    assert doctest.testmod(_module()).failed == 0
