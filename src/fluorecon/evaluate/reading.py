"""Reading text images with blur-matched templates, and a blur-invariant character error rate.

The Box 5 experiment needs a reader that does not share the restorer's prior: a *generic* reader that
knows only the glyph shapes and the blur. :class:`TemplateReader` models a line of text as the sum of
blurred single-letter templates on the known grid (plus a blank) and fits the whole line by least
squares — coordinate descent over the cells, so that the spill-over of each letter's blur into its
neighbours is explained instead of misread. The blur of the templates is either given (reading the
degraded recording with the true PSF) or chosen per image from a grid of widths by the same least
squares (reading a restoration whose residual blur is unknown: blur-invariant).

:func:`character_error_rate` aligns the read string with the truth by edit distance (Levenshtein).

Examples
--------
>>> from fluorecon.physics.glyphs import GlyphGrid
>>> g = GlyphGrid()
>>> reader = TemplateReader(g, n_letters=5, width=g.width_for(5))
>>> reader.read(g.render("Hello", width=g.width_for(5)))
'Hello'
>>> character_error_rate("Helo", "Hello")
0.2
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.metrics import BootstrapCI
from fluorecon.physics.glyphs import ALPHABET, GlyphGrid

__all__ = ["SequenceReader", "TemplateReader", "TrigramPrior", "character_error_rate", "levenshtein",
           "nested_bootstrap_ci", "position_errors"]

BLANK = " "


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings.

    Examples
    --------
    >>> levenshtein("kitten", "sitting")
    3
    """
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(read: str, truth: str) -> float:
    """Edit distance between the read string and the truth, divided by the truth's length.

    Examples
    --------
    >>> character_error_rate("Witenagemot", "Witenagemot"), round(character_error_rate("Witcnagcmot", "Witenagemot"), 3)
    (0.0, 0.182)
    """
    if not truth:
        raise FluoreconError("the true text is empty", hint="give at least one character")
    return levenshtein(read, truth) / len(truth)


def position_errors(cells: str, truth: str) -> np.ndarray:
    """Per-letter correctness of a cell-by-cell reading (``cells`` keeps blanks, same length as truth)."""
    if len(cells) != len(truth):
        raise FluoreconError(f"cell reading has {len(cells)} cells, truth {len(truth)} letters",
                             hint="read with n_letters = len(truth)")
    return np.array([a != b for a, b in zip(cells, truth, strict=True)])


