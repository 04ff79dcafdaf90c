"""Text phantoms of Box 5: glyph grid, training sets and the degradation (against scipy and counting)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics import glyphs as G


def test_grid_places_one_letter_per_cell_and_blanks_are_empty():
    g = G.GlyphGrid()
    img = g.render("a b", width=48)
    cols = img.sum(axis=0)
    cell = lambda i: cols[g.margin + i * g.cell: g.margin + (i + 1) * g.cell]  # noqa: E731
    assert cell(0).sum() > 5 and cell(2).sum() > 5
    # the blank cell holds no ink of its own (only anti-aliasing spill of at most one column per side)
    assert cell(1)[1:-1].sum() < 0.05 * cell(0).sum()
    assert np.array_equal(g.letter_at("b", 2, 48), g.render("  b", width=48))
    with pytest.raises(FluoreconError, match="too small"):
        g.render("abcdef", width=40)


def test_forward_is_blur_times_photons_plus_background_with_poisson_noise():
    g = G.GlyphGrid()
    y = g.render("Wit", width=48)
    fw = G.text_forward(sigma=2.0, peak=12.0, background=2.0)
    ref = 12.0 * ndimage.gaussian_filter(y.astype(np.float64), 2.0, mode="constant", truncate=4.0) + 2.0
    np.testing.assert_allclose(fw.expected(y), ref, atol=2e-3 * ref.max())
    xs = np.stack([fw.simulate(y, seed=s)[0] for s in range(400)])
    assert np.all(xs == np.round(xs))  # photon counts
    # Poisson: mean and variance both equal the expected counts (pooled over pixels)
    assert abs(xs.mean() / ref.mean() - 1) < 0.01
    assert abs(xs.var(axis=0).mean() / ref.mean() - 1) < 0.05


def test_training_sets_follow_the_protocol():
    tri = G.latin_trigrams(5000, exclude=("witenagemot",))
    assert len(tri) > 3000 and all(len(t) == 3 and t.isalpha() for t in tri)
    no_ae = G.latin_trigrams(5000, drop="ae")
    assert not any(set(t) & set("aeAE") for t in no_ae) and set(no_ae) < set(tri)
    assert "the" in tri and "The" in tri
    # an excluded word removes every frequent word containing it
    assert "hat" not in G.latin_trigrams(300, exclude=("hat",)) or "hat" in G.latin_trigrams(300)
    x, info = G.training_set("mix", n_words=300, max_items=20, seed=0)
    assert x.shape == (20, 32, 48) and info["n"] == 20 and "50/50" in info["kind"]
    a, _ = G.training_set("latin", n_words=300, max_items=5, seed=3)
    b, _ = G.training_set("latin", n_words=300, max_items=5, seed=3)
    assert np.array_equal(a, b)
    with pytest.raises(FluoreconError, match="unknown Box 5 condition"):
        G.training_set("greek")


def test_chinese_set_uses_the_cjk_font_or_says_it_uses_strokes():
    x, info = G.training_set("chinese", max_items=4, seed=0)
    assert x.shape == (4, 32, 48) and x.max() > 0.9
    if G.cjk_font() is None:
        assert info["kind"] == "procedural strokes"
    else:
        assert info["kind"].startswith("GB2312")
        han = G.cjk_characters()
        assert len(han) == 3755 + 3008 and len(set(han)) == len(han)


def test_stroke_characters_are_seeded_and_stay_in_their_boxes():
    a = G.stroke_characters(5, 48, seed=1)
    assert np.array_equal(a, G.stroke_characters(5, 48, seed=1))
    assert not np.array_equal(a, G.stroke_characters(5, 48, seed=2))
    assert a[:, :, :8].max() == 0 and a[:, :, -8:].max() == 0  # two 16-px boxes centred on 48 px


def test_training_items_sit_inside_lines_so_inner_letters_have_neighbours():
    alone, _ = G.training_set("latin", n_words=300, max_items=60, context=1, seed=3)
    lined, info = G.training_set("latin", n_words=300, max_items=60, context=3, seed=3)
    assert alone.shape == lined.shape == (60, 32, 48) and info["context"] == 3

    def ink_at_both_edges(x):
        return float(np.mean((x[:, :, :3].max(axis=(1, 2)) > 0.2) & (x[:, :, -3:].max(axis=(1, 2)) > 0.2)))

    assert ink_at_both_edges(alone) == 0.0  # 9-px black margins around a lone trigram
    # the window is cut from a line of 3: the middle third of the items always has letters on both sides
    assert ink_at_both_edges(lined) > 0.3
    with pytest.raises(FluoreconError, match="context"):
        G.training_set("latin", n_words=300, max_items=4, context=0)
