"""Text phantoms for the Box 5 discovery experiment: rendered glyphs, training sets and the degradation.

Box 5 of Belthangady & Royer (2019) asks whether a restorer can *discover* a structure it never saw
(the word "Witenagemot") and shows that it hallucinates what it was trained on when it cannot. This
module holds the object side of that experiment (f's input): glyphs on a fixed monospace grid
(:class:`GlyphGrid`), Chinese characters from a CJK font (or procedurally generated stroke characters
when none is installed), the four training sets of the review, and the forward model
(:func:`text_forward`: Gaussian blur + Poisson photon noise on a background).

The reader that scores restorations lives in :mod:`fluorecon.evaluate.reading`.

Examples
--------
>>> g = GlyphGrid()
>>> img = g.render("Wit")
>>> img.shape, float(img.max()) == 1.0
((32, 48), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward

__all__ = [
    "ALPHABET", "CJK_FONTS", "LATIN_FONTS", "GlyphGrid", "cjk_characters", "cjk_font", "latin_trigrams",
    "render_hanzi", "stroke_characters", "text_forward", "training_set",
]

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Debian fonts-dejavu-core / fonts-wqy-microhei paths (checked in this order).
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",)
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/arphic/uming.ttc")


@lru_cache(maxsize=8)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _first_existing(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).exists()), None)


def cjk_font() -> str | None:
    """Path of an installed CJK font, or None (then :func:`stroke_characters` stands in)."""
    return _first_existing(CJK_FONTS)


@dataclass(frozen=True)
class GlyphGrid:
    """Glyphs on a fixed monospace grid: one letter per ``cell`` pixels, white (1.0) on black.

    Parameters
    ----------
    font_size : int
        Font size in pixels (DejaVu Sans Mono: advance 9.6 px at 16).
    cell : int
        Cell width in pixels; letter ``i`` is drawn at ``margin + i·cell``.
    height, top, margin : int
        Canvas height, glyph top offset and left margin in pixels.
    font : str, optional
        A monospace TrueType font (default: the first of :data:`LATIN_FONTS` that exists).
    """

    font_size: int = 16
    cell: int = 10
    height: int = 32
    top: int = 6
    margin: int = 9
    font: str | None = None

    def _font(self) -> ImageFont.FreeTypeFont:
        path = self.font or _first_existing(LATIN_FONTS)
        if path is None or not Path(path).exists():
            raise FluoreconError(f"no Latin monospace font found (looked for {self.font or LATIN_FONTS})",
                                 hint="install Debian fonts-dejavu-core or pass GlyphGrid(font=...)")
        return _truetype(path, self.font_size)

    def width_for(self, n: int, multiple: int = 8) -> int:
        """Canvas width holding ``n`` letters with margins, rounded up to ``multiple`` (U-Net pooling)."""
        w = 2 * self.margin + self.cell * n
        return int(-(-w // multiple) * multiple)

    def render(self, text: str, width: int | None = None) -> np.ndarray:
        """Render ``text`` (spaces allowed) as a float32 image in [0, 1] of shape ``(height, width)``."""
        w = width or self.width_for(len(text))
        if w < self.margin + self.cell * len(text):
            raise FluoreconError(f"canvas width {w} px is too small for {len(text)} letters",
                                 hint=f"use at least {self.margin + self.cell * len(text)} px")
        img = Image.new("L", (w, self.height), 0)
        d = ImageDraw.Draw(img)
        font = self._font()
        for i, ch in enumerate(text):
            if ch != " ":
                d.text((self.margin + i * self.cell, self.top), ch, fill=255, font=font)
        return np.asarray(img, np.float32) / 255.0

    def letter_at(self, ch: str, i: int, width: int) -> np.ndarray:
        """One letter alone at cell ``i`` of a canvas of ``width`` pixels (the reader's template)."""
        return self.render(" " * i + ch, width=width)


def text_forward(sigma: float = 2.5, peak: float = 12.0, background: float = 2.0) -> Forward:
    """The degradation of the experiment as a :class:`~fluorecon.physics.forward.Forward`.

    ``x ~ Poisson(peak · (G_σ * y) + background)`` with zero padding outside the canvas (photons; no
    read noise, gain 1, no offset). ``fluorecon verify`` re-applies exactly this model.

    Examples
    --------
    >>> fw = text_forward()
    >>> x, _ = fw.simulate(GlyphGrid().render("abc"), seed=0)
    >>> x.shape, bool(x.min() >= 0)
    ((32, 48), True)
    """
    r = int(np.ceil(4 * sigma))
    return Forward(psf={"kind": "gaussian", "shape": [2 * r + 1, 2 * r + 1], "sigma": float(sigma)},
                   camera=Camera(photons=float(peak), background=float(background), read_noise=0.0, gain=1.0,
                                 offset=0.0),
                   padding="constant")


# ----------------------------------------------------------------------------------------- data sets
def latin_trigrams(n_words: int = 5000, drop: str = "", exclude: tuple[str, ...] = ()) -> list[str]:
    """3-letter substrings of the ``n_words`` most frequent English words (wordfreq).

    Also the capitalised word-initial trigram of each word. Words containing any of ``exclude``
    (e.g. the unseen test words) are left out, as is every trigram with a letter in ``drop``.

    Examples
    --------
    >>> tri = latin_trigrams(200, drop="ae")
    >>> len(tri) > 50 and not any(set(t) & set("aeAE") for t in tri)
    True
    """
    from wordfreq import top_n_list

    excl = tuple(e.lower() for e in exclude)
    words = [w for w in top_n_list("en", n_words) if w.isascii() and w.isalpha()]
    words = [w for w in words if not any(e in w.lower() for e in excl)]
    tri: set[str] = set()
    for w in words:
        tri.update(w[i:i + 3] for i in range(len(w) - 2))
        if len(w) >= 3:
            tri.add(w[:3].capitalize())
    bad = set(drop.lower() + drop.upper())
    return sorted(t for t in tri if not (set(t) & bad))


def cjk_characters() -> list[str]:
    """The 6,763 hanzi of GB2312 levels 1 and 2, enumerated with Python's own codec.

    Examples
    --------
    >>> han = cjk_characters()
    >>> len(han), han[0]
    (6763, '啊')
    """
    out = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return out


def render_hanzi(chars: str, width: int, grid: GlyphGrid = GlyphGrid(), font: str | None = None) -> np.ndarray:
    """Chinese characters (font size ``grid.font_size``, one per ``font_size`` px), centred on a canvas."""
    path = font or cjk_font()
    if path is None:
        raise FluoreconError("no CJK font installed", hint="install fonts-wqy-microhei or use stroke_characters()")
    f = _truetype(path, grid.font_size)
    img = Image.new("L", (width, grid.height), 0)
    d = ImageDraw.Draw(img)
    x0 = (width - grid.font_size * len(chars)) // 2
    for i, ch in enumerate(chars):
        d.text((x0 + grid.font_size * i, grid.top), ch, fill=255, font=f)
    return np.asarray(img, np.float32) / 255.0


def stroke_characters(n: int, width: int, grid: GlyphGrid = GlyphGrid(), seed: int = 0) -> np.ndarray:
    """Procedural Chinese-like characters (used when no CJK font exists): 2 per image, 4–9 strokes each.

    Strokes are horizontal, vertical and diagonal segments 1–2 px thick, snapped to a 16-px box.

    Examples
    --------
    >>> s = stroke_characters(3, 48, seed=0)
    >>> s.shape, bool(s.max() == 1.0)
    ((3, 32, 48), True)
    """
    rng = np.random.default_rng(seed)
    box = grid.font_size
    out = np.zeros((n, grid.height, width), np.float32)
    x0 = (width - 2 * box) // 2
    for k in range(n):
        img = Image.new("L", (width, grid.height), 0)
        d = ImageDraw.Draw(img)
        for c in range(2):
            ox, oy = x0 + c * box + 1, grid.top + 2
            for _ in range(int(rng.integers(4, 10))):
                kind = rng.integers(0, 4)
                a, b = rng.integers(0, box - 2, 2)
                ln = int(rng.integers(5, box - 2))
                if kind == 0:
                    seg = (a, b, min(a + ln, box - 3), b)
                elif kind == 1:
                    seg = (a, b, a, min(b + ln, box - 3))
                elif kind == 2:
                    seg = (a, b, min(a + ln // 2, box - 3), min(b + ln // 2, box - 3))
                else:
                    seg = (a, b, max(a - ln // 2, 0), min(b + ln // 2, box - 3))
                d.line((ox + seg[0], oy + seg[1], ox + seg[2], oy + seg[3]), fill=255,
                       width=int(rng.integers(1, 3)))
        out[k] = np.asarray(img, np.float32) / 255.0
    return out


def _subset(items: list, n: int | None, rng: np.random.Generator) -> list:
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]


CONDITIONS = ("latin", "no_ae", "chinese", "mix")


def training_set(condition: str, *, n_words: int = 5000, max_items: int | None = None,
                 exclude: tuple[str, ...] = (), grid: GlyphGrid = GlyphGrid(), context: int = 3,
                 seed: int | np.random.Generator = 0) -> tuple[np.ndarray, dict]:
    """Clean training images ``(N, height, 48)`` for one Box 5 condition, and what they hold.

    ``"latin"``: English trigrams; ``"no_ae"``: trigrams without a/e; ``"chinese"``: two hanzi per
    image (every GB2312 character once as the first of a pair), or procedural strokes without a CJK
    font; ``"mix"``: half latin, half chinese.

    ``context``: each item is shown inside a line of ``context`` items of the same set (the others
    drawn at random), and the 48-px window is cut around it with a jitter of up to one cell. Without it
    (``context=1``) every trigram sits alone between black margins, and a network whose receptive field
    is wider than a trigram never sees a letter with letters two cells away on both sides — which is
    every inner letter of an unseen long word (measured: inner letters of "Witenagemot" restored as
    mush, CER 0.65 against 0.39 for the generic reader; docs/box5.md). Procedural stroke characters
    (no CJK font) are always alone.

    Examples
    --------
    >>> x, info = training_set("no_ae", n_words=200, max_items=10, seed=0)
    >>> x.shape, info["kind"]
    ((10, 32, 48), 'trigrams without a, e')
    """
    if condition not in CONDITIONS:
        raise FluoreconError(f"unknown Box 5 condition {condition!r}", hint=f"choose one of {', '.join(CONDITIONS)}")
    rng = np.random.default_rng(seed)
    width = grid.width_for(3)

    def hanzi(n: int | None) -> tuple[list[np.ndarray], str]:
        font = cjk_font()
        if font is None:
            m = 6763 if n is None else n
            return list(stroke_characters(m, width, grid, seed=int(rng.integers(2**31)))), "procedural strokes"
        han = cjk_characters()
        pairs = [han[i] + han[(i * 7 + 3) % len(han)] for i in range(len(han))]
        chosen = _subset(pairs, n, rng)
        if context == 1:
            return [render_hanzi(p, width, grid, font) for p in chosen], f"GB2312 hanzi ({Path(font).name})"

        def render(seq: list[str], pos: int) -> tuple[np.ndarray, float]:
            fs = grid.font_size
            w = fs * 2 * len(seq) + 2 * grid.margin
            x0 = (w - fs * 2 * len(seq)) // 2
            return render_hanzi("".join(seq), w, grid, font), x0 + fs * (2 * pos + 1)
        return ([in_line(p, pairs, grid.font_size, render) for p in chosen],
                f"GB2312 hanzi ({Path(font).name})")

    if context < 1:
        raise FluoreconError(f"context must be ≥ 1 item per line, got {context}", hint="use 1 (items alone) or more")

    def in_line(item: str, pool: list[str], unit: int, render) -> np.ndarray:
        others = [pool[j] for j in rng.integers(0, len(pool), context - 1)]
        pos = int(rng.integers(context))
        full, x_item = render([*others[:pos], item, *others[pos:]], pos)
        x0 = int(round(x_item - width / 2 + rng.integers(-unit, unit + 1)))
        x0 = int(np.clip(x0, 0, full.shape[1] - width))
        return full[:, x0:x0 + width]

    def latin_items(tri_all: list[str], chosen: list[str]) -> list[np.ndarray]:
        if context == 1:
            return [grid.render(t) for t in chosen]

        def render(seq: list[str], pos: int) -> tuple[np.ndarray, float]:
            return grid.render("".join(seq)), grid.margin + grid.cell * (3 * pos + 1.5)
        return [in_line(t, tri_all, grid.cell, render) for t in chosen]

    if condition in ("latin", "no_ae"):
        tri = latin_trigrams(n_words, drop="ae" if condition == "no_ae" else "", exclude=exclude)
        items = latin_items(tri, _subset(tri, max_items, rng))
        kind = "trigrams" + (" without a, e" if condition == "no_ae" else "")
    elif condition == "chinese":
        items, kind = hanzi(max_items)
    else:
        tri = latin_trigrams(n_words, exclude=exclude)
        n = 2 * len(tri) if max_items is None else max_items
        lat = latin_items(tri, _subset(tri, n // 2, rng))
        cjk, ck = hanzi(n - n // 2)
        items, kind = lat + cjk, f"50/50 trigrams + {ck}"
    return np.stack(items).astype(np.float32), {"kind": kind, "n": len(items), "context": context}
