"""Tuning the single-image self-supervised defaults on the TUNING set only (issue 14).

Data: ``../shared/data/fmd-dev-pairs`` (9 FMD test pairs, confocal and two-photon, fields of view
different from the benchmark's ``fmd-confocal-pairs``) and physics simulations (phantom → widefield
PSF → structured background → camera → 8-bit stretch; low counts). The benchmark images are never
read here: defaults chosen with this script can be reported on ``benchmarks/denoise_real.py``.

For each setting (learning rate × steps) and seed, the network is trained on the noisy image alone
(:func:`fluorecon.learn.single_image.denoise_single_image`, fixed steps: load-independent) and scored
against the ground truth: blind-spot inference (the default), plain inference, and the guarded
result of :func:`fluorecon.tasks.denoise.denoise` (classical fallback), with the classical ``auto``
and the input for reference. Prints one table (mean PSNR over images, seed SD) and writes
``denoise_tune.json`` beside this script (``--json``), with a ``provenance`` record (command, commit,
SHA-256 of every tuning file read and of the simulated images, seeds, parameters, machine, load), per
setting the per-seed means, their mean with a 95 % t-interval and the paired difference blind-spot −
classical, and the failure galleries (``figures/denoise_tune_worst_<method>.png``, or ``figures/``
beside a non-default ``--json``): per method the three (image, setting, seed) results with the smallest
PSNR gain over the input, listed under ``galleries``.

Usage::

    .venv/bin/python benchmarks/denoise_tune.py --lrs 5e-4,1e-3,2e-3 --steps 150,400 --seeds 0,1,2
    .venv/bin/python benchmarks/denoise_tune.py --images Confocal_FISH_1 --sim --steps 40 --seeds 0   # smoke
    .venv/bin/python benchmarks/denoise_tune.py --quick --images Confocal_FISH_1 --steps 2 --seeds 0 1 \
        --json /tmp/denoise_tune.json                                                               # tiny (crops)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import psnr
from fluorecon.io import read_image
from fluorecon.learn.single_image import denoise_single_image, predict_blind_spot
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve
from fluorecon.tasks.denoise import denoise

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _gallery import Case, save_gallery  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

TUNING_SET = "fmd-dev-pairs"
QUICK_SIDE = 64  # --quick: real images cropped to their top-left QUICK_SIDE², simulations drawn at that size


def stretched_widefield(shape=(256, 256), seed=0, photons=40.0, background=0.3, sigma=2.5):
    """Simulated 8-bit stretched widefield image and its truth (the same stretch of the noiseless image)."""
    s = np.asarray(fft_convolve(phantom("mixed", shape, seed=seed), gaussian_psf((31, 31), sigma)), np.float64)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    s = s + background * (0.5 + 0.5 * np.sin(2 * np.pi * (1.3 * xx + 0.7 * yy) + seed))
    cam = Camera(photons=photons, gain=1.5, offset=100.0, read_noise=3.0)
    raw = cam.simulate(s, seed=seed + 1).astype(np.float64)
    lo, hi = np.percentile(raw, [0.5, 99.9])

    def stretch(a):
        return np.clip((a - lo) / (hi - lo) * 255, 0, 255)

    return np.round(stretch(raw)).astype(np.float32), stretch(np.asarray(cam.expected(s), np.float64))


def load(images: list[str] | None, sim: bool, quick: bool = False) -> list[dict]:
    """Tuning pairs: ``files`` (noisy, gt paths) for the provenance hashes; ``--quick`` crops them."""
    out = []
    root = shared_data(TUNING_SET)
    crop = (slice(0, QUICK_SIDE), slice(0, QUICK_SIDE)) if quick else (slice(None), slice(None))
    if root is not None:
        for f in sorted((root / "noisy").glob("*.png")):
            if images and f.stem not in images:
                continue
            x = np.asarray(read_image(f).data, np.float32).squeeze()
            g = np.asarray(read_image(root / "gt" / f.name).data, np.float64).squeeze()
            out.append({"image": f.stem, "x": x[crop], "g": g[crop], "files": (f, root / "gt" / f.name)})
    if sim:
        shape = (QUICK_SIDE, QUICK_SIDE) if quick else (256, 256)
        for name, kw in (("sim_stretched8bit", {}), ("sim_low_counts", {"photons": 4.0}),
                         ("sim_structured_bg", {"background": 1.5})):
            x, g = stretched_widefield(shape=shape, **kw)
            out.append({"image": name, "x": x, "g": g})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lrs", default="2e-3")
    ap.add_argument("--steps", default="150")
    ap.add_argument("--seeds", nargs="+", default=["0,1,2"], help="training seeds: '0 1 2' or '0,1,2'")
    ap.add_argument("--quick", action="store_true",
                    help=f"tiny run: images cropped to {QUICK_SIDE}², simulations at that size (checks the script)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="gallery folder (default benchmarks/figures; with a non-default --json: figures/ beside it)")
    ap.add_argument("--images", help="comma-separated stems of the tuning set (default: all 9)")
    ap.add_argument("--sim", action="store_true", help="add the three simulations")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=HERE / "denoise_tune.json")
    a = ap.parse_args(argv)
    try:
        seeds = [int(v) for v in ",".join(a.seeds).split(",") if v.strip()]
    except ValueError:
        ap.error(f"--seeds takes integers, e.g. '--seeds 0 1 2'; got {' '.join(a.seeds)!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        ap.error("--seeds needs distinct integers")
    figures = a.figures or (HERE / "figures" if a.json.resolve() == HERE / "denoise_tune.json"
                            else a.json.resolve().parent / "figures")
    import torch

    torch.set_num_threads(a.threads)
    t_start = time.time()
    command = [__file__, *(sys.argv[1:] if argv is None else argv)]
    params = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "seeds": seeds}
    start = provenance(seeds=seeds, params=params, argv=command)
    data = load(a.images.split(",") if a.images else None, a.sim, a.quick)
    if not data:
        print(f"no tuning data ({TUNING_SET}) and no --sim", file=sys.stderr)
        return 2
    hashed: dict = {}
    for p in data:  # real pairs by their files' bytes, simulations by the arrays
        if "files" in p:
            hashed[f"{p['image']}_noisy"], hashed[f"{p['image']}_gt"] = p["files"]
        else:
            hashed[f"{p['image']}_noisy"], hashed[f"{p['image']}_truth"] = p["x"], p["g"]
    cases: dict[str, list[Case]] = {}
    recs = []
    for p in data:
        c, ci = denoise(p["x"], "YX", method="auto")
        base = {"image": p["image"], "noisy": psnr(p["x"], p["g"], data_range=255),
                "classical": psnr(c, p["g"], data_range=255), "classical_method": ci["method"]}
        for lr in (float(v) for v in a.lrs.split(",")):
            for steps in (int(v) for v in a.steps.split(",")):
                for seed in seeds:
                    t0 = time.perf_counter()
                    la = os.getloadavg()[0]
                    y, info = denoise_single_image(p["x"], "YX", steps=steps, seed=seed, lr=lr, device="cpu",
                                                   progress=False, blind_spot_inference=False)
                    b = info["bundle"]
                    yb = predict_blind_spot(b, p["x"], "YX", device="cpu")
                    rec = dict(base, lr=lr, steps=steps, seed=seed, selected_step=info["selected_step"],
                               plain=psnr(y, p["g"], data_range=255), blind_spot=psnr(yb, p["g"], data_range=255),
                               center_gain=info["center_gain"], heldout_loss_b=info["holdout"]["loss_b"],
                               seconds=time.perf_counter() - t0, load=[la, os.getloadavg()[0]])
                    g, gi = denoise(p["x"], "YX", method="n2v", steps=steps, seed=seed, lr=lr, device="cpu",
                                    progress=False)
                    rec.update(guarded=psnr(g, p["g"], data_range=255), guard_choice=gi["choice"],
                               guard_losses=gi["heldout"]["losses"])
                    recs.append(rec)
                    for method, est in (("blind_spot", yb), ("plain", y), ("guarded", g)):
                        cases.setdefault(method, []).append(Case(
                            f"{p['image']} lr {lr:g} steps {steps} seed {seed}", rec[method] - rec["noisy"],
                            {"recording": p["x"], "result": np.asarray(est, np.float32), "reference": p["g"]},
                            {"image": p["image"], "lr": lr, "steps": steps, "seed": seed, "psnr": rec[method]}))
                    print(f"{p['image']:24s} lr {lr:.0e} steps {steps:4d} seed {seed}: noisy {rec['noisy']:.2f} "
                          f"classical {rec['classical']:.2f} plain {rec['plain']:.2f} blind-spot {rec['blind_spot']:.2f} "
                          f"guarded {rec['guarded']:.2f} ({rec['guard_choice']}) sel {rec['selected_step']} "
                          f"gain {rec['center_gain']:.2f} load {la:.1f}", flush=True)
    print("\n| lr | steps | images | noisy | classical | plain | blind-spot | guarded | seed SD (blind-spot) |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["lr"], r["steps"]) for r in recs})
    for lr, steps in keys:
        rs = [r for r in recs if r["lr"] == lr and r["steps"] == steps]
        imgs = sorted({r["image"] for r in rs})

        def m(k, rs=rs, imgs=imgs):
            return np.mean([np.mean([r[k] for r in rs if r["image"] == i]) for i in imgs])

        sd = [np.std([r["blind_spot"] for r in rs if r["image"] == i], ddof=1) for i in imgs
              if sum(r["image"] == i for r in rs) > 1]
        print(f"| {lr:.0e} | {steps} | {len(imgs)} | {m('noisy'):.2f} | {m('classical'):.2f} | {m('plain'):.2f} | "
              f"{m('blind_spot'):.2f} | {m('guarded'):.2f} | {np.mean(sd) if sd else float('nan'):.2f} |")
    summary = {}
    for lr, steps in keys:  # per seed: the mean over images; then mean ± t-interval over seeds, paired vs classical
        rs = [r for r in recs if r["lr"] == lr and r["steps"] == steps]
        row: dict = {}
        for k in ("blind_spot", "plain", "guarded"):
            per_seed = {sd: float(np.mean([r[k] for r in rs if r["seed"] == sd])) for sd in seeds}
            diff = {sd: float(np.mean([r[k] - r["classical"] for r in rs if r["seed"] == sd])) for sd in seeds}
            row[k] = {"per_seed": per_seed, **mean_ci(list(per_seed.values())),
                      "minus_classical": {"per_seed": diff, **mean_ci(list(diff.values()))}}
        summary[f"lr {lr:g} steps {steps}"] = row
    galleries = {m: {"path": str(figures / f"denoise_tune_worst_{m}.png"),
                     "cases": save_gallery(cs, figures / f"denoise_tune_worst_{m}.png",
                                           f"denoise_tune.py (tuning set): {m}, worst 3 by PSNR gain over the input (dB)"),
                     "scores": {c.label: c.score for c in cs}, "score": "PSNR gain over the input (dB)"}
                 for m, cs in cases.items()}
    prov = provenance(seeds=seeds, data=hashed, params=params, argv=command)
    prov.update(date_utc=start["date_utc"], load_average_start=start["load_average_start"])
    a.json.write_text(json.dumps({"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "set": TUNING_SET,
                                  "provenance": finish(prov, t_start), "records": recs, "summary": summary,
                                  "galleries": galleries}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
