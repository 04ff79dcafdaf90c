"""Benchmark of issue 21: temporally consistent restoration of time-lapses.

Compares, in the same run and at equal training wall time, frame-by-frame N2V (our engine), the
classical per-frame denoiser (self-calibrated) and the spatiotemporal models (``n2v-t``, ``deepcad``):

- ``sim``: a simulated time-lapse (:func:`fluorecon.physics.timelapse.simulate_timelapse`: drifting,
  deforming, bleaching specimen, Poisson–Gaussian camera) with ground truth → PSNR to the noiseless
  recording, flicker against it, temporal-FRC cut-off against it;
- ``real``: ``../shared/data/huanglab-lysosome-repeats`` (live lysosomes): every method restores the
  even frames only; the held-out odd raw frames score it (:func:`heldout_frame_error`), plus flicker
  against the raw temporal low-pass;
- ``speed``: inference frames/s of a spatiotemporal network on 128² frames.

    .venv/bin/python benchmarks/time.py sim --budget 40 --frames 100
    .venv/bin/python benchmarks/time.py real --budget 40 --file 1.tif
    .venv/bin/python benchmarks/time.py speed

Results are appended to ``benchmarks/time.json`` with the machine load (``os.getloadavg``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import psnr
from fluorecon.evaluate.temporal import flicker, heldout_frame_error, temporal_frc
from fluorecon.io import read_image
from fluorecon.learn.temporal import predict_temporal, train_temporal
from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.tasks.timelapse import denoise_movie

OUT = Path(__file__).with_name("time.json")
METHODS = ("classical", "n2v-frames", "n2v-t", "deepcad")


def _run(movie: np.ndarray, method: str, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    t0 = time.perf_counter()
    out, info = denoise_movie(movie, "TYX", method, budget_s=args.budget, steps=args.steps, width=args.width,
                              device="cpu")
    info = {k: v for k, v in info.items() if k not in ("bundle", "classical")}
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    return out, info


def _save(res: dict) -> None:
    """Append (or update, same run id) this run's results: a long run keeps what it measured so far."""
    hist = json.loads(OUT.read_text()) if OUT.exists() else []
    hist = [h for h in hist if h.get("run") != res["run"]] + [res]
    OUT.write_text(json.dumps(hist, indent=1, default=float))


def bench_sim(args: argparse.Namespace, res: dict) -> None:
    sim = simulate_timelapse((args.size, args.size), args.frames, seed=args.seed)
    movie, ref = sim["movie"], sim["expected"]
    rng = float(ref.max() - ref.min())
    rows = res.setdefault("rows", {})
    res.update(kind="sim", frames=args.frames, size=args.size, budget_s=args.budget, steps=args.steps)
    rows["input"] = {"psnr": psnr(movie, ref, data_range=rng), "flicker": flicker(movie, truth=ref),
                     "tfrc_cutoff": temporal_frc(movie, ref).cutoff}
    rows["temporal_mean"] = {"psnr": psnr(np.broadcast_to(movie.mean(0), movie.shape), ref, data_range=rng)}
    for m in args.methods:
        out, info = _run(movie, m, args)
        rows[m] = {"psnr": psnr(out, ref, data_range=rng), "flicker": flicker(out, truth=ref),
                   "tfrc_cutoff": temporal_frc(out, ref).cutoff, **info}
        print(m, rows[m], flush=True)
        _save(res)


def bench_real(args: argparse.Namespace, res: dict) -> None:
    root = shared_data("huanglab-lysosome-repeats")
    if root is None:
        raise SystemExit("../shared/data/huanglab-lysosome-repeats is absent")
    movie = read_image(root / args.file).data.astype(np.float32)
    if movie.ndim != 3:
        movie = movie.reshape(-1, *movie.shape[-2:])
    kept, held = movie[0::2], movie[1::2]
    rows = res.setdefault("rows", {})
    res.update(kind="real", file=args.file, frames=int(movie.shape[0]), budget_s=args.budget, steps=args.steps)
    rows["input"] = {"heldout_mse": heldout_frame_error(kept, held), "flicker_raw": flicker(kept, raw=kept)}
    for m in args.methods:
        out, info = _run(kept, m, args)
        rows[m] = {"heldout_mse": heldout_frame_error(out, held), "flicker_raw": flicker(out, raw=kept), **info}
        print(m, rows[m], flush=True)
        _save(res)


def bench_speed(args: argparse.Namespace, res: dict) -> None:
    m = simulate_timelapse((128, 128), 64, seed=0)["movie"]
    b = train_temporal(m, "TYX", "n2v-t", steps=1, width=args.width, device="cpu")
    predict_temporal(b, m[:8], device="cpu")  # warm-up
    t0 = time.perf_counter()
    predict_temporal(b, m, device="cpu")
    dt = time.perf_counter() - t0
    row = {"frames": 64, "size": 128, "width": args.width, "seconds": round(dt, 2), "frames_per_s": round(64 / dt, 1),
           "threads": torch.get_num_threads()}
    print(row)
    res.update(kind="speed", rows=row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("sim", "real", "speed"))
    ap.add_argument("--budget", type=float, default=40.0, help="training seconds per learned method")
    ap.add_argument("--steps", type=int, default=None, help="equal training steps instead of equal budget")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file", default="1.tif")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    args.methods = tuple(args.methods.split(","))
    torch.set_num_threads(args.threads)
    res: dict = {"run": f"{args.what}-{os.getpid()}-{time.time():.0f}", "methods": list(args.methods),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg(),
                 "threads": args.threads, "note": "shared 2-core machine under contention: wall times inflated"}
    {"sim": bench_sim, "real": bench_real, "speed": bench_speed}[args.what](args, res)
    res["load_end"] = os.getloadavg()
    _save(res)


if __name__ == "__main__":
    main()
