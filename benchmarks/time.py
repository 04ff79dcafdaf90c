"""Benchmark of issue 21: temporally consistent restoration of time-lapses.

Compares, in the same run and at equal training wall time, frame-by-frame N2V (our engine), the
classical per-frame denoiser (self-calibrated) and the spatiotemporal models (``n2v-t``, ``deepcad``,
the recurrent ``convlstm``):

- ``sim``: a simulated time-lapse (:func:`fluorecon.physics.timelapse.simulate_timelapse`: drifting,
  deforming, bleaching specimen, Poisson–Gaussian camera) with ground truth → PSNR to the noiseless
  recording, flicker against it, temporal-FRC cut-off against it;
- ``real``: ``../shared/data/huanglab-lysosome-repeats`` (live lysosomes): every method restores the
  even frames only (every network is trained on them, the classical denoiser calibrates on them); the
  held-out odd raw frames score it (:func:`heldout_frame_error`, in place and along the TV-L1 flow of
  the raw even frames, one flow for all methods), plus the Noise2Self J-invariant held-out-pixel score
  (:func:`jinv_heldout_pixel_error`, every method made J-invariant by the same grid masking) taken on
  the odd frames too (``jinv_mse_heldout``; the split is :func:`jinv_split`, recorded under ``jinv``):
  a network that memorised the noise of its training pixels gains nothing there. ``jinv_mse`` is the
  older score on the even (training) frames, kept for comparison only. ``paired_frames`` holds paired
  bootstrap CIs over the held-out frames against ``classical``, ``input/fused`` and the same seed's
  ``n2v-frames``: within one movie, frames correlated (not a CI over specimens). Flicker against the
  raw temporal low-pass. Learned methods run for each of ``--seeds``. Settings were chosen on
  ``2.tif`` (``--tune``); report others;
- ``speed``: inference frames/s of a spatiotemporal network on 128² frames.

    .venv/bin/python benchmarks/time.py sim --budget 40 --frames 100
    .venv/bin/python benchmarks/time.py sim --cpu-budget 30 --frames 64 --size 48 --methods n2v-frames,n2v-t,convlstm
    .venv/bin/python benchmarks/time.py real --budget 20 --file 1.tif --seeds 0 1 2
    .venv/bin/python benchmarks/time.py real --budget 20 --file 2.tif --tune        # settings (tuning file)
    .venv/bin/python benchmarks/time.py speed

Results are appended to ``benchmarks/time.json`` with the machine load (``os.getloadavg``). Each run holds a
``provenance`` record (command, code hash, the simulated movies or the real file by hash, seeds, all
parameters, machine, load). ``--seeds`` (``0 1 2`` or ``0,1,2``): ``real`` trains every learned method once
per seed (default 0 1 2); ``sim`` repeats the whole simulation per seed (movie and networks seeded alike;
default: ``--seed``, 0), keeps the first seed's table in ``rows``, every seed's in ``per_seed`` and the mean
with a 95 % t-interval and the paired differences against ``n2v-frames`` and ``classical`` in ``summary``.
Failure cases: each method's three worst frames (``sim``: PSNR to the noiseless movie; ``real``: held-out
frame error in place) as ``<figures>/time_worst_<method>.png`` (``--figures``), listed under ``galleries``.
``--quick`` (sim: 8 frames of 32², 3 steps, classical and n2v-t, no extra inference rows) is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluorecon.classical.denoise import denoise_classical
from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import bootstrap_ci, psnr
from fluorecon.evaluate.temporal import (
    flicker,
    heldout_frame_error,
    j_invariant,
    jinv_heldout_pixel_error,
    midpoint_interpolation,
    temporal_frc,
)
from fluorecon.geometry.flow import flow_tvl1
from fluorecon.io import read_image
from fluorecon.learn.predict import predict
from fluorecon.learn.temporal import predict_temporal, train_temporal
from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.tasks.timelapse import denoise_movie, temporal_inference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gallery import Case, save_gallery, worst
from _provenance import finish, provenance
from _stats import mean_ci

OUT = Path(__file__).with_name("time.json")
FIGURES = Path(__file__).with_name("figures")
METHODS = ("classical", "n2v-frames", "n2v-t", "deepcad", "convlstm")
# the frame-level intervals resample frames of one recording: they say how stable a difference is across
# this movie's frames, not how it would vary over specimens (the independent unit, issue 15)
FRAME_CI_SCOPE = "within one movie (frames correlated)"


def parse_seeds(tokens: list[str] | None) -> list[int] | None:
    """``["0", "1"]`` or ``["0,1"]`` (the older comma form) → ``[0, 1]``.

    >>> parse_seeds(["0,1", "2"])
    [0, 1, 2]
    """
    if tokens is None:
        return None
    return [int(v) for t in tokens for v in t.split(",") if v.strip()]


def _keep_worst(cases: dict, method: str, new: list[Case], n: int = 3) -> None:
    cases[method] = worst([*cases.get(method, []), *new], n)


def _frame_cases(label: str, inp: np.ndarray, out: np.ndarray, ref: np.ndarray, scores: list[float]) -> list[Case]:
    """The three worst frames of one result as gallery cases (score: higher is better)."""
    order = np.argsort(np.nan_to_num(np.asarray(scores), nan=-np.inf))[:3]
    return [Case(f"{label} frame {int(t)}", float(scores[t]), {"input": inp[t], "result": out[t], "reference": ref[t]},
                 {"frame": int(t)}) for t in order]


def _run(movie: np.ndarray, method: str, args: argparse.Namespace, seed: int | None = None,
         window: int | None = None) -> tuple[np.ndarray, dict, Any]:
    """Restore ``movie``; also return a ``restore(x)`` with every data-dependent choice frozen (for J-invariance)."""
    t0 = time.perf_counter()
    seed = args.seed if seed is None else seed
    window = window or args.window
    if method != "classical" and args.cpu_budget:
        steps = _steps_for_cpu(movie, method, args, seed, window)
        args = argparse.Namespace(**{**vars(args), "steps": steps})
    if method == "classical":
        out, cinfo = denoise_classical(movie, method="auto", axes="TYX")

        def restore(x: np.ndarray) -> np.ndarray:
            return denoise_classical(x, method=cinfo["method"], params=cinfo["params"], axes="TYX",
                                     normalization=cinfo["normalization"])[0]

        info: dict[str, Any] = {"method": method, "classical_method": cinfo["method"],
                                "flicker_raw_lowpass": flicker(out, raw=movie)}
    else:
        out, info = denoise_movie(movie, "TYX", method, budget_s=args.budget, steps=args.steps, width=args.width,
                                  window=window, device="cpu", seed=seed)
        bundle = info["bundle"]
        if method == "n2v-frames":
            def restore(x: np.ndarray) -> np.ndarray:
                return np.asarray(predict(bundle, x, "TYX", device="cpu"), np.float32)
        else:
            def restore(x: np.ndarray) -> np.ndarray:
                return predict_temporal(bundle, x, device="cpu")
        info = {k: v for k, v in info.items() if k not in ("bundle", "classical")}
        info["seed"], info["window"] = seed, window
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    return out, info, restore


class _Probe(Exception):
    pass


def _steps_for_cpu(movie: np.ndarray, method: str, args: argparse.Namespace, seed: int, window: int) -> int:
    """Steps that cost ``args.cpu_budget`` CPU seconds: equal CPU time survives a loaded machine, wall time does not.

    Times steps 3…12 of the real training (process CPU time, from the step callback) and stops it there.
    """
    marks: list[float] = []

    def cb(step: int, loss: float) -> None:
        marks.append(time.process_time())
        if step >= 12:
            raise _Probe

    try:
        denoise_movie(movie, "TYX", method, steps=10_000, width=args.width, window=window, device="cpu", seed=seed,
                      callback=cb)
    except _Probe:
        pass
    per_step = (marks[-1] - marks[2]) / (len(marks) - 3)
    return max(1, int(round(args.cpu_budget / per_step)))


def _save(res: dict) -> None:
    """Append (or update, same run id) this run's results: a long run keeps what it measured so far."""
    out = Path(res.get("argv", {}).get("out") or OUT)
    hist = json.loads(out.read_text()) if out.exists() else []
    hist = [h for h in hist if h.get("run") != res["run"]] + [res]
    out.write_text(json.dumps(hist, indent=1, default=float))


