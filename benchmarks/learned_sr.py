"""Learned super-resolution benchmark: sparse → dense PALM and low → high NA, L1 against L1 + GAN.

Run: ``.venv/bin/python benchmarks/learned_sr.py [--part palm|xmod|all] [--steps 300] [--quick]``.
Prints tables, writes ``benchmarks/learned_sr.json`` (one key per part; an existing file is updated).

Data (all simulated, truth known; training and held-out fields use disjoint seeds):

- PALM: microtubule-like filaments (:func:`fluorecon.physics.smlm.structure`, 100 fluorophores/µm²),
  default blinking (on 2, off 50 frames, 5 % bleaching, 2000 photons), N = 500 frames, K = 10 %
  (50 frames), 25 nm render pixels, 100 nm camera pixels, widefield image as a second input.
  Training: 12 fields of 2.4 µm; held out: 4 fields of 3.2 µm (40.96 µm² in all).
- Cross-modality: physics phantoms ("mixed") seen at NA 0.8 (noisy, 100 photons at intensity 1) and
  at NA 1.4 (noiseless target), λ 0.52 µm, 50 nm pixels. Training: 16 fields 96²; held out: 4 fields 128².

Metrics. MS-SSIM (3 scales, 7² window, ours = scikit-image's SSIM at one scale) and PSNR against the
target scaled so that its 0.1–99.9th percentiles span [0, 1], after a least-squares gain/offset of
each image (units differ), both clipped to [0, 1] for MS-SSIM. PALM: target = the N-frame rendering
blurred 1 render pixel (the training target, :func:`fluorecon.tasks.learned_sr.palm_target`), also
reported against the fluorophore density (blurred 1 px).
Cross-modality: FRC (1/7) resolution of each image against the high-NA truth (smaller = closer).
Hallucination: connected components of the thresholded prediction (smoothed 1 px, > 30 % of its
99.5th percentile, ≥ 4 px) that do not touch the truth's support (truth blurred 2 px, > 5 % of its
99.5th percentile, dilated 2 px) — "invented structures" per 100 µm²; verify's detection rate = the
fraction of invented components that overlap a region ``fluorecon.trust.verify.verify`` reports as
``added`` (PALM: against the widefield image through the binned-and-blurred forward model; NA: against
the low-NA recording through the consistency blur; the simulated camera numbers are given), and the
number of images with at least one ``added`` region (on the control rows — the truth itself — this is
verify's false-alarm count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from fluorecon.evaluate.metrics import affine_fit, frc, psnr
from fluorecon.learn.gan import GANConfig, array_sampler, ms_ssim, predict_gan, train_gan
from fluorecon.physics.palm_pairs import (
    bin_to_camera,
    consistency_forward,
    cross_modality_pair,
    modality_sigmas,
    palm_pair,
    widefield_forward,
)
from fluorecon.tasks.deconvolve import deconvolve
from fluorecon.tasks.learned_sr import palm_inputs, palm_target
from fluorecon.trust.verify import verify

OUT = Path(__file__).with_suffix(".json")


def _fit(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    a, b = affine_fit(pred, target)
    return (a * pred + b).astype(np.float32)


def quality(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MS-SSIM and PSNR after a least-squares gain/offset; the target's 0.1–99.9th percentiles span [0, 1]."""
    lo, hi = np.percentile(target, [0.1, 99.9])
    t = ((target - lo) / max(hi - lo, 1e-9)).astype(np.float32)
    p = _fit(pred, t)
    tt = torch.from_numpy(np.clip(t, 0, 1))[None, None].float()
    q = torch.from_numpy(np.clip(p, 0, 1))[None, None].float()
    return {"ms_ssim": float(ms_ssim(q, tt, 1.0, scales=3)[0]), "psnr": psnr(p, t, data_range=1.0)}


def invented(pred: np.ndarray, truth: np.ndarray, px_um: float) -> tuple[np.ndarray, int]:
    """Label image of predicted components absent from the truth, and their number."""
    ps = ndimage.gaussian_filter(pred.astype(np.float64), 1.0)
    mask = ps > 0.3 * max(float(np.percentile(ps, 99.5)), 1e-12)
    lab, n = ndimage.label(mask)
    ts = ndimage.gaussian_filter(truth.astype(np.float64), 2.0)
    support = ndimage.binary_dilation(ts > 0.05 * max(float(np.percentile(ts, 99.5)), 1e-12), iterations=2)
    out = np.zeros_like(lab)
    k = 0
    sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    for i in range(1, n + 1):
        comp = lab == i
        if sizes[i - 1] >= 4 and not (comp & support).any():
            k += 1
            out[comp] = k
    return out, k


