"""Geometry benchmark: stitching accuracy and memory, optical flow EPE, deformable stabilization.

Run:  .venv/bin/python benchmarks/geometry.py            (reduced defaults, ~20 min on 2 contended cores)
      .venv/bin/python benchmarks/geometry.py --quick    (tiny sizes: checks the script)
Writes benchmarks/geometry.json and benchmarks/geometry.md (table).

What is measured (targets of issue 20)
* (a) stitching positions vs the truth on simulated tilings (2D grid, 10 % overlap, ±jitter stage error,
  Poisson noise, vignetting; and a 3D grid): median and max position error (px) after global
  optimisation (translation gauge removed by aligning tile 0). Target: median ≤ 0.3 px, max ≤ 2 px.
* (a') real texture: tiles of ``basic-flatfield/wsi_brain.npz`` (no stored layout: the 63 tiles' order
  is unknown, consecutive tiles give inconsistent offsets) are upsampled 2× and cut into a 2×2 grid with
  known offsets, then stitched.
* (b) out of core: an N×N grid of 1024² uint16 tiles written as TIFF, stitched by ``fluorecon stitch
  ... -o mosaic.ome.zarr`` in a subprocess; its peak RSS (``ru_maxrss`` of the child). Target: 10×10
  within 2 GiB (the reduced run uses a smaller grid; memory per chunk does not grow with the grid).
* (c) optical flow endpoint error on simulated fluorescence movies (advected textures, bleaching,
  Poisson noise): TV-L1 and iLK (scikit-image) vs the CNN trained on simulated flows for ``--flow-budget``
  seconds per training seed (``--flow-seeds``, default 0 1 2; --quick: 0). The CNN learns from
  ``simulate_flow_batch``; so that the peers get the same information, TV-L1 (``attachment``, ``tightness``,
  ``num_warp``) and iLK (``radius``) are also grid-searched on 16 pairs drawn from that generator
  (``--flow-tune-seed``, default 1000, never a test-movie seed). Rows at scikit-image defaults and tuned.
  Target: CNN EPE ≤ 0.7 × TV-L1 (``met``: default TV-L1; ``met_vs_tuned_tvl1``: tuned TV-L1).
* (d) stabilization of simulated deformations (random affine + smooth non-affine field): residual
  misalignment = mean |estimated − true field| (px) for affine alone vs affine + learned deformable.
  Target: deformable ≤ 0.5 × affine.
* (e) peers side by side (``--peers``): the same simulated 2D tilings (seeds 0–2) stitched by ours, m2stitch
  (MIST, integer translations) and multiview-stitcher (phase correlation + global optimisation), each in its
  own venv (``benchmarks/peers/stitch_peers_setup.sh``); position errors and registration wall time
  (imports and start-up excluded for every tool), as ratios to ours.
The machine is shared: the script records ``os.getloadavg()``; timings are noisy.

Reproducibility (issue 15): every JSON it writes carries a ``provenance`` record (command, commit, the
SHA-256 of every simulated tile stack / movie / series and of the real file, seeds, parameters, machine,
load). ``--seeds`` (default 0 1 2; ``--quick``: 0) are the simulated tilings of (a) and (e); the flow CNN's
training seeds are ``--flow-seeds`` and the peers' tuning seed ``--flow-tune-seed``; the movies (100+i) and
the stabilization series (0) are fixed. (c) reports the CNN per training seed with a t-interval over seeds. (a) and (e) report
per-seed errors with mean and a 95 % t-interval, (e) also the paired difference peer − ours per seed.
Failure cases: (c) draws each method's three movies with the largest EPE (flow magnitude: result vs truth)
to ``figures/geometry_worst_<method>.png`` (``figures/`` beside a non-default ``--out``), listed under
``galleries``; stitching cases are positions, not images (their per-seed errors are in the JSON).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fluorecon.geometry import flow as fl
from fluorecon.geometry.stabilize import stabilize
from fluorecon.geometry.stitch import stitch
from fluorecon.io import write_image
from fluorecon.physics import motion

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _gallery import Case, save_gallery  # noqa: E402
from _peers import peer_python  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

DATA: dict = {}  # name → array or file, hashed into the provenance record
CASES: dict[str, list[Case]] = {}  # method → scored movies, for the failure gallery


def _pos_errors(res, true):
    t = true - true[0] + res.positions[0]
    e = np.linalg.norm(res.positions - t, axis=1)
    return float(np.median(e)), float(e.max())


def bench_stitch(quick: bool, seeds: list[int] | None = None) -> list[dict]:
    rows = []
    cases = [("2D 4×4 grid, 256² tiles, 10 % overlap, jitter ±3 px, 100 photons", dict(
        grid=(4, 4), tile_shape=(256, 256), overlap=0.1, jitter=3.0, photons=100.0))]
    cases.append(("3D 1×2×2 grid, 24×128² tiles, 15 % overlap, jitter ±2 px", dict(
        grid=(1, 2, 2), tile_shape=(24, 128, 128), overlap=0.15, jitter=2.0, photons=100.0)))
    if quick:
        cases = [("2D 2×2 grid, 128² tiles, 15 % overlap", dict(grid=(2, 2), tile_shape=(128, 128), overlap=0.15,
                                                                    jitter=2.0, photons=100.0))]
    seeds = ([0] if quick else [0, 1, 2]) if seeds is None else list(seeds)
    for ci, (name, kw) in enumerate(cases):
        meds, maxs, secs = [], [], []
        for seed in seeds:
            sim = motion.simulate_tiling(seed=seed, **kw)
            DATA[f"stitch_case{ci}_seed{seed}_tiles"] = np.asarray(sim["tiles"], np.float32)
            t0 = time.perf_counter()
            res = stitch(sim["tiles"], sim["nominal"], fuse_mosaic=False)
            secs.append(time.perf_counter() - t0)
            m, x = _pos_errors(res, sim["positions"])
            meds.append(m)
            maxs.append(x)
        rows.append({"case": name, "median_error_px": float(np.median(meds)), "max_error_px": float(np.max(maxs)),
                     "seconds_register": float(np.mean(secs)), "runs": len(meds), "seeds": seeds,
                     "per_seed": {str(sd): {"median_error_px": m, "max_error_px": x}
                                  for sd, m, x in zip(seeds, meds, maxs, strict=True)},
                     "median_error_px_mean_ci95": mean_ci(meds), "max_error_px_mean_ci95": mean_ci(maxs),
                     "target": "median ≤ 0.3 px, max ≤ 2 px",
                     "met": bool(np.median(meds) <= 0.3 and np.max(maxs) <= 2.0)})
        print(rows[-1], flush=True)
    return rows


def bench_real_texture() -> dict | None:
    from scipy import ndimage

    from fluorecon.datasets import shared_data

    d = shared_data("basic-flatfield")
    if d is None:
        return None
    DATA["wsi_brain.npz"] = d / "wsi_brain.npz"
    tiles = np.load(d / "wsi_brain.npz")["images"].astype(np.float32)
    rng = np.random.default_rng(0)
    errs = []
    for k in (5, 17, 35, 52):
        big = ndimage.zoom(tiles[k], 2, order=3)  # 256²
        ts, step = 144, 112
        true = np.array([[0, 0], [0, step], [step, 0], [step, step]], float) + rng.integers(-3, 4, (4, 2))
        true = np.clip(true, 0, 256 - ts)
        sub = [big[int(p[0]):int(p[0]) + ts, int(p[1]):int(p[1]) + ts] for p in true]
        nominal = np.array([[0, 0], [0, step], [step, 0], [step, step]], float)
        res = stitch(sub, nominal, fuse_mosaic=False)
        errs.append(_pos_errors(res, true)[1])
    return {"case": "real texture (wsi_brain tiles 5,17,35,52, 2× upsampled, 2×2 grid 144² tiles, 32 px overlap)",
            "max_error_px": float(np.max(errs)), "median_of_max_px": float(np.median(errs))}


# tool → (override variable, default venv, module it must import); built by peers/stitch_peers_setup.sh
PEER_VENVS = {"m2stitch": ("FLUORECON_PEER_M2STITCH", Path.home() / ".cache" / "peer-m2stitch", "m2stitch"),
              "multiview-stitcher": ("FLUORECON_PEER_MVSTITCHER", Path.home() / ".cache" / "peer-mvstitcher",
                                     "multiview_stitcher")}


def bench_stitch_peers(seeds: list[int]) -> dict:
    """Ours vs m2stitch vs multiview-stitcher on identical tiles (2D 4×4, 256², 10 % overlap)."""
    kw = dict(grid=(4, 4), tile_shape=(256, 256), overlap=0.1, jitter=3.0, photons=100.0)
    rows: dict[str, dict[str, list[float]]] = {}
    notes: list[str] = []
    for seed in seeds:
        sim = motion.simulate_tiling(seed=seed, **kw)
        DATA[f"peers_seed{seed}_tiles"] = np.asarray(sim["tiles"], np.float32)
        t0 = time.perf_counter()
        res = stitch(sim["tiles"], sim["nominal"], fuse_mosaic=False)
        sec = time.perf_counter() - t0
        m, x = _pos_errors(res, sim["positions"])
        for k, v in (("median", m), ("max", x), ("seconds", sec)):
            rows.setdefault("fluorecon", {}).setdefault(k, []).append(v)
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "tiles.npz"
            np.savez(npz, tiles=np.asarray(sim["tiles"], np.float32), nominal=sim["nominal"],
                     grid_index=sim["grid_index"])
            for tool, (env_var, venv, module) in PEER_VENVS.items():
                py = peer_python(env_var, venv, module)
                if py is None:
                    notes.append(f"{tool}: venv {venv} missing (run benchmarks/peers/stitch_peers_setup.sh)")
                    continue
                out = Path(tmp) / f"{tool}.json"
                r = subprocess.run([str(py), str(HERE / "peers" / "stitch_peer.py"), tool, str(npz), str(out)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    notes.append(f"{tool} seed {seed} failed: {r.stderr.strip().splitlines()[-1][:300]}")
                    continue
                pr = json.loads(out.read_text())
                pos = np.asarray(pr["positions"], float)
                t = sim["positions"] - sim["positions"][0] + pos[0]
                e = np.linalg.norm(pos - t, axis=1)
                sec_peer = pr.get("seconds_successful_call", pr["seconds"])
                for k, v in (("median", float(np.median(e))), ("max", float(e.max())), ("seconds", sec_peer)):
                    rows.setdefault(tool, {}).setdefault(k, []).append(v)
                if "ncc_threshold" in pr:
                    rows[tool].setdefault("ncc_threshold", []).append(pr["ncc_threshold"])
        print(seed, {k: {m: v[-1] for m, v in d.items()} for k, d in rows.items()}, flush=True)
    ours = float(np.mean(rows["fluorecon"]["seconds"]))
    table = {tool: {"median_error_px": float(np.median(d["median"])), "max_error_px": float(np.max(d["max"])),
                    "seconds": float(np.mean(d["seconds"])), "seconds_ratio_to_ours": float(np.mean(d["seconds"])) / ours,
                    "runs": len(d["median"]), **({"ncc_threshold": d["ncc_threshold"]} if "ncc_threshold" in d else {})}
             for tool, d in rows.items()}
    per_seed = {tool: {k: d[k] for k in ("median", "max", "seconds")} for tool, d in rows.items()}
    paired = {}  # peer − ours per seed (only where the peer ran on every seed)
    for tool, d in rows.items():
        if tool != "fluorecon" and len(d["median"]) == len(rows["fluorecon"]["median"]):
            paired[tool] = {k: mean_ci(np.subtract(d[k], rows["fluorecon"][k])) for k in ("median", "max", "seconds")}
    return {"setting": "2D 4×4 grid, 256² tiles, 10 % overlap, jitter ±3 px, 100 photons", "seeds": seeds,
            "table": table, "per_seed": per_seed, "paired_peer_minus_ours": paired, "notes": notes, "load": [round(v, 2) for v in os.getloadavg()],
            "target": "faster than m2stitch on the same tiles"}


def _write_big_grid(folder: Path, n: int, tile: int, overlap: float) -> None:
    step = int(tile * (1 - overlap))
    rng = np.random.default_rng(0)
    for i in range(n):
        for j in range(n):
            p = (i * step + int(rng.integers(-2, 3)) + 4, j * step + int(rng.integers(-2, 3)) + 4)
            t = motion.procedural_specimen(p, (tile, tile), seed=1, n_waves=16)
            t = rng.poisson(np.maximum(t, 0) * 200 + 20).astype(np.uint16)
            write_image(folder / f"tile_{i:02d}_{j:02d}.tif", t)


def bench_memory(n: int, tile: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        _write_big_grid(folder, n, tile, 0.1)
        gen_s = time.perf_counter() - t0
        out = folder / "mosaic.ome.zarr"
        cmd = [str(Path(sys.executable).with_name("fluorecon")), "stitch", str(folder / "tile_*.tif"), "--grid", f"{n},{n}",
               "--overlap", "0.1", "-o", str(out), "--chunks", "1024", "--quiet", "--json"]
        code = ("import resource, subprocess, sys, json, time; t=time.perf_counter(); "
                "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                "print(json.dumps({'rc': r.returncode, 'rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
                " 'seconds': time.perf_counter()-t, 'err': r.stderr[-2000:], 'out': r.stdout[-4000:]}))")
        r = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
        info = json.loads(r.stdout.strip().splitlines()[-1])
        summary = {}
        if info["rc"] == 0:
            # --json prints the summary object; warnings may print objects too: keep the one with a mosaic.
            text = info["out"]
            dec, i = json.JSONDecoder(), 0
            while (i := text.find("{", i)) >= 0:
                try:
                    obj, end = dec.raw_decode(text, i)
                except json.JSONDecodeError:
                    i += 1
                    continue
                if isinstance(obj, dict) and "mosaic_shape" in obj:
                    summary = obj
                i = end
            summary.setdefault("raw_tail", text[-300:])
        if not summary:
            summary = {"stdout_tail": info["out"][-1500:]}
        # The written store is the proof: its shape and the fraction of non-zero pixels.
        if out.exists():
            import zarr
            arr = zarr.open_group(str(out), mode="r")["0"]
            summary.setdefault("mosaic_shape", list(arr.shape[-2:]))
            mid = np.asarray(arr[(0,) * (arr.ndim - 2) + (slice(arr.shape[-2] // 2, arr.shape[-2] // 2 + 1), slice(None))])
            summary["middle_row_nonzero_fraction"] = float((mid > 0).mean())
        mosaic_px = int(np.prod(summary.get("mosaic_shape", [0, 0])))
        return {"grid": f"{n}×{n}", "tile": f"{tile}²", "rc": info["rc"], "peak_rss_mib": info["rss_kib"] / 1024,
                "seconds": info["seconds"], "generate_seconds": gen_s, "mosaic_shape": summary.get("mosaic_shape"),
                "mosaic_float32_mib": mosaic_px * 4 / 2**20,
                "middle_row_nonzero_fraction": summary.get("middle_row_nonzero_fraction"),
                "stdout_tail": summary.get("stdout_tail"), "error": info["err"][-500:] if info["rc"] else None,
                "target": "10×10 of 1024² within 2 GiB"}


# Optical flow (c). The CNN learns from fl.simulate_flow_batch; to give TV-L1 and iLK the same information their
# parameters are searched on a fresh draw of that generator (never on the test movies, seeds FLOW_MOVIE_SEED0 + i).
FLOW_MOVIE_SEED0 = 100
FLOW_TUNE_SEED = 1000  # tuning pairs: disjoint from the movies (100+i) and the CNN training seeds (0, 1, 2)
FLOW_AMPLITUDE = 3.0  # train_flow_simulated's default amplitude: the CNN's training distribution
FLOW_BORDER = 8  # EPE over the interior, as on the test movies
# scikit-image 0.26 defaults; they come first on every axis, so the default wins ties.
TVL1_DEFAULT = {"attachment": 15.0, "tightness": 0.3, "num_warp": 5}
ILK_DEFAULT = {"radius": 7}
TVL1_GRID: dict[str, tuple] = {"attachment": (15.0, 2.0, 5.0, 10.0, 30.0), "tightness": (0.3, 0.1, 0.6),
                               "num_warp": (5, 10)}
ILK_GRID: dict[str, tuple] = {"radius": (7, 2, 3, 5, 10, 14)}
TVL1_GRID_QUICK: dict[str, tuple] = {"attachment": (15.0, 5.0), "tightness": (0.3,), "num_warp": (5,)}
ILK_GRID_QUICK: dict[str, tuple] = {"radius": (7, 3)}


def flow_movie_seeds(quick: bool) -> list[int]:
    """Seeds of the held-out test movies of (c)."""
    return [FLOW_MOVIE_SEED0 + i for i in range(1 if quick else 4)]


def flow_tuning_set(seed: int, n_pairs: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame pairs drawn from the flow CNN's training distribution, for tuning the classical peers.

    Parameters
    ----------
    seed : int
        Seeds both the texture pool and the pair generator (as ``train_flow_simulated`` does).
    n_pairs, patch : int
        Number of pairs and their size (px).

    Returns
    -------
    movies : numpy.ndarray
        ``(n_pairs, 2, patch, patch)`` standardised noisy frames.
    flows : numpy.ndarray
        ``(n_pairs, 1, 2, patch, patch)`` true flows (px/frame, scikit-image convention).
    """
    gen = torch.Generator().manual_seed(seed)
    # 192² textures: the pool train_flow_simulated builds for its default 96² patches and amplitude 3.
    textures = fl._texture_pool(6, 192, seed)
    f0, f1, flow = fl.simulate_flow_batch(textures, n_pairs, patch, FLOW_AMPLITUDE, gen)
    return torch.cat([f0, f1], 1).numpy(), flow.numpy()[:, None]