def bench_sim(args: argparse.Namespace, res: dict, data: dict, cases: dict) -> None:
    seeds = args.seeds or [args.seed]
    res.update(kind="sim", frames=args.frames, size=args.size, budget_s=args.budget, steps=args.steps, seed=seeds[0],
               seeds=seeds)
    per_seed = res.setdefault("per_seed", {})
    for seed in seeds:
        sim = simulate_timelapse((args.size, args.size), args.frames, seed=seed)
        movie, ref = sim["movie"], sim["expected"]
        data[f"movie_seed{seed}"], data[f"expected_seed{seed}"] = movie, ref
        rng = float(ref.max() - ref.min())
        # the first seed's table stays at "rows" (the layout of single-seed runs)
        rows = res.setdefault("rows", {}) if seed == seeds[0] else {}
        per_seed[str(seed)] = rows
        rows["input"] = {"psnr": psnr(movie, ref, data_range=rng), "flicker": flicker(movie, truth=ref),
                         "tfrc_cutoff": temporal_frc(movie, ref).cutoff}
        rows["temporal_mean"] = {"psnr": psnr(np.broadcast_to(movie.mean(0), movie.shape), ref, data_range=rng)}
        for m in args.methods:
            c0 = time.process_time()
            out, info, restore = _run(movie, m, args, seed=seed)
            rows[m] = {"psnr": psnr(out, ref, data_range=rng), "flicker": flicker(out, truth=ref),
                       "tfrc_cutoff": temporal_frc(out, ref).cutoff, "cpu_s": round(time.process_time() - c0, 1),
                       "psnr_per_frame": [psnr(o, r, data_range=rng) for o, r in zip(out, ref, strict=True)], **info}
            _keep_worst(cases, m, _frame_cases(f"seed {seed}", movie, out, ref, rows[m]["psnr_per_frame"]))
            print(m, {k: v for k, v in rows[m].items() if k != "psnr_per_frame"}, flush=True)
            prior = j_invariant(restore, movie) if args.inference else None
            for inf in args.inference:
                r = prior if inf == "blind-spot" else temporal_inference(restore, movie, "fused", prior=prior)[0]
                rows[f"{m}/{inf}"] = {"psnr": psnr(r, ref, data_range=rng), "flicker": flicker(r, truth=ref)}
                print(f"{m}/{inf}", rows[f"{m}/{inf}"], flush=True)
            _save(res)
    keys = [k for k in per_seed[str(seeds[0])] if all(k in per_seed[str(s)] for s in seeds)]
    summary: dict = {k: {q: mean_ci([per_seed[str(s)][k][q] for s in seeds]) for q in ("psnr", "flicker")
                         if q in per_seed[str(seeds[0])][k]} for k in keys}
    for peer in ("n2v-frames", "classical"):
        for k in keys:
            if k != peer and peer in keys and k not in ("input", "temporal_mean"):
                summary[f"{k} - {peer}"] = {"psnr": mean_ci([per_seed[str(s)][k]["psnr"] - per_seed[str(s)][peer]["psnr"]
                                                             for s in seeds])}
    res["summary"] = summary


