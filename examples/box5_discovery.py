"""Box 5 of Belthangady & Royer (2019), reproduced: can a learned restorer *discover* what it never saw?

A U-Net with a Laplace head restores strongly degraded (blur + Poisson noise) images of text. It is
trained on four data sets and then asked to restore the word "Witenagemot", which none contains:

  (a) latin   — all three-letter substrings of the most frequent English words (wordfreq), without
                "Witenagemot" and its variants;
  (b) no_ae   — the same, without any substring containing the letters a or e;
  (c) chinese — about 6,700 Chinese characters (GB2312 levels 1–2, enumerated with Python's codec);
  (d) mix     — 50 % (a) and 50 % (c).

For every condition the script reports the PSNR of the restored word, a glyph error rate (each
restored letter is classified by the nearest clean template of the rendered alphabet), and what the
trust layer says: the forward-model consistency map (re-blur the restoration, compare with the
recording under the Poisson noise model, excess over noise) and the recalibrated uncertainty map
(Laplace head, one scale factor fitted on held-out in-distribution images).

One fixed degradation for all conditions (the DEGRADATION dict below): Gaussian blur with σ = 1.5 px
(FWHM 3.5 px; letters are 10 px wide, strokes ≈ 1.5 px), a peak signal of 30 photons on a background of
2 photons, Poisson noise.

Usage::

    python examples/box5_discovery.py                 # full run (≈ 30–40 CPU-minutes, 1 thread)
    python examples/box5_discovery.py --quick         # seconds: tiny sets and network (used by the test)
    python examples/box5_discovery.py --conditions latin,no_ae   # a subset (e.g. two processes in parallel)
    python examples/box5_discovery.py --assemble      # only rebuild figure + JSON from saved conditions

Writes ``DIR/box5_<condition>.npz|json`` per condition, then ``DIR/box5_figure.png`` and
``DIR/box5_results.json`` from every condition present in DIR (default DIR: ``examples/box5``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FONT_LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"  # Debian fonts-dejavu-core
FONT_CJK = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Debian fonts-wqy-microhei
FONT_SIZE = 16
CELL = 10  # monospace cell width in px (advance 9.64 px, rounded up so letters sit on a fixed grid)
HEIGHT = 32  # canvas height; glyph baseline at TOP + ascent
TOP = 6
MARGIN = 9
TARGET_WORD = "Witenagemot"
EXCLUDED = ("witenagemot", "witenagemote", "witan")  # the word and its variants
DEGRADATION = {"blur_sigma_px": 1.5, "peak_photons": 30.0, "background_photons": 2.0, "noise": "poisson"}
CONDITIONS = ("latin", "no_ae", "chinese", "mix")
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ------------------------------------------------------------------------------------------ rendering
def _font(path: str):
    from PIL import ImageFont

    if not Path(path).exists():
        raise SystemExit(f"font {path} not found: install Debian fonts-dejavu-core and fonts-wqy-microhei")
    return ImageFont.truetype(path, FONT_SIZE)


def render_latin(text: str, width: int | None = None) -> np.ndarray:
    """Text on a fixed monospace grid (one glyph per CELL), white on black, float in [0, 1]."""
    from PIL import Image, ImageDraw

    font = _font(FONT_LATIN)
    w = width or 2 * MARGIN + CELL * len(text)
    img = Image.new("L", (w, HEIGHT), 0)
    d = ImageDraw.Draw(img)
    for i, ch in enumerate(text):
        d.text((MARGIN + i * CELL, TOP), ch, fill=255, font=font)
    return np.asarray(img, np.float32) / 255.0


def render_cjk(text: str, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(FONT_CJK)
    img = Image.new("L", (width, HEIGHT), 0)
    d = ImageDraw.Draw(img)
    x0 = (width - 16 * len(text)) // 2
    for i, ch in enumerate(text):
        d.text((x0 + 16 * i, TOP), ch, fill=255, font=font)
    return np.asarray(img, np.float32) / 255.0


def latin_trigrams(n_words: int, drop: str = "") -> list[str]:
    """All 3-letter substrings of the ``n_words`` most frequent English words (and their capitalised
    word-initial forms), without the target word and its variants, and without letters in ``drop``."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", n_words) if w.isascii() and w.isalpha()]
    words = [w for w in words if not any(x in w.lower() for x in EXCLUDED)]
    tri: set[str] = set()
    for w in words:
        for i in range(len(w) - 2):
            tri.add(w[i:i + 3])
        if len(w) >= 3:
            tri.add(w[:3].capitalize())
    bad = set(drop.lower() + drop.upper())
    return sorted(t for t in tri if not (set(t) & bad))


def gb2312_characters() -> list[str]:
    """The 6,763 hanzi of GB2312 levels 1 and 2 (rows 16–87), via Python's own codec."""
    out = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                out.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return out