def tune_classical(method: str, movies: np.ndarray, flows: np.ndarray, grid: dict[str, tuple],
                   default: dict) -> dict:
    """Grid-search a classical flow method's parameters by mean EPE on tuning pairs.

    Parameters
    ----------
    method : {"tvl1", "ilk"}
    movies, flows : numpy.ndarray
        Tuning pairs and their true flows (:func:`flow_tuning_set`).
    grid : dict
        Parameter → candidate values; the first value of every axis must be ``default``'s.
    default : dict
        scikit-image's default setting (kept when nothing beats it).

    Returns
    -------
    dict
        ``default``/``tuned`` settings with their tuning-set EPE (px) and the whole ``table``.
    """
    if {k: v[0] for k, v in grid.items()} != default:
        raise ValueError(f"the first value of each {method} grid axis must be the default {default}")
    fn = {"tvl1": fl.flow_tvl1, "ilk": fl.flow_ilk}[method]
    keys = list(grid)
    table = []
    for combo in itertools.product(*grid.values()):
        setting = dict(zip(keys, combo, strict=True))
        epe = [fl.endpoint_error(fn(m, **setting), f, FLOW_BORDER) for m, f in zip(movies, flows, strict=True)]
        table.append({**setting, "epe_px": float(np.mean(epe))})
    best = min(range(len(table)), key=lambda i: table[i]["epe_px"])  # first minimum: the default on ties
    return {"grid": {k: list(v) for k, v in grid.items()}, "default": default, "default_epe_px": table[0]["epe_px"],
            "tuned": {k: table[best][k] for k in keys}, "tuned_epe_px": table[best]["epe_px"], "table": table}