def jinv_split(n_frames: int) -> dict[str, Any]:
    """The frame split of ``real``: what every method trains (or calibrates) on and what scores it.

    Every method restores the even frames and is trained or calibrated on them; the odd frames are held
    out of everything and score both the held-out-frame error and the Noise2Self J-invariant score. A
    J-invariant score on training pixels rewards a network that memorised their noise; on frames no
    method has seen it is a held-out score for all of them alike.

    Parameters
    ----------
    n_frames : int
        Frames of the movie (at least 3: two trained frames around one held-out frame).

    Returns
    -------
    dict
        ``train_frames`` and ``scored_frames`` (movie indices, disjoint) and the ``rule`` in words.

    Examples
    --------
    >>> s = jinv_split(5)
    >>> s["train_frames"], s["scored_frames"]
    ([0, 2, 4], [1, 3])
    """
    if n_frames < 3:
        raise ValueError(f"the held-out split needs a movie of at least 3 frames, got {n_frames}")
    return {"train_frames": list(range(0, n_frames, 2)), "scored_frames": list(range(1, n_frames, 2)),
            "rule": "train/calibrate and restore on the even frames; the odd frames (never trained on) score "
                    "the held-out frame error and the J-invariant score"}


def _jinv_scores(restore: Any, frames: np.ndarray) -> tuple[float, list[float]]:
    """Noise2Self score of ``restore`` on ``frames`` (made J-invariant by grid masking): mean and per frame."""
    err = (j_invariant(restore, frames).astype(np.float64) - frames) ** 2
    return float(err.mean()), [float(v) for v in err.mean(axis=(1, 2))]