def detected(inv: np.ndarray, regions: list[dict], factor: int = 1) -> int:
    """Invented components overlapping a verify ``added`` region (bboxes on the recording grid)."""
    hit = np.zeros(inv.shape, bool)
    for r in regions:
        if r["kind"] != "added":
            continue
        (y0, y1), (x0, x1) = r["bbox"]
        hit[y0 * factor:y1 * factor, x0 * factor:x1 * factor] = True
    return int(sum((inv == i)[hit].any() for i in range(1, int(inv.max()) + 1)))


def _train(preset: str, xs, ys, steps: int, patch: int, seed: int, residual: bool = False
           ) -> tuple[torch.nn.Module, dict]:
    cfg = GANConfig.preset(preset, steps=steps, batch_size=8, patch=patch, width=16, depth=2, seed=seed, d_width=16,
                           residual=residual)
    t0, c0 = time.perf_counter(), time.process_time()
    def tick(step: int, losses: dict) -> None:
        if step % 25 == 0:
            print(f"{preset} step {step} {losses} cpu {time.process_time() - c0:.0f}s", file=sys.stderr, flush=True)

    bundle, info = train_gan(cfg, array_sampler(xs, ys, patch), callback=tick)
    return bundle.model, {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1),
                          "cpu_s": round(time.process_time() - c0, 1), "final": info["losses"][-1]}


PRESET_NAMES = ["l1", "gan"]


def run_palm(steps: int, quick: bool) -> dict:
    n_frames, k = 500, 50
    n_train, n_test = (4, 2) if quick else (12, 4)
    rng = np.random.default_rng(1000)
    t0 = time.perf_counter()
    train = [palm_pair((24, 24), n_frames=n_frames, k_frames=k, seed=rng) for _ in range(n_train)]
    test = [palm_pair((32, 32), n_frames=n_frames, k_frames=k, seed=np.random.default_rng(5000 + i))
            for i in range(n_test)]
    sim_s = time.perf_counter() - t0
    dense = [palm_target(p.dense) for p in train]
    scale = float(np.median([np.percentile(d, 99.5) / d.mean() for d in dense]))
    xs = [palm_inputs(p.sparse, p.widefield, p.factor, scale) for p in train]
    ys = [d / np.float32(d.mean() * scale) for d in dense]
    area = n_test * (32 * 0.1) ** 2
    res: dict = {"K": k, "N": n_frames, "sim_s": round(sim_s, 1), "test_area_um2": area, "models": {}}
    rows = {"naive K-frame": [p.sparse for p in test],
            "K-frame blurred 1 px": [ndimage.gaussian_filter(p.sparse, 1.0) for p in test],
            "control: N-frame rendering": [palm_target(p.dense) for p in test],
            "control: fluorophore density": [ndimage.gaussian_filter(p.structure, 1.0) for p in test]}
    for preset in PRESET_NAMES:
        net, tinfo = _train(preset, xs, ys, steps, 64, 0)
        preds = [np.clip(predict_gan(net, palm_inputs(p.sparse, p.widefield, p.factor, scale)), 0, None) *
                 np.float32(p.sparse.mean() * scale) for p in test]
        rows[f"U-Net {preset}"] = preds
        res["models"][preset] = tinfo
    dense_vs_truth = [quality(palm_target(p.dense), ndimage.gaussian_filter(p.structure, 1.0)) for p in test]
    res["dense_vs_structure"] = {m: float(np.mean([d[m] for d in dense_vs_truth])) for m in ("ms_ssim", "psnr")}
    res["rows"] = {}
    for name, imgs in rows.items():
        q = [quality(im, palm_target(p.dense)) for im, p in zip(imgs, test, strict=True)]
        qs = [quality(im, ndimage.gaussian_filter(p.structure, 1.0)) for im, p in zip(imgs, test, strict=True)]
        n_inv, n_det, flagged = 0, 0, 0
        for im, p in zip(imgs, test, strict=True):
            inv, n = invented(im, p.structure, 0.025)
            n_inv += n
            try:
                v = verify(p.widefield, bin_to_camera(im, p.factor) + np.float32(1e-6), widefield_forward(1.3),
                           gain=1.0, offset=0.0, read_noise=0.0)          # the simulated camera: Poisson photons
                n_det += detected(inv, v.regions, p.factor)
                flagged += any(r["kind"] == "added" for r in v.regions)
            except Exception as e:
                res.setdefault("verify_errors", []).append(f"{name}: {e}")
        res["rows"][name] = {"ms_ssim_dense": float(np.mean([d["ms_ssim"] for d in q])),
                             "psnr_dense": float(np.mean([d["psnr"] for d in q])),
                             "ms_ssim_structure": float(np.mean([d["ms_ssim"] for d in qs])),
                             "invented_per_100um2": 100 * n_inv / area, "invented": n_inv,
                             "verify_detected": n_det, "verify_added_images": flagged, "images": len(test)}
    return res