def _flow_case(label: str, movie: np.ndarray, flow: np.ndarray, truth: np.ndarray, e: float) -> Case:
    mag = np.sqrt((np.asarray(flow, np.float32) ** 2).sum(-3))  # (frames − 1, Y, X) flow magnitude
    tmag = np.sqrt((np.asarray(truth, np.float32) ** 2).sum(-3))
    mov = np.asarray(movie, np.float32)  # drawn in the |flow| display range of the row
    return Case(label, -e, {"recording (rescaled)": mov / max(float(mov.max()), 1e-9) * float(tmag.max()),
                            "result": mag, "reference": tmag}, {"epe_px": e})


def bench_flow(quick: bool, budget: float, train_seeds: list[int] | None = None,
               tune_seed: int = FLOW_TUNE_SEED) -> dict:
    """(c): TV-L1 and iLK at scikit-image defaults and tuned on training-distribution pairs vs the CNN.

    ``train_seeds`` are the CNN's training seeds (default [0]); each trains for ``budget`` seconds.
    """
    train_seeds = [0] if train_seeds is None else list(train_seeds)
    movie_seeds = flow_movie_seeds(quick)
    if tune_seed in movie_seeds:
        raise ValueError(f"the flow tuning seed {tune_seed} is a test-movie seed ({movie_seeds})")
    tmov, tflo = flow_tuning_set(tune_seed, 4 if quick else 16, 64 if quick else 96)
    DATA[f"flow_tuning_seed{tune_seed}_pairs"] = tmov
    t0 = time.perf_counter()
    tuning = {"tvl1": tune_classical("tvl1", tmov, tflo, TVL1_GRID_QUICK if quick else TVL1_GRID, TVL1_DEFAULT),
              "ilk": tune_classical("ilk", tmov, tflo, ILK_GRID_QUICK if quick else ILK_GRID, ILK_DEFAULT)}
    tuning.update({"seed": tune_seed, "pairs": len(tmov), "patch": int(tmov.shape[-1]), "seconds": time.perf_counter() - t0,
                   "distribution": f"fl.simulate_flow_batch (the CNN's training generator): amplitude {FLOW_AMPLITUDE}, "
                                   "photons log-uniform 3–300, bleaching 0–40 %; EPE over the interior (8 px border "
                                   "excluded)"})
    print({m: (tuning[m]["tuned"], tuning[m]["tuned_epe_px"], tuning[m]["default_epe_px"]) for m in ("tvl1", "ilk")},
          flush=True)
    nets, train_s, train_steps = {}, [], []
    for ts in train_seeds:
        torch.manual_seed(ts)
        t0 = time.perf_counter()
        nets[ts] = fl.train_flow_simulated(steps=100_000, budget_s=budget, seed=ts, cache=False)
        train_s.append(time.perf_counter() - t0)
        train_steps.append(int(nets[ts].trained_steps))
    classical = ("tvl1", "ilk", "tvl1_tuned", "ilk_tuned")
    res: dict[str, list[float]] = {k: [] for k in classical}
    per_seed: dict[str, dict[str, list[float]]] = {str(ts): {"cnn": [], "cnn+finetune": []} for ts in train_seeds}
    for seed in movie_seeds:
        sim = motion.advected_movie((96, 96) if quick else (128, 128), n_frames=3, photons=30.0, bleaching=0.1,
                                    seed=seed)
        truth = sim["flows"]
        DATA[f"flow_movie{seed}"] = np.asarray(sim["movie"])
        flows = {"tvl1": fl.flow_tvl1(sim["movie"]), "ilk": fl.flow_ilk(sim["movie"]),
                 "tvl1_tuned": fl.flow_tvl1(sim["movie"], **tuning["tvl1"]["tuned"]),
                 "ilk_tuned": fl.flow_ilk(sim["movie"], **tuning["ilk"]["tuned"])}
        for name, f in flows.items():
            e = fl.endpoint_error(f, truth, FLOW_BORDER)
            res[name].append(e)
            CASES.setdefault(name, []).append(_flow_case(f"movie {seed}", sim["movie"], f, truth, e))
        for ts, net in nets.items():
            ft = fl.finetune_unsupervised(fl.clone_net(net), sim["movie"], 10 if quick else 60, patch=64, seed=ts)
            for name, f in (("cnn", fl.cnn_flow(sim["movie"], net)), ("cnn+finetune", fl.cnn_flow(sim["movie"], ft))):
                e = fl.endpoint_error(f, truth, FLOW_BORDER)
                per_seed[str(ts)][name].append(e)
                label = f"movie {seed}" if len(train_seeds) == 1 else f"movie {seed}, CNN seed {ts}"
                CASES.setdefault(name.replace("+", "_"), []).append(_flow_case(label, sim["movie"], f, truth, e))
    for name in ("cnn", "cnn+finetune"):  # per movie: mean over training seeds
        res[name] = list(np.mean([per_seed[str(ts)][name] for ts in train_seeds], axis=0))
    out = {k: float(np.mean(v)) for k, v in res.items()}
    out["per_movie"] = {k: list(map(float, v)) for k, v in res.items()}
    out.update({"ratio_cnn_tvl1": out["cnn"] / out["tvl1"], "ratio_cnn_finetune_tvl1": out["cnn+finetune"] / out["tvl1"],
                "ratio_cnn_tvl1_tuned": out["cnn"] / out["tvl1_tuned"],
                "ratio_cnn_finetune_tvl1_tuned": out["cnn+finetune"] / out["tvl1_tuned"],
                "ratio_cnn_ilk_tuned": out["cnn"] / out["ilk_tuned"],
                "train_seconds": float(np.mean(train_s)), "train_steps": int(np.mean(train_steps)),
                "train_seeds": train_seeds, "train_steps_per_seed": train_steps, "movies": len(movie_seeds),
                "movie_seeds": movie_seeds, "tuning": tuning,
                "per_seed": {ts: {k: list(map(float, v)) for k, v in d.items()} for ts, d in per_seed.items()},
                "setting": "128² (quick: 96²), 3 frames, 30 photons at intensity 1, bleaching 10 %/frame, flow RMS 1.5 px "
                           "+ translation ≤ 1.5 px per frame; EPE over the interior (8 px border excluded)",
                "target": "CNN EPE ≤ 0.7 × TV-L1"})
    # The classical peers are deterministic: the spread over CNN training seeds is the only randomness left
    # (the 4 movies are fixed), so these are t-intervals over training seeds.
    for name in ("cnn", "cnn+finetune"):
        means = [float(np.mean(per_seed[str(ts)][name])) for ts in train_seeds]
        out[f"{name}_over_train_seeds_mean_ci95"] = mean_ci(means)
        out[f"ratio_{name.replace('+', '_')}_tvl1_tuned_over_train_seeds_mean_ci95"] = mean_ci(
            np.divide(means, out["tvl1_tuned"]))
    out["met"] = bool(min(out["ratio_cnn_tvl1"], out["ratio_cnn_finetune_tvl1"]) <= 0.7)
    out["met_vs_tuned_tvl1"] = bool(min(out["ratio_cnn_tvl1_tuned"], out["ratio_cnn_finetune_tvl1_tuned"]) <= 0.7)
    print(out, flush=True)
    return out


