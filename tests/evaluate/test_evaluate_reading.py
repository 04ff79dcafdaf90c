"""The generic text reader, the character error rate and the nested bootstrap.

The key test: the Box 5 degradation defeats the generic reader (blur-matched templates, whole-line
least squares) on the recording, while the same reader reads the same words at high photon counts —
so the failure is the degradation's, not the reader's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage, stats

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.reading import (
    SequenceReader,
    TemplateReader,
    TrigramPrior,
    character_error_rate,
    levenshtein,
    nested_bootstrap_ci,
    position_errors,
)
from fluorecon.physics.glyphs import GlyphGrid, latin_trigrams, text_forward

WORDS = ("Witenagemot", "Palimpsest", "Bathysphere")
W = 128


def _brute_edit(a: str, b: str) -> int:
    """Independent reference: the minimum over all alignments, by recursion with memo."""
    from functools import lru_cache

    @lru_cache(None)
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_levenshtein_matches_the_recursive_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = "".join(rng.choice(list("abc"), rng.integers(0, 7)))
        b = "".join(rng.choice(list("abc"), rng.integers(0, 7)))
        assert levenshtein(a, b) == _brute_edit(a, b)
    assert character_error_rate("Witenagemt", "Witenagemot") == pytest.approx(1 / 11)
    with pytest.raises(FluoreconError):
        character_error_rate("a", "")
    with pytest.raises(FluoreconError, match="cells"):
        position_errors("abc", "ab")


def test_reader_reads_clean_and_blurred_text_and_finds_the_blur():
    g = GlyphGrid()
    for word in WORDS:
        reader = TemplateReader(g, len(word), W, sigmas=(0.0, 1.0, 2.0, 3.0))
        clean = g.render(word, width=W)
        blurred = ndimage.gaussian_filter(clean, 2.0, mode="constant")
        cells, sig = reader.read_cells(np.stack([clean, blurred]))
        assert cells == [word, word]
        assert sig.tolist() == [0.0, 2.0]
    # the windowed template equals the glyph rendered at its cell and blurred on the whole canvas
    r = TemplateReader(g, 3, W, sigmas=(2.0,))
    ref = ndimage.gaussian_filter(g.letter_at("W", 2, W), 2.0, mode="constant")
    np.testing.assert_allclose(r.template(0, 2, "W"), ref, atol=1e-3)
    # a missing letter is read as a blank and costs one edit
    r = TemplateReader(g, 5, W)
    assert r.read(g.render("He lo", width=W)) == "Helo"
    with pytest.raises(FluoreconError, match="shape"):
        r.read(np.zeros((32, 64)))


def _reader_on_recordings(peak: float, n: int = 20) -> tuple[float, float]:
    g = GlyphGrid()
    fw = text_forward(peak=peak)
    sigma, bg = 2.5, 2.0
    cers, exact = [], []
    for k, word in enumerate(WORDS):
        y = g.render(word, width=W)
        lam = np.asarray(fw.expected(y), np.float64)
        x = np.random.default_rng(k).poisson(lam, size=(n, *lam.shape))
        reads = TemplateReader(g, len(word), W, sigmas=(sigma,)).read((x - bg) / peak)
        cers += [character_error_rate(t, word) for t in reads]
        exact += [t == word for t in reads]
    return float(np.mean(cers)), float(np.mean(exact))


def test_box5_degradation_defeats_the_generic_reader():
    cer, exact = _reader_on_recordings(peak=12.0)  # text_forward's defaults = the Box 5 degradation
    assert cer > 0.25 and exact < 0.1
    cer_hi, exact_hi = _reader_on_recordings(peak=3000.0)  # same blur, little noise: the reader works
    assert cer_hi < 0.02 and exact_hi > 0.9


def test_nested_bootstrap_matches_the_analytic_interval():
    rng = np.random.default_rng(1)
    # seeds differ by a random offset (between-seed variance) on top of realisation noise
    v = 0.4 + 0.05 * rng.standard_normal((6, 2, 1))[:, :, :] + 0.2 * rng.standard_normal((6, 2, 100))
    ci = nested_bootstrap_ci(v, n=2000, seed=0)
    seed_means = v.mean(axis=(1, 2))
    half = stats.t.ppf(0.975, 5) * seed_means.std(ddof=1) / np.sqrt(6)  # t interval over independent seeds
    assert ci.value == pytest.approx(v.mean())
    # the percentile bootstrap over 6 clusters is a little narrower than the t interval (n/(n-1), t vs z)
    assert 0.6 * half < (ci.high - ci.low) / 2 < 1.1 * half
    # ignoring the seed level (pooling realisations as if independent) would be far too narrow
    naive = 1.96 * v.std() / np.sqrt(v.size)
    assert (ci.high - ci.low) / 2 > 2 * naive
    with pytest.raises(FluoreconError, match="seeds, groups, realisations"):
        nested_bootstrap_ci(np.zeros((3, 4)))


def test_every_letter_has_a_distinct_template():
    g = GlyphGrid()
    r = TemplateReader(g, 1, 32)
    t = np.stack([r.template(0, 0, ch).ravel() for ch in r.classes[1:]])
    for i, j in itertools.combinations(range(len(t)), 2):
        assert np.abs(t[i] - t[j]).sum() > 1.0, (r.classes[i + 1], r.classes[j + 1])


def _brute_force_map(x, w, grid, sigma, n, alphabet, prior):
    """Every line of n cells scored directly: rendered by PIL, blurred by scipy, weighted residual + log-prior."""
    classes = " " + alphabet
    best, arg = -np.inf, None
    for seq in itertools.product(range(len(classes)), repeat=n):
        text = "".join(classes[k] for k in seq)
        model = ndimage.gaussian_filter(grid.render(text, width=x.shape[1]).astype(np.float64), sigma,
                                        mode="constant")
        score = -0.5 * np.sum(w * (x - model) ** 2)
        if prior is not None:
            score += prior.log_first[seq[0]] + prior.log_second[seq[0], seq[1]]
            score += sum(prior.log_next[seq[i - 2], seq[i - 1], seq[i]] for i in range(2, n))
        if score > best:
            best, arg = score, text
    return arg


@pytest.mark.parametrize("with_prior", [False, True])
def test_sequence_reader_finds_the_exact_map_line_of_brute_force(with_prior):
    g = GlyphGrid()
    alphabet, n, sigma = "ceo", 4, 2.5
    width = g.width_for(n)
    rng = np.random.default_rng(3)
    prior = TrigramPrior(["coe", "oce", "eco", "ooo"], alphabet=alphabet, eps=0.05) if with_prior else None
    reader = SequenceReader(g, n, width, sigma=sigma, prior=prior, alphabet=alphabet)
    agree = 0
    for _ in range(6):
        truth = "".join(rng.choice(list(alphabet), n))
        clean = ndimage.gaussian_filter(g.render(truth, width=width).astype(np.float64), sigma, mode="constant")
        var = 0.02 + 0.05 * rng.random(clean.shape)  # a non-uniform noise map: the weights matter
        x = clean + np.sqrt(var) * rng.standard_normal(clean.shape) * 1.5
        (got,), rss = reader.read_cells(x, variance=var, return_residual=True)
        assert got == _brute_force_map(x, 1 / var, g, sigma, n, alphabet, prior)
        model = ndimage.gaussian_filter(g.render(got, width=width).astype(np.float64), sigma, mode="constant")
        np.testing.assert_allclose(rss[0], np.sum((x - model) ** 2 / var), rtol=1e-6)
        agree += got == truth
    assert agree < 6  # the noise is strong enough that the decision is not trivial


def test_sequence_reader_reads_blurred_words_and_a_prior_without_e_never_reads_e():
    g = GlyphGrid()
    word = "Witenagemot"
    x = ndimage.gaussian_filter(g.render(word, width=128), 2.5, mode="constant")
    assert SequenceReader(g, len(word), 128, sigma=2.5).read_cells(x) == [word]
    no_e = TrigramPrior(latin_trigrams(2000, drop="e"), eps=1e-4)
    read = SequenceReader(g, len(word), 128, sigma=2.5, prior=no_e).read_cells(x)[0]
    assert "e" not in read and sum(a != b for a, b in zip(read, word, strict=True)) >= 2


def test_trigram_prior_rejects_bad_input():
    with pytest.raises(FluoreconError, match="three letters"):
        TrigramPrior(["ab"])
    with pytest.raises(FluoreconError, match="eps"):
        TrigramPrior(["abc"], eps=0)
    with pytest.raises(FluoreconError, match="alphabet"):
        SequenceReader(GlyphGrid(), 3, 48, sigma=1.0, prior=TrigramPrior(["abc"], alphabet="abc"))