def run_xmod(steps: int, quick: bool) -> dict:
    px = 0.05
    s_lo, s_hi = modality_sigmas("na", pixel_size=px)
    n_train, n_test = (4, 2) if quick else (16, 4)
    rng = np.random.default_rng(2000)
    xs, ys = [], []
    for _ in range(n_train):
        lo, hi, _ = cross_modality_pair((96, 96), pixel_size=px, kind="mixed", offset=0.0, seed=rng)
        s = float(np.percentile(lo, 99.8))
        xs.append((lo / s)[None].astype(np.float32))
        ys.append((hi / s).astype(np.float32))
    test = [cross_modality_pair((128, 128), pixel_size=px, kind="mixed", offset=0.0,
                                seed=np.random.default_rng(6000 + i)) for i in range(n_test)]
    area = n_test * (128 * px) ** 2
    fwd = consistency_forward(s_lo, s_hi)
    extra_psf = fwd.psf
    res: dict = {"sigma_low_px": s_lo, "sigma_high_px": s_hi, "test_area_um2": area, "models": {}}
    rows = {"low-NA input": [t[0] for t in test], "control: high-NA truth": [t[1] for t in test]}
    t0 = time.perf_counter()
    rows["RL (20 it, residual PSF)"] = [deconvolve(t[0], "YX", psf=extra_psf, method="rl", iterations=20)[0]
                                        for t in test]
    res["rl_s"] = round(time.perf_counter() - t0, 1)
    for preset in PRESET_NAMES:
        net, tinfo = _train(preset, xs, ys, steps, 64, 0, residual=True)    # as the cross-modality task
        preds = []
        for lo, _, _ in test:
            s = float(np.percentile(lo, 99.8))
            preds.append(np.clip(predict_gan(net, (lo / s)[None].astype(np.float32)), 0, None) * np.float32(s))
        rows[f"U-Net {preset}"] = preds
        res["models"][preset] = tinfo
    res["rows"] = {}
    for name, imgs in rows.items():
        q = [quality(im, t[1]) for im, t in zip(imgs, test, strict=True)]
        fr = [frc(im, t[1], voxel_size=px).resolution for im, t in zip(imgs, test, strict=True)]
        n_inv, n_det, flagged = 0, 0, 0
        for im, t in zip(imgs, test, strict=True):
            inv, n = invented(im, t[2], px)
            n_inv += n
            if name == "low-NA input":
                continue   # not on the high-resolution grid's scale: verify would test the blur twice
            try:
                v = verify(t[0], im + np.float32(1e-6), fwd, gain=1.0, offset=0.0, read_noise=1.0)
                n_det += detected(inv, v.regions)
                flagged += any(r["kind"] == "added" for r in v.regions)
            except Exception as e:
                res.setdefault("verify_errors", []).append(f"{name}: {e}")
        res["rows"][name] = {"ms_ssim": float(np.mean([d["ms_ssim"] for d in q])),
                             "psnr": float(np.mean([d["psnr"] for d in q])),
                             "frc_um": float(np.nanmean(fr)), "invented_per_100um2": 100 * n_inv / area,
                             "invented": n_inv, "verify_detected": n_det, "verify_added_images": flagged,
                             "images": len(test)}
    hi_res = [frc(t[1], t[1] + np.random.default_rng(0).normal(0, 1e-3, t[1].shape), voxel_size=px).resolution
              for t in test]
    res["high_na_truth_frc_um_selfcheck"] = float(np.nanmean(hi_res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=("palm", "xmod", "all"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--presets", default="l1,gan", help="loss presets to train (comma-separated)")
    ap.add_argument("--key-suffix", default="", help="store results under '<part><suffix>' in the JSON")
    a = ap.parse_args()
    PRESET_NAMES[:] = a.presets.split(",")
    torch.set_num_threads(1)
    new: dict = {}
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg(),
           "machine": platform.machine(), "threads": 1, "torch": torch.__version__}
    for part, fn in (("palm", run_palm), ("xmod", run_xmod)):
        if a.part in (part, "all"):
            t0 = time.perf_counter()
            r = fn(a.steps, a.quick)
            r["env"] = {**env, "load_after": os.getloadavg(), "wall_s": round(time.perf_counter() - t0, 1),
                        "steps": a.steps, "quick": a.quick}
            new[part + a.key_suffix] = r
            print(json.dumps(r, indent=1, default=float))
    out = json.loads(OUT.read_text()) if OUT.exists() else {}   # re-read: another part may have finished
    out.update(new)
    OUT.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