def bench_stabilize(quick: bool, budget: float) -> dict:
    s = motion.deformed_series(n_frames=3 if quick else 6, shape=(64, 64) if quick else (96, 96), amplitude=3.0,
                               smoothness=12, seed=0)
    DATA["stabilize_frames_seed0"] = np.asarray(s["frames"])
    truth = np.stack([motion.invert_field(f) for f in s["fields"]])

    def err(f: np.ndarray) -> float:
        b = 8
        return float(np.sqrt(((f - truth) ** 2).sum(1))[:, b:-b, b:-b].mean())

    t0 = time.perf_counter()
    a = stabilize(s["frames"], template=s["template"], model="affine")
    ta = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = stabilize(s["frames"], template=s["template"], model="deformable", steps=100_000, budget_s=budget)
    td = time.perf_counter() - t0
    out = {"affine_error_px": err(a["fields"]), "deformable_error_px": err(d["fields"]),
           "no_registration_error_px": err(0 * a["fields"]), "affine_seconds": ta, "deformable_seconds": td,
           "trained_steps": d["info"]["trained_steps"],
           "setting": f"{len(s['frames'])} frames {s['template'].shape}, affine (±3°, ±3 % scale, ±4 px) + smooth "
                      "deformation RMS 3 px (σ 12 px), 300 photons",
           "target": "deformable ≤ 0.5 × affine"}
    out["ratio"] = out["deformable_error_px"] / out["affine_error_px"]
    out["met"] = bool(out["ratio"] <= 0.5)
    print(out, flush=True)
    return out