# ---------------------------------------------------------------------------------------- degradation
class TextForward:
    """The forward model f of this experiment: Gaussian blur, photon scaling, background, Poisson noise.

    ``expected(y)`` = peak · blur(y) + background (photons), ``variance(m) = m`` (Poisson). This is what
    the trust layer's consistency check re-applies to each restoration.
    """

    camera = "poisson"

    def __init__(self, sigma=DEGRADATION["blur_sigma_px"], peak=DEGRADATION["peak_photons"],
                 background=DEGRADATION["background_photons"]):
        from fluorecon.physics.psf import gaussian_psf

        self.sigma, self.peak, self.background = sigma, peak, background
        r = int(np.ceil(4 * sigma))
        self.psf = gaussian_psf((2 * r + 1, 2 * r + 1), sigma)

    def blur(self, y: np.ndarray) -> np.ndarray:
        """Blur the last two axes (leading axes are a batch), zero padding outside the canvas."""
        from fluorecon.physics.sampling import fft_convolve

        return np.asarray(fft_convolve(np.asarray(y, np.float32), self.psf, padding="constant"), np.float32)

    def expected(self, y: np.ndarray) -> np.ndarray:
        return self.peak * self.blur(y) + self.background

    def variance(self, m: np.ndarray) -> np.ndarray:
        return np.asarray(m, np.float64)

    def simulate(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(np.maximum(self.expected(y), 0)).astype(np.float32)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Photons → network input (≈ blurred intensity in [0, 1])."""
        return (x - self.background) / self.peak


# ---------------------------------------------------------------------------------------------- data
def build_set(condition: str, n_words: int, max_items: int | None, rng: np.random.Generator) -> np.ndarray:
    """Clean training images (N, 32, 48) for one condition."""
    width = 2 * MARGIN + 3 * CELL
    if condition in ("latin", "no_ae", "mix"):
        tri = latin_trigrams(n_words, drop="ae" if condition == "no_ae" else "")
    if condition in ("chinese", "mix"):
        han = gb2312_characters()
    if condition == "latin" or condition == "no_ae":
        items = [render_latin(t) for t in _subset(tri, max_items, rng)]
    elif condition == "chinese":
        pairs = [han[i] + han[(i * 7 + 3) % len(han)] for i in range(len(han))]  # every hanzi, two per image
        items = [render_cjk(p, width) for p in _subset(pairs, max_items, rng)]
    elif condition == "mix":
        n = min(len(tri), len(han)) if max_items is None else max_items
        lat = [render_latin(t) for t in _subset(tri, n // 2, rng)]
        pairs = [han[i] + han[(i * 7 + 3) % len(han)] for i in range(len(han))]
        cjk = [render_cjk(p, width) for p in _subset(pairs, n - n // 2, rng)]
        items = lat + cjk
    else:
        raise ValueError(f"unknown condition {condition!r}")
    return np.stack(items).astype(np.float32)


def _subset(items: list, n: int | None, rng: np.random.Generator) -> list:
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]


# -------------------------------------------------------------------------------------------- training
def train_restorer(clean: np.ndarray, fw: TextForward, *, steps: int, batch: int, width: int, depth: int,
                   seed: int, log_every: int = 100):
    """Train a UNet with a Laplace head on (degraded, clean) pairs; noise redrawn every batch.

    Loss: squared error of the mean + Laplace negative log-likelihood of the scale (mean detached there)."""
    import torch

    from fluorecon.learn.nets import UNet
    from fluorecon.utils import seed_everything

    rng = seed_everything(seed)
    net = UNet(dim=2, depth=depth, width=width, head="laplace", residual=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=max(steps, 1), pct_start=0.1)
    blurred = fw.blur(clean)  # batched; the blur is deterministic, only the noise is redrawn
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, len(clean), batch)
        lam = np.maximum(fw.peak * blurred[idx] + fw.background, 0)
        x = fw.normalise(rng.poisson(lam).astype(np.float32))
        xt = torch.from_numpy(x[:, None])
        yt = torch.from_numpy(clean[idx][:, None])
        opt.zero_grad()
        mean, b = net.forward_dist(xt)
        # Squared error for the mean (on sparse text, L1 and the NLL both learn the strokes far more
        # slowly) + Laplace NLL for the scale with the mean detached (the mean is not slowed by it).
        loss = torch.mean((yt - mean) ** 2) + torch.mean(torch.log(2 * b) + torch.abs(yt - mean.detach()) / b)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"    step {step + 1}/{steps}  loss {loss.item():+.3f}  ({time.time() - t0:.0f} s)", flush=True)
    return net.eval()


def restore(net, x_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (Laplace sd = √2 b) of one normalised image, via the engine's predict."""
    from fluorecon.learn.predict import predict

    mean, sd = predict(net, x_norm.astype(np.float32), "YX", tile=None, device="cpu", return_scale=True)
    return np.asarray(mean, np.float64), np.asarray(sd, np.float64)


# ----------------------------------------------------------------------------------------------- scoring
def glyph_templates() -> dict[str, np.ndarray]:
    return {ch: render_latin(ch)[:, MARGIN:MARGIN + CELL] for ch in ALPHABET}


def read_letters(img: np.ndarray, n: int, templates: dict[str, np.ndarray]) -> str:
    """Nearest-template classification of each letter cell (sum of squared differences)."""
    out = []
    for i in range(n):
        cell = img[:, MARGIN + i * CELL: MARGIN + (i + 1) * CELL]
        out.append(min(templates, key=lambda ch: float(np.sum((cell - templates[ch]) ** 2))))
    return "".join(out)


def cell_means(m: np.ndarray, n: int) -> np.ndarray:
    return np.array([float(np.mean(m[:, MARGIN + i * CELL: MARGIN + (i + 1) * CELL])) for i in range(n)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


# ------------------------------------------------------------------------------------------------ main
def run(out: Path, *, quick: bool = False, steps: int | None = None, seed: int = 0, threads: int = 1,
        conditions: tuple[str, ...] = CONDITIONS) -> dict:
    import torch

    from fluorecon.trust.consistency import consistency
    from fluorecon.trust.uncertainty import calibration_report, fit_scale_factor

    torch.set_num_threads(threads)
    cfg = (dict(n_words=300, max_items=48, steps=steps or 8, batch=8, width=8, depth=2, n_val=8) if quick else
           dict(n_words=5000, max_items=None, steps=steps or 900, batch=16, width=16, depth=2, n_val=64))
    fw = TextForward()
    truth = render_latin(TARGET_WORD)
    templates = glyph_templates()
    assert read_letters(truth, len(TARGET_WORD), templates) == TARGET_WORD  # the scorer reads clean text
    x_word = fw.simulate(truth, np.random.default_rng(seed + 1))  # ONE recording, shared by all conditions
    degraded = fw.normalise(x_word)
    results: dict = {"config": {**cfg, "seed": seed, "degradation": DEGRADATION, "font_latin": FONT_LATIN,
                                "font_cjk": FONT_CJK, "font_size": FONT_SIZE, "cell_px": CELL, "quick": quick},
                     "degraded": {"psnr": psnr(np.clip(degraded, 0, 1), truth),
                                  "read": read_letters(np.clip(degraded, 0, 1), len(TARGET_WORD), templates)},
                     "conditions": {}}
    _save_condition(out, "_common", {k: v for k, v in results.items() if k != "conditions"}, truth, degraded,
                    x_word)
    for cond in conditions:
        t0 = time.time()
        rng = np.random.default_rng([seed, CONDITIONS.index(cond)])  # independent of which subset runs
        clean = build_set(cond, cfg["n_words"], cfg["max_items"], rng)
        perm = rng.permutation(len(clean))
        val, tr = clean[perm[: cfg["n_val"]]], clean[perm[cfg["n_val"]:]]
        print(f"[{cond}] {len(tr)} training images, {len(val)} held out", flush=True)
        net = train_restorer(tr, fw, steps=cfg["steps"], batch=cfg["batch"], width=cfg["width"],
                             depth=cfg["depth"], seed=seed)
        # one-factor recalibration on held-out in-distribution images (never on the target word)
        vm, vs, vt = [], [], []
        vrng = np.random.default_rng(seed + 2)
        for v in val:
            m, s = restore(net, fw.normalise(fw.simulate(v, vrng)))
            vm.append(m)
            vs.append(s)
            vt.append(v)
        factor = fit_scale_factor(np.stack(vt), np.stack(vm), np.stack(vs))
        val_report = calibration_report(np.stack(vt), np.stack(vm), np.stack(vs), factor=factor)
        mean, sd = restore(net, degraded)
        sd = sd * factor
        restored = np.clip(mean, 0, 1)
        read = read_letters(restored, len(TARGET_WORD), templates)
        wrong = [i for i, (a, b) in enumerate(zip(read, TARGET_WORD, strict=True)) if a != b]
        cons = consistency(x_word, mean, fw, sigma=2.0)
        cons_cells = cell_means(np.maximum(cons.coherent_excess_map, 0), len(TARGET_WORD))
        err_cells = cell_means(np.abs(mean - truth), len(TARGET_WORD))
        sd_cells = cell_means(sd, len(TARGET_WORD))
        word_cov = calibration_report(truth, mean, sd)["coverage"]
        ok = [i for i in range(len(TARGET_WORD)) if i not in wrong]
        res = {
            "n_train": len(tr), "train_seconds": round(time.time() - t0, 1),
            "psnr": psnr(restored, truth), "read": read, "glyph_error_rate": len(wrong) / len(TARGET_WORD),
            "wrong_letters": [TARGET_WORD[i] for i in wrong],
            "consistency_excess": cons.excess_score, "consistency_coherent_excess": cons.coherent_excess_score,
            "consistency_z": cons.z_score,
            "uncertainty_factor": factor, "val_ece_after": val_report["ece"],
            "word_coverage_90": word_cov[0.9], "word_mean_sd": float(sd.mean()),
            "word_mean_abs_error": float(np.abs(mean - truth).mean()),
            "per_letter": {"consistency": cons_cells.round(3).tolist(), "sd": sd_cells.round(4).tolist(),
                           "abs_error": err_cells.round(4).tolist()},
            "wrong_vs_right": {
                "consistency": [float(cons_cells[wrong].mean()) if wrong else None,
                                float(cons_cells[ok].mean()) if ok else None],
                "sd": [float(sd_cells[wrong].mean()) if wrong else None, float(sd_cells[ok].mean()) if ok else None],
            },
        }
        results["conditions"][cond] = res
        print(f"[{cond}] read {read!r}  PSNR {res['psnr']:.2f} dB  glyph errors {len(wrong)}/{len(TARGET_WORD)}  "
              f"consistency excess {cons.excess_score:+.3f}  word 90% coverage {word_cov[0.9]:.2f}  "
              f"({res['train_seconds']:.0f} s)", flush=True)
        _save_condition(out, cond, res, restored, cons.coherent_excess_map, sd)
    return assemble(out)


def _save_condition(out: Path, name: str, res: dict, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    from fluorecon._atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"box5_{name}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, a=a.astype(np.float32), b=b.astype(np.float32), c=c.astype(np.float32))
    with atomic_path(out / f"box5_{name}.json") as tmp:
        tmp.write_text(json.dumps(res, indent=2))


def assemble(out: Path) -> dict:
    """Build ``box5_figure.png`` and ``box5_results.json`` from every condition saved in ``out``."""
    from fluorecon._atomic import atomic_path

    common = json.loads((out / "box5__common.json").read_text())
    with np.load(out / "box5__common.npz") as z:
        truth, degraded = z["a"], z["b"]
    results = {**common, "conditions": {}}
    rows = []
    for cond in CONDITIONS:
        f = out / f"box5_{cond}.json"
        if not f.exists():
            continue
        results["conditions"][cond] = json.loads(f.read_text())
        with np.load(out / f"box5_{cond}.npz") as z:
            rows.append((cond, z["a"], z["b"], z["c"]))
    _figure(out / "box5_figure.png", truth, degraded, rows, results)
    with atomic_path(out / "box5_results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    return results


def _figure(path: Path, truth, degraded, rows, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fluorecon._atomic import atomic_path

    labels = {"latin": "(a) English trigrams", "no_ae": "(b) without a, e", "chinese": "(c) Chinese",
              "mix": "(d) 50/50 mix"}
    cmax = max(5.0, max(float(np.percentile(r[2], 99.5)) for r in rows))
    smax = max(float(np.percentile(r[3], 99.5)) for r in rows)
    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 1.35 * len(rows) + 0.6), squeeze=False)
    for i, (cond, restored, cmap, sd) in enumerate(rows):
        r = results["conditions"][cond]
        panels = [(truth, "truth", "gray", 0, 1), (np.clip(degraded, 0, 1), "degraded", "gray", 0, 1),
                  (restored, f"restored: '{r['read']}'  {r['psnr']:.1f} dB", "gray", 0, 1),
                  (cmap, f"consistency (excess, z²-1)  {r['consistency_excess']:+.2f}", "magma", 0, cmax),
                  (sd, f"uncertainty (sd)  mean {r['word_mean_sd']:.3f}", "viridis", 0, smax)]
        for j, (im, title, cm, lo, hi) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(im, cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(labels.get(cond, cond), fontsize=9)
    fig.suptitle("Box 5 reproduced: restoring the unseen word 'Witenagemot' "
                 f"(blur σ={DEGRADATION['blur_sigma_px']} px, {DEGRADATION['peak_photons']:.0f} photons peak, Poisson)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny data and network: seconds (used by the test)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "box5", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="training steps per condition")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of " + ",".join(CONDITIONS))
    p.add_argument("--assemble", action="store_true", help="only rebuild the figure and JSON from saved conditions")
    a = p.parse_args(argv)
    if a.assemble:
        assemble(a.out)
        return
    conds = tuple(c.strip() for c in a.conditions.split(",") if c.strip())
    bad = [c for c in conds if c not in CONDITIONS]
    if bad:
        p.error(f"unknown condition(s) {bad}; choose from {CONDITIONS}")
    run(a.out, quick=a.quick, steps=a.steps, seed=a.seed, threads=a.threads, conditions=conds)


if __name__ == "__main__":
    main()