def _n2v_peer(key: str, rows: dict) -> str | None:
    """The plain ``n2v-frames`` row trained with the same seed as row ``key`` (None if absent or ``key`` is it)."""
    seed = next((p for p in key.split("/") if p.startswith("seed")), None)
    peers = [k for k in rows if k.startswith("n2v-frames/") and k.count("/") == 2 and k.endswith(f"/{seed}")]
    return peers[0] if seed and peers and peers[0] != key else None


def paired_frames(rows: dict, seed: int = 0) -> dict[str, dict]:
    """Paired percentile-bootstrap 95 % CIs of per-frame differences ``row − peer`` (lower is better).

    Peers: ``classical``, ``input/fused`` (the fusion without a network) and the same seed's plain
    ``n2v-frames``. Metrics: the held-out frame error in place (``per_frame``) and along the flow
    (``mc_per_frame``), and the held-out J-invariant score (``jinv_per_frame_heldout``). Every interval
    is over the frames of one movie (labelled ``scope``): frames are correlated, so it is narrower than
    an interval over specimens would be.

    Parameters
    ----------
    rows : dict
        The ``rows`` of a ``real`` run.
    seed : int
        Bootstrap resampling seed.

    Returns
    -------
    dict
        ``{"<row> - <peer>": {metric: {"mean", "ci95", "n_frames", "frames_better", "scope"}}}``.
    """
    fields = {"in_place": "per_frame", "along_flow": "mc_per_frame", "jinv_heldout": "jinv_per_frame_heldout"}
    out: dict[str, dict] = {}
    for key, row in rows.items():
        for peer in ("classical", "input/fused", _n2v_peer(key, rows)):
            if peer is None or peer == key or peer not in rows:
                continue
            pair = {}
            for name, field in fields.items():
                if field in row and field in rows[peer]:
                    d = np.asarray(row[field], np.float64) - np.asarray(rows[peer][field], np.float64)
                    ci = bootstrap_ci(d, seed=seed)
                    pair[name] = {"mean": ci.value, "ci95": [ci.low, ci.high], "n_frames": int(d.size),
                                  "frames_better": int((d < 0).sum()), "scope": FRAME_CI_SCOPE}
            if pair:
                out[f"{key} - {peer}"] = pair
    return out


def _flows(kept: np.ndarray, sigma: float, attachment: float) -> np.ndarray:
    from scipy import ndimage

    sm = ndimage.gaussian_filter(kept, (0, sigma, sigma)) if sigma > 0 else kept
    return flow_tvl1(sm, attachment=attachment)


def _per_frame(r: np.ndarray, held: np.ndarray, fl: np.ndarray | None) -> list[float]:
    """Held-out error per held-out frame, along the flow ``fl`` or in place (paired CIs over frames)."""
    pred = midpoint_interpolation(r, fl)
    k = pred.shape[0]
    return [float(v) for v in np.mean((pred - held[:k].astype(np.float64)) ** 2, axis=(1, 2))]