class TemplateReader:
    """Least-squares reader of one text line on a known glyph grid.

    Parameters
    ----------
    grid : GlyphGrid
        Glyph geometry and font (the templates are rendered with it).
    n_letters : int
        Number of cells to read (letters start at cell 0).
    width : int
        Canvas width of the images to read.
    sigmas : sequence of float
        Gaussian blur widths (px) the templates are tried at; the one with the smallest residual wins
        (blur-invariant reading). Give a single value to read with blur-matched templates.
    alphabet : str
        Candidate letters; a blank is always a candidate too.
    sweeps : int
        Coordinate-descent passes over the cells after the independent first pass.
    """

    def __init__(self, grid: GlyphGrid, n_letters: int, width: int, sigmas: Sequence[float] = (0.0,),
                 alphabet: str = ALPHABET, sweeps: int = 3):
        if n_letters < 1:
            raise FluoreconError(f"n_letters must be ≥ 1, got {n_letters}", hint="the word length")
        sig = [float(s) for s in np.atleast_1d(sigmas)]
        if not sig or any(s < 0 or not np.isfinite(s) for s in sig):
            raise FluoreconError(f"blur widths must be finite and ≥ 0, got {sigmas}", hint="e.g. sigmas=(0, 1, 2)")
        self.grid, self.n, self.width, self.sigmas, self.sweeps = grid, int(n_letters), int(width), sig, int(sweeps)
        self.classes = BLANK + alphabet
        base = np.stack([grid.render(ch, width=grid.width_for(1, multiple=1)) for ch in alphabet])
        self._glyph_w = base.shape[-1]
        # A blurred template is ~0 beyond 4σ of its glyph canvas: each cell is fitted on that window
        # only (exact up to the Gaussian's truncation, ~3× less work than the whole line).
        halo = int(np.ceil(4 * max(sig))) if max(sig) > 0 else 0
        self.windows: list[slice] = []
        self._t: list[list[np.ndarray]] = [[] for _ in sig]  # [sigma][cell] → (C, H·w) flattened window
        for i in range(self.n):
            x0 = i * grid.cell  # the glyph canvas already carries the left margin
            w = min(self._glyph_w, self.width - x0)
            if w <= grid.margin:
                raise FluoreconError(f"canvas width {width} px cannot hold {n_letters} letters",
                                     hint=f"use at least {grid.margin + grid.cell * n_letters} px")
            win = slice(max(x0 - halo, 0), min(x0 + self._glyph_w + halo, self.width))
            self.windows.append(win)
            placed = np.zeros((len(self.classes), grid.height, self.width), np.float32)
            placed[1:, :, x0:x0 + w] = base[:, :, :w]
            for k, s in enumerate(sig):
                # zero padding matches the forward model: light outside the canvas is lost
                b = ndimage.gaussian_filter(placed, (0, s, s), mode="constant") if s > 0 else placed
                self._t[k].append(np.ascontiguousarray(b[:, :, win]).reshape(len(self.classes), -1))
        self._energy = [[np.einsum("cp,cp->c", t, t) for t in per] for per in self._t]

    def template(self, sigma_index: int, cell: int, char: str) -> np.ndarray:
        """The blurred, placed template of ``char`` at ``cell`` on the full canvas."""
        out = np.zeros((self.grid.height, self.width), np.float32)
        win = self.windows[cell]
        out[:, win] = self._t[sigma_index][cell][self.classes.index(char)].reshape(self.grid.height, -1)
        return out

    def _check(self, images: np.ndarray) -> np.ndarray:
        a = np.asarray(images, np.float32)
        single = a.ndim == 2
        a = a[None] if single else a
        if a.ndim != 3 or a.shape[1:] != (self.grid.height, self.width):
            raise FluoreconError(f"expected images of shape ({self.grid.height}, {self.width}) (or a batch), "
                                 f"got {np.shape(images)}", hint="render/restore on the reader's canvas")
        if not np.isfinite(a).all():
            raise FluoreconError("image to read contains NaN/Inf", hint="clip or fix the restoration")
        return a

    def _fit(self, a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Coordinate descent for blur index k: labels (B, n) and residual sums of squares (B,)."""
        t, e = self._t[k], self._energy[k]
        b = len(a)

        def win(arr: np.ndarray, i: int) -> np.ndarray:
            return arr[:, :, self.windows[i]].reshape(b, -1)

        corr = [win(a, i) @ t[i].T for i in range(self.n)]  # ⟨x, t_ic⟩ per cell: (B, C)
        # first pass: each cell alone (neighbours ignored), then refine with the others explained
        lab = np.stack([np.argmin(e[i][None] - 2 * corr[i], axis=1) for i in range(self.n)], axis=1)
        model = np.zeros_like(a)
        h = self.grid.height
        for i in range(self.n):
            model[:, :, self.windows[i]] += t[i][lab[:, i]].reshape(b, h, -1)
        for _ in range(self.sweeps):
            changed = False
            for i in range(self.n):
                own = t[i][lab[:, i]]
                rest = win(model, i) - own
                # ‖x − rest − t‖² = const − 2⟨x − rest, t⟩ + ‖t‖² on the cell's window
                new = np.argmin(e[i][None] - 2 * (corr[i] - rest @ t[i].T), axis=1)
                if np.any(new != lab[:, i]):
                    changed = True
                    model[:, :, self.windows[i]] += (t[i][new] - own).reshape(b, h, -1)
                    lab[:, i] = new
            if not changed:
                break
        return lab, np.sum((a - model) ** 2, axis=(1, 2))

    def read_cells(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Cell-by-cell readings (blanks kept, length ``n_letters``) and the chosen blur per image."""
        a = self._check(images)
        best_lab = np.zeros((len(a), self.n), np.int64)
        best_rss = np.full(len(a), np.inf)
        best_sig = np.zeros(len(a))
        for k, s in enumerate(self.sigmas):
            lab, rss = self._fit(a, k)
            better = rss < best_rss
            best_lab[better], best_rss[better], best_sig[better] = lab[better], rss[better], s
        return ["".join(self.classes[j] for j in row) for row in best_lab], best_sig

    def read(self, images: np.ndarray) -> str | list[str]:
        """The text read (blank cells dropped); a list for a batch."""
        cells, _ = self.read_cells(images)
        out = [c.replace(BLANK, "") for c in cells]
        return out[0] if np.asarray(images).ndim == 2 else out


class TrigramPrior:
    """A letter-trigram prior over lines of text, estimated from a set of trigrams.

    ``P(l_i | l_{i-2}, l_{i-1}) ∝ count(l_{i-2} l_{i-1} l_i) + eps`` over the classes (blank + alphabet),
    with the first two letters drawn from the trigram set's first-letter and first-two-letter counts.
    Each trigram of the set counts once — the same information a network trained on the set's images
    sees. ``eps`` keeps unseen sequences possible; the smaller it is, the stronger the prior.

    Parameters
    ----------
    trigrams : iterable of str
        Three-letter strings (letters of ``alphabet``).
    alphabet : str
        The letters; a blank is added as class 0.
    eps : float
        Pseudo-count of every trigram (> 0).

    Examples
    --------
    >>> prior = TrigramPrior(["abc", "abd"], alphabet="abcd", eps=0.1)
    >>> p = np.exp(prior.log_next[1, 2])  # next after "ab": blank, a, b, c, d
    >>> [round(float(v), 3) for v in p]
    [0.04, 0.04, 0.04, 0.44, 0.44]
    """

    def __init__(self, trigrams, alphabet: str = ALPHABET, eps: float = 0.01):
        if not eps > 0:
            raise FluoreconError(f"eps must be > 0, got {eps}", hint="e.g. 0.01 (a strong prior) to 1 (a weak one)")
        self.classes = BLANK + alphabet
        c = len(self.classes)
        idx = {ch: i for i, ch in enumerate(self.classes)}
        n3 = np.zeros((c, c, c))
        for t in trigrams:
            if len(t) != 3 or any(ch not in idx or ch == BLANK for ch in t):
                raise FluoreconError(f"trigram {t!r} is not three letters of the alphabet",
                                     hint="give strings like 'the' whose letters are in the alphabet")
            n3[idx[t[0]], idx[t[1]], idx[t[2]]] += 1
        if not n3.any():
            raise FluoreconError("the trigram set is empty", hint="give at least one trigram")
        self.log_first = np.log((n3.sum(axis=(1, 2)) + eps) / (n3.sum() + c * eps))
        n2 = n3.sum(axis=2)
        self.log_second = np.log((n2 + eps) / (n2.sum(axis=1, keepdims=True) + c * eps))
        self.log_next = np.log((n3 + eps) / (n2[:, :, None] + c * eps))


class SequenceReader:
    """The exact maximum-a-posteriori reading of a text line under Gaussian noise, by dynamic programming.

    The line is modelled as in :class:`TemplateReader` — a sum of blurred single-letter templates (or
    blanks) on the grid — but the fit is exact rather than coordinate descent: the weighted squared
    residual ``½ Σ_p (x_p − Σ_i t_{i,l_i}(p))² / v_p`` splits into per-cell terms and overlaps of
    cells at most two apart (blurred templates of cells three apart do not meet, up to tails below
    1e-3 of the peak; checked at construction), so the best line is found by Viterbi over states of
    the last two letters. With ``prior`` (a
    :class:`TrigramPrior`) the log-prior of each letter given the two before it is added: the reading a
    Bayes-optimal reader with that language model makes. Without it, every line is equally likely: the
    exact maximum-likelihood reading.

    Parameters
    ----------
    grid : GlyphGrid
    n_letters, width : int
        Cells to read and canvas width.
    sigma : float
        Gaussian blur of the templates in px (the recording's PSF).
    prior : TrigramPrior, optional
        Must use the same alphabet.
    alphabet : str

    Examples
    --------
    >>> from fluorecon.physics.glyphs import GlyphGrid
    >>> g = GlyphGrid()
    >>> r = SequenceReader(g, 4, g.width_for(4), sigma=1.0)
    >>> r.read_cells(ndimage.gaussian_filter(g.render("Wave", width=g.width_for(4)), 1.0, mode="constant"))
    ['Wave']
    """

    def __init__(self, grid: GlyphGrid, n_letters: int, width: int, sigma: float,
                 prior: TrigramPrior | None = None, alphabet: str = ALPHABET):
        base = TemplateReader(grid, n_letters, width, sigmas=(sigma,), alphabet=alphabet, sweeps=0)
        if prior is not None and prior.classes != base.classes:
            raise FluoreconError("the prior's alphabet differs from the reader's",
                                 hint="build TrigramPrior(..., alphabet=...) with the reader's alphabet")
        self.n, self.classes, self.prior, self.windows = base.n, base.classes, prior, base.windows
        self._t = base._t[0]  # [cell] → (C, H·w) on the cell's window
        self._h = grid.height
        # the templates of cells ≥ 3 apart must not meet (up to tails below 1e-3 of the peak, whose
        # products are ≤ 1e-6 of a letter's energy): then the chain of letter triples is exact
        support = []
        for i, t in enumerate(self._t):
            cols = np.abs(t.reshape(len(self.classes), self._h, -1)).max(axis=(0, 1))
            on = np.flatnonzero(cols > 1e-3 * cols.max()) + self.windows[i].start
            support.append((on.min(), on.max() + 1))
        for i in range(self.n):
            for j in range(i + 3, self.n):
                if support[i][1] > support[j][0]:
                    raise FluoreconError(f"templates of cells {i} and {j} overlap (blur {sigma} px too wide "
                                         "for this grid)", hint="use a blur ≤ 2.5 px or a wider cell")

    def _overlap(self, x_w: np.ndarray, i: int, j: int) -> np.ndarray:
        """⟨t_i,a , t_j,b / v⟩ for all classes a, b: (C, C); zero when the windows do not meet."""
        wi, wj = self.windows[i], self.windows[j]
        lo, hi = max(wi.start, wj.start), min(wi.stop, wj.stop)
        c = len(self.classes)
        if hi <= lo:
            return np.zeros((c, c))
        ti = self._t[i].reshape(c, self._h, -1)[:, :, lo - wi.start:hi - wi.start].reshape(c, -1)
        tj = self._t[j].reshape(c, self._h, -1)[:, :, lo - wj.start:hi - wj.start].reshape(c, -1)
        return (ti * x_w[:, lo:hi].reshape(1, -1)) @ tj.T

    def read_cells(self, images: np.ndarray, variance: np.ndarray | float = 1.0, *,
                   return_residual: bool = False) -> list[str] | tuple[list[str], np.ndarray]:
        """MAP readings (blanks kept, length ``n_letters``) of one image or a batch.

        ``variance``: noise variance per pixel in the images' units (array of the image's shape, or one
        value per batch entry's pixels); for Poisson counts normalised as ``(x − b) / P`` it is ``λ / P²``.
        ``return_residual``: also return each reading's weighted residual ``Σ (x − model)² / v`` (without
        a prior: the smallest any line achieves), e.g. to choose the template blur of a restoration.
        """
        a = np.asarray(images, np.float64)
        single = a.ndim == 2
        a = a[None] if single else a
        v = np.broadcast_to(np.asarray(variance, np.float64), a.shape)
        if not np.isfinite(a).all() or not (np.isfinite(v).all() and (v > 0).all()):
            raise FluoreconError("images must be finite and variances finite and > 0",
                                 hint="pass the recording normalised to the templates' scale and λ/P²")
        res = [self._viterbi(img, 1.0 / var) for img, var in zip(a, v, strict=True)]
        cells = [r[0] for r in res]
        if not return_residual:
            return cells
        # score = −½ Σ w (x − model)² + ½ Σ w x² + log-prior: the residual follows from the best score
        rss = np.array([np.sum(img * img / var) - 2 * (score - lp) for img, var, (_, score, lp)
                        in zip(a, v, res, strict=True)])
        return cells, rss

    def _viterbi(self, x: np.ndarray, w: np.ndarray) -> str:
        n = self.n
        xw = x * w
        unary = []
        for i in range(n):
            win = self.windows[i]
            t = self._t[i]
            energy = np.einsum("cp,cp->c", t * w[:, win].reshape(1, -1), t)
            unary.append(t @ xw[:, win].reshape(-1) - 0.5 * energy)
        pr = self.prior
        # score[a, b] = best log-posterior of cells 0..i ending in (l_{i−1}, l_i) = (a, b)
        s0 = unary[0] + (pr.log_first if pr is not None else 0.0)
        if n == 1:
            k = int(np.argmax(s0))
            return self.classes[k], float(s0[k]), float(pr.log_first[k]) if pr is not None else 0.0
        score = s0[:, None] + unary[1][None, :] - self._overlap(w, 0, 1)
        if pr is not None:
            score = score + pr.log_second
        back = []
        for i in range(2, n):
            # add letter l_i = c given state (a, b) = (l_{i−2}, l_{i−1})
            cand = (score[:, :, None] + unary[i][None, None, :] - self._overlap(w, i - 1, i)[None, :, :]
                    - self._overlap(w, i - 2, i)[:, None, :])
            if pr is not None:
                cand = cand + pr.log_next
            arg = np.argmax(cand, axis=0)  # best l_{i−2} for each (l_{i−1}, l_i)
            score = np.take_along_axis(cand, arg[None], axis=0)[0]
            back.append(arg)
        b, cc = np.unravel_index(int(np.argmax(score)), score.shape)
        best = float(score[b, cc])
        seq = [int(cc), int(b)]
        for arg in reversed(back):
            seq.append(int(arg[seq[-1], seq[-2]]))
        seq = seq[::-1]
        lp = 0.0
        if pr is not None:
            lp = pr.log_first[seq[0]] + pr.log_second[seq[0], seq[1]] + sum(
                pr.log_next[seq[i - 2], seq[i - 1], seq[i]] for i in range(2, n))
        return "".join(self.classes[k] for k in seq), best, float(lp)


def nested_bootstrap_ci(values: np.ndarray, n: int = 2000, alpha: float = 0.05,
                        seed: int | np.random.Generator | None = 0) -> BootstrapCI:
    """Mean and percentile-bootstrap CI of ``values[seed, group, realisation]``, resampling at two levels.

    Seeds (independent trainings) are resampled with replacement, then realisations within each
    (seed, group); groups (e.g. test words) are fixed and averaged. For a *paired* comparison pass the
    difference of two arrays that share seeds' indices and realisations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = 0.3 + 0.1 * rng.standard_normal((3, 2, 200))
    >>> ci = nested_bootstrap_ci(v)
    >>> bool(ci.low < 0.3 < ci.high), round(ci.value, 2)
    (True, 0.3)
    """
    v = np.asarray(values, np.float64)
    if v.ndim != 3 or min(v.shape) < 1:
        raise FluoreconError(f"nested bootstrap needs values of shape (seeds, groups, realisations), got {v.shape}",
                             hint="stack per-seed arrays of shape (groups, realisations)")
    rng = np.random.default_rng(seed)
    s, g, r = v.shape
    si = rng.integers(0, s, (n, s))
    ri = rng.integers(0, r, (n, s, r))
    # v[si[b, j], :, ri[b, j, :]] averaged over groups and realisations, then over the resampled seeds
    picked = v[si[:, :, None], :, ri]  # (n, s, r, g)
    stats = picked.mean(axis=(1, 2, 3))
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(v.mean()), float(lo), float(hi))