def to_markdown(r: dict) -> str:
    lines = [f"# Geometry benchmark ({r['date']}, load average {r['load_before']} → {r['load_after']}, "
             f"{'quick' if r['quick'] else 'reduced'} run, shared machine)", ""]
    lines += ["## Stitching positions (simulated, known truth)", "", "| case | median err (px) | max err (px) | s | met |",
              "|---|---|---|---|---|"]
    for row in r["stitch"]:
        lines.append(f"| {row['case']} | {row['median_error_px']:.3f} | {row['max_error_px']:.3f} | "
                     f"{row['seconds_register']:.1f} | {row['met']} |")
    if r.get("real_texture"):
        rt = r["real_texture"]
        lines += ["", f"Real texture: {rt['case']}: max error {rt['max_error_px']:.3f} px."]
    m = r.get("memory")
    if m:
        lines += ["", "## Out-of-core fusion", "", f"`fluorecon stitch` of a {m['grid']} grid of {m['tile']} uint16 tiles "
                  f"→ OME-Zarr: peak RSS {m['peak_rss_mib']:.0f} MiB in {m['seconds']:.0f} s (mosaic "
                  f"{m['mosaic_shape']}, {m['mosaic_float32_mib']:.0f} MiB as float32; rc {m['rc']})."]
    for m2 in r.get("extra_memory", []):
        lines += [f"Second point: {m2['grid']} grid of {m2['tile']} tiles → peak RSS {m2['peak_rss_mib']:.0f} MiB in "
                  f"{m2['seconds']:.0f} s (mosaic {m2['mosaic_shape']}, {m2['mosaic_float32_mib']:.0f} MiB as float32)."]
    f = r["flow"]
    lines += ["", "## Optical flow (EPE, px)", ""]
    if "tvl1_tuned" in f:
        tu = f["tuning"]
        lines += ["| TV-L1 default | TV-L1 tuned | iLK default | iLK tuned | CNN | CNN + unsup. fine-tune | "
                  "CNN/TV-L1 default | CNN/TV-L1 tuned | met (default) | met (tuned) |", "|---|---|---|---|---|---|---|---|---|---|",
                  f"| {f['tvl1']:.3f} | {f['tvl1_tuned']:.3f} | {f['ilk']:.3f} | {f['ilk_tuned']:.3f} | {f['cnn']:.3f} | "
                  f"{f['cnn+finetune']:.3f} | {f['ratio_cnn_tvl1']:.2f} | {f['ratio_cnn_tvl1_tuned']:.2f} | {f['met']} | "
                  f"{f['met_vs_tuned_tvl1']} |", "",
                  f"Peers tuned on {tu['pairs']} pairs of {tu['patch']}² from {tu['distribution']} (seed {tu['seed']}; "
                  f"test movies {f['movie_seeds']}): TV-L1 {tu['tvl1']['tuned']} (tuning EPE {tu['tvl1']['tuned_epe_px']:.3f} "
                  f"vs default {tu['tvl1']['default_epe_px']:.3f}), iLK {tu['ilk']['tuned']} "
                  f"({tu['ilk']['tuned_epe_px']:.3f} vs {tu['ilk']['default_epe_px']:.3f}).",
                  f"CNN training seeds {f['train_seeds']}, {f['train_steps']} steps (mean) in {f['train_seconds']:.0f} s each "
                  f"on simulated flows; CNN EPE mean ± 95 % t-interval over training seeds: "
                  f"{f['cnn_over_train_seeds_mean_ci95']['mean']:.3f} {f['cnn_over_train_seeds_mean_ci95']['ci95']}. "
                  f"{f['setting']}."]
    else:  # a JSON written before the peers were tuned
        lines += ["| TV-L1 | iLK | CNN | CNN + unsup. fine-tune | CNN/TV-L1 | met |", "|---|---|---|---|---|---|",
                  f"| {f['tvl1']:.3f} | {f['ilk']:.3f} | {f['cnn']:.3f} | {f['cnn+finetune']:.3f} | "
                  f"{f['ratio_cnn_tvl1']:.2f} | {f['met']} |", "",
                  f"CNN trained {f['train_steps']} steps in {f['train_seconds']:.0f} s on simulated flows. {f['setting']}."]
    s = r["stabilize"]
    lines += ["", "## Deformable stabilization (residual misalignment, px)", "",
              "| none | affine | affine + deformable | ratio | met |", "|---|---|---|---|---|",
              f"| {s['no_registration_error_px']:.3f} | {s['affine_error_px']:.3f} | {s['deformable_error_px']:.3f} | "
              f"{s['ratio']:.2f} | {s['met']} |", "", f"{s['setting']}; {s['trained_steps']} training steps."]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