def bench_real(args: argparse.Namespace, res: dict, data: dict, cases: dict) -> None:
    root = shared_data("huanglab-lysosome-repeats")
    if root is None:
        raise SystemExit("../shared/data/huanglab-lysosome-repeats is absent")
    data[f"huanglab-lysosome-repeats/{args.file}"] = root / args.file
    movie = read_image(root / args.file).data.astype(np.float32)
    if movie.ndim != 3:
        movie = movie.reshape(-1, *movie.shape[-2:])
    try:
        split = jinv_split(movie.shape[0])
    except ValueError as e:
        print(f"time.py real: {args.file}: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    kept, held = movie[split["train_frames"]], movie[split["scored_frames"]]
    rows = res.setdefault("rows", {})
    res.update(kind="real-tune" if args.tune else "real", file=args.file, frames=int(movie.shape[0]),
               budget_s=args.budget, steps=args.steps, seeds=args.seeds, flow_sigma=args.flow_sigma)
    res["jinv"] = {**split, "score": "jinv_mse_heldout (per frame: jinv_per_frame_heldout), on scored_frames",
                   "jinv_mse": "older score on train_frames: not held out for the networks, comparison only"}
    res["paired_frames_scope"] = FRAME_CI_SCOPE
    if args.tune:
        # method-independent setting: the flow's pre-smoothing and TV-L1 attachment (noisy frames need a
        # smoother flow), chosen on the raw interpolation's error
        for sg in (1.0, 2.0):
            for att in (15.0, 5.0, 2.0):
                key = f"raw_flow_sigma{sg:g}_att{att:g}"
                rows[key] = {"heldout_mse_mc": heldout_frame_error(kept, held, _flows(kept, sg, att))}
                print(key, rows[key], flush=True)
        _save(res)
    fl = _flows(kept, args.flow_sigma, args.flow_attachment)
    rows["input"] = {"heldout_mse": heldout_frame_error(kept, held), "heldout_mse_mc": heldout_frame_error(kept, held, fl),
                     "jinv_mse": jinv_heldout_pixel_error(lambda x: x, kept), "flicker_raw": flicker(kept, raw=kept)}
    rows["input"]["jinv_mse_heldout"], rows["input"]["jinv_per_frame_heldout"] = _jinv_scores(lambda x: x, held)
    print("input", rows["input"], flush=True)
    # the fusion without a network: the 5×5 ring median (J-invariant) fused with the raw pixel
    rm = temporal_inference(lambda x: x, kept, "fused")[0]
    rows["input/fused"] = {"heldout_mse": heldout_frame_error(rm, held), "heldout_mse_mc": heldout_frame_error(rm, held, fl),
                           "flicker_raw": flicker(rm, raw=kept), "mc_per_frame": _per_frame(rm, held, fl),
                           "per_frame": _per_frame(rm, held, None)}
    rows["input"].update(mc_per_frame=_per_frame(kept, held, fl), per_frame=_per_frame(kept, held, None))
    print("input/fused", rows["input/fused"], flush=True)
    _save(res)
    windows = args.tune_windows if args.tune else (args.window,)
    for m in args.methods:
        for w in (windows if m in ("n2v-t", "convlstm") else (args.window,)):
            for s in (args.seeds if m != "classical" else (0,)):
                c0 = time.process_time()
                out, info, restore = _run(kept, m, args, seed=s, window=w)
                # the J-invariant prediction of the training frames feeds the blind-spot / fused inference
                # rows; the Noise2Self score is taken on the odd frames, which no method was trained on
                prior = j_invariant(restore, kept)
                jinv_held, jinv_frames = _jinv_scores(restore, held)
                row = {"heldout_mse": heldout_frame_error(out, held), "heldout_mse_mc": heldout_frame_error(out, held, fl),
                       "jinv_mse": float(np.mean((prior.astype(np.float64) - kept) ** 2)),
                       "jinv_mse_heldout": jinv_held, "jinv_per_frame_heldout": jinv_frames,
                       "flicker_raw": flicker(out, raw=kept), "cpu_s": round(time.process_time() - c0, 1),
                       "mc_per_frame": _per_frame(out, held, fl), "per_frame": _per_frame(out, held, None), **info}
                key = m if m == "classical" else f"{m}/w{w}/seed{s}"
                rows[key] = row
                # failure cases: the held-out frames the in-place interpolation of this result misses most
                mid = midpoint_interpolation(out)
                k = mid.shape[0]
                _keep_worst(cases, m if m == "classical" else f"{m}-w{w}", _frame_cases(
                    key, kept[:k], mid, held[:k].astype(np.float32), [-v for v in row["per_frame"]]))
                print(key, row, flush=True)
                for inf in args.inference:
                    r = prior if inf == "blind-spot" else temporal_inference(restore, kept, "fused", prior=prior)[0]
                    rows[f"{key}/{inf}"] = {"heldout_mse": heldout_frame_error(r, held),
                                           "heldout_mse_mc": heldout_frame_error(r, held, fl),
                                           "flicker_raw": flicker(r, raw=kept), "mc_per_frame": _per_frame(r, held, fl),
                                           "per_frame": _per_frame(r, held, None)}
                    print(f"{key}/{inf}", rows[f"{key}/{inf}"], flush=True)
                res["paired_frames"] = paired_frames(rows)
                _save(res)


def bench_speed(args: argparse.Namespace, res: dict, data: dict, cases: dict) -> None:
    m = simulate_timelapse((128, 128), 64, seed=0)["movie"]
    data["movie_seed0"] = m
    rows = {}
    for scheme in ("n2v-t", "convlstm"):
        b = train_temporal(m, "TYX", scheme, steps=1, width=args.width, device="cpu")
        predict_temporal(b, m[:8], device="cpu")  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        predict_temporal(b, m, device="cpu")
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        rows[scheme] = {"frames": 64, "size": 128, "width": args.width, "seconds": round(dt, 2),
                        "cpu_s": round(dc, 2), "frames_per_s": round(64 / dt, 1), "threads": torch.get_num_threads()}
        print(scheme, rows[scheme], flush=True)
    res.update(kind="speed", rows=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("sim", "real", "speed"))
    ap.add_argument("--budget", type=float, default=40.0, help="training seconds per learned method")
    ap.add_argument("--steps", type=int, default=None, help="equal training steps instead of equal budget")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="sim: one seed (alias of --seeds S)")
    ap.add_argument("--file", default="1.tif")
    ap.add_argument("--seeds", nargs="+", default=None,
                    help="seeds (space or comma separated); real: of the learned methods (default 0 1 2); sim: "
                         "one run per seed (default --seed)")
    ap.add_argument("--window", type=int, default=8, help="temporal window of n2v-t / deepcad / convlstm")
    ap.add_argument("--flow-sigma", type=float, default=1.0, help="real: Gaussian pre-smoothing of the TV-L1 flow")
    ap.add_argument("--flow-attachment", type=float, default=2.0, help="real: TV-L1 attachment (chosen on 2.tif)")
    ap.add_argument("--cpu-budget", type=float, default=None,
                    help="equal CPU seconds of training per learned method (steps from a timed probe)")
    ap.add_argument("--tune", action="store_true", help="real: also try flow smoothing and windows (tuning file)")
    ap.add_argument("--tune-windows", default="4,8")
    ap.add_argument("--out", default=None, help="results file (default benchmarks/time.json)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--inference", default=None,
                    help="extra rows per method from the same trained net (default blind-spot,fused; quick: none)")
    ap.add_argument("--quick", action="store_true",
                    help="sim smoke run: 8 frames of 32², 3 steps, classical and n2v-t, no inference rows")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="folder of the galleries time_worst_<method>.png")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.size, args.steps = min(args.frames, 8), min(args.size, 32), args.steps or 3
        if args.methods == ",".join(METHODS):
            args.methods = "classical,n2v-t"
        args.inference = "" if args.inference is None else args.inference
    args.methods = tuple(args.methods.split(","))
    inference = "blind-spot,fused" if args.inference is None else args.inference
    args.inference = tuple(v for v in inference.split(",") if v)
    seeds = parse_seeds(args.seeds)
    args.seeds = tuple(seeds) if seeds is not None else ((0, 1, 2) if args.what == "real" else (args.seed,))
    args.tune_windows = tuple(int(v) for v in args.tune_windows.split(","))
    torch.set_num_threads(args.threads)
    t_wall = time.time()
    params = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
              for k, v in vars(args).items()}
    res: dict = {"run": f"{args.what}-{os.getpid()}-{time.time():.0f}", "methods": list(args.methods),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg(),
                 "argv": params,
                 "threads": args.threads, "note": "shared 2-core machine under contention: wall times inflated"}
    data: dict = {}
    cases: dict[str, list[Case]] = {}
    {"sim": bench_sim, "real": bench_real, "speed": bench_speed}[args.what](args, res, data, cases)
    res["load_end"] = os.getloadavg()
    res["galleries"] = {}
    for name, cs in cases.items():
        path = args.figures / f"time_worst_{name}.png"
        res["galleries"][name] = {"path": str(path), "metric": "psnr dB" if args.what == "sim" else
                                  "-held-out frame MSE in place (ADU²)",
                                  "cases": save_gallery(cs, path, f"time.py {args.what}: worst frames, {name}")}
    res["provenance"] = finish(provenance(seeds=list(args.seeds), data=data, params={
        **params, "deterministic": "speed: untrained nets (steps=1), movie seed 0" if args.what == "speed" else None}),
        t_wall)
    _save(res)


if __name__ == "__main__":
    main()