def _record(r: dict, a: argparse.Namespace, seeds: list[int], command: list[str], t_start: float,
            figures: Path, flow_seeds: list[int] | None = None) -> dict:
    """Add the galleries of this run and its provenance record to ``r``."""
    if CASES:
        r["galleries"] = {m: {"path": str(figures / f"geometry_worst_{m}.png"),
                              "cases": save_gallery(cs, figures / f"geometry_worst_{m}.png",
                                                    f"geometry.py flow: {m}, worst 3 movies by EPE (score = −EPE, px); "
                                                    "panels: movie, |flow| result and truth"),
                              "scores": {c.label: c.score for c in cs}}
                          for m, cs in CASES.items()}
    params = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "seeds": seeds,
              "fixed_seeds": {"flow_training": flow_seeds if flow_seeds is not None else [0],
                              "flow_movies": flow_movie_seeds(a.quick), "flow_tuning": a.flow_tune_seed,
                              "stabilize_series": 0, "big_grid": 1}}
    prov = provenance(seeds=seeds, data=DATA, params=params, argv=command)
    prov["date_utc"] = r.get("date", prov["date_utc"])
    prov["load_average_start"] = r.get("load_before", prov["load_average_start"])
    r["provenance"] = finish(prov, t_start)
    return r


def _seed_list(ap: argparse.ArgumentParser, flag: str, values: list[str] | None, default: list[int]) -> list[int]:
    """Parse '0 1 2' or '0,1,2' into distinct integers (exit 2 with a clear message otherwise)."""
    if values is None:
        return default
    try:
        out = [int(v) for v in ",".join(values).split(",") if v.strip()]
    except ValueError:
        ap.error(f"{flag} takes integers, e.g. '{flag} 0 1 2'; got {' '.join(values)!r}")
    if not out or len(set(out)) != len(out):
        ap.error(f"{flag} needs distinct integers")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--flow-budget", type=float, default=None, help="flow CNN training seconds (150; --quick: 10)")
    ap.add_argument("--deform-budget", type=float, default=None, help="deformable training seconds (90; --quick: 5)")
    ap.add_argument("--memory-grid", type=int, default=4)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "geometry.json",
                    help="JSON of the main run (the --peers/--memory-only/--flow-only files go beside it)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="gallery folder (default benchmarks/figures; with a non-default --out: figures/ beside it)")
    ap.add_argument("--peers", action="store_true", help="only the stitching peers (→ geometry_peers.json)")
    ap.add_argument("--memory-only", action="store_true", help="only the out-of-core memory point (→ geometry_memory.json)")
    ap.add_argument("--seeds", nargs="+", default=None,
                    help="simulated tilings of (a) and (e): '0 1 2' or '0,1,2' (default 0 1 2; --quick: 0)")
    ap.add_argument("--flow-only", action="store_true", help="only optical flow (→ geometry_flow.json)")
    ap.add_argument("--flow-seeds", nargs="+", default=None,
                    help="training seeds of the flow CNN, one net per seed (default 0 1 2; --quick: 0)")
    ap.add_argument("--flow-tune-seed", type=int, default=FLOW_TUNE_SEED,
                    help=f"seed of the training-distribution pairs TV-L1/iLK are tuned on (default {FLOW_TUNE_SEED}; "
                         f"must differ from the test movies {FLOW_MOVIE_SEED0}+i)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the reduced run used 1)")
    a = ap.parse_args(argv)
    seeds = _seed_list(ap, "--seeds", a.seeds, [0] if a.quick and not a.peers else [0, 1, 2])
    flow_seeds = _seed_list(ap, "--flow-seeds", a.flow_seeds, [0] if a.quick else [0, 1, 2])
    if a.flow_tune_seed in flow_movie_seeds(a.quick):
        ap.error(f"--flow-tune-seed {a.flow_tune_seed} is a test-movie seed {flow_movie_seeds(a.quick)}: "
                 "the peers must be tuned on other data")
    flow_budget = a.flow_budget if a.flow_budget is not None else 10.0 if a.quick else 150.0
    deform_budget = a.deform_budget if a.deform_budget is not None else 5.0 if a.quick else 90.0
    out_dir = a.out.resolve().parent
    figures = a.figures or (HERE / "figures" if a.out.resolve() == HERE / "geometry.json" else out_dir / "figures")
    DATA.clear()
    CASES.clear()
    t_start = time.time()
    command = [__file__, *(sys.argv[1:] if argv is None else argv)]
    torch.set_num_threads(a.threads)
    if a.flow_only:
        r = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "load_before": [round(v, 2) for v in os.getloadavg()], "command": " ".join(sys.argv),
             "flow": bench_flow(a.quick, flow_budget, flow_seeds, a.flow_tune_seed),
             "load_after": [round(v, 2) for v in os.getloadavg()]}
        (out_dir / "geometry_flow.json").write_text(json.dumps(_record(r, a, seeds, command, t_start, figures, flow_seeds),
                                                               indent=2))
        return
    if a.peers or a.memory_only:
        r = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "load_before": [round(v, 2) for v in os.getloadavg()], "command": " ".join(sys.argv)}
        if a.peers:
            r["peers"] = bench_stitch_peers(seeds)
            name = "geometry_peers.json"
        else:
            r["memory"] = bench_memory(a.memory_grid, 1024)
            name = "geometry_memory.json"
        r["load_after"] = [round(v, 2) for v in os.getloadavg()]
        _record(r, a, seeds, command, t_start, figures)
        (out_dir / name).write_text(json.dumps(r, indent=2))
        print(json.dumps(r, indent=2))
        return
    r: dict = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "quick": a.quick,
               "load_before": [round(v, 1) for v in os.getloadavg()]}
    r["stitch"] = bench_stitch(a.quick, seeds)
    r["real_texture"] = bench_real_texture()
    if not a.skip_memory:
        r["memory"] = bench_memory(2 if a.quick else a.memory_grid, 256 if a.quick else 1024)
        print(r["memory"], flush=True)
    r["flow"] = bench_flow(a.quick, flow_budget, flow_seeds, a.flow_tune_seed)
    r["stabilize"] = bench_stabilize(a.quick, deform_budget)
    r["load_after"] = [round(v, 1) for v in os.getloadavg()]
    r["self_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _record(r, a, seeds, command, t_start, figures, flow_seeds)
    a.out.write_text(json.dumps(r, indent=2))
    md = to_markdown(r)
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
