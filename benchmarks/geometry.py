"""Geometry benchmark: stitching accuracy and memory, optical flow EPE, deformable stabilization.

Run:  .venv/bin/python benchmarks/geometry.py            (reduced defaults, ~10 min on 2 contended cores)
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
  seconds. Target: CNN EPE ≤ 0.7 × TV-L1.
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
training seed (0), the movies (100+i) and the stabilization series (0) are fixed. (a) and (e) report
per-seed errors with mean and a 95 % t-interval, (e) also the paired difference peer − ours per seed.
Failure cases: (c) draws each method's three movies with the largest EPE (flow magnitude: result vs truth)
to ``figures/geometry_worst_<method>.png`` (``figures/`` beside a non-default ``--out``), listed under
``galleries``; stitching cases are positions, not images (their per-seed errors are in the JSON).
"""

from __future__ import annotations

import argparse
import datetime
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


def bench_flow(quick: bool, budget: float) -> dict:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    net = fl.train_flow_simulated(steps=100_000, budget_s=budget, seed=0, cache=False)
    train_s = time.perf_counter() - t0
    res: dict[str, list[float]] = {"tvl1": [], "ilk": [], "cnn": [], "cnn+finetune": []}
    n = 1 if quick else 4
    for seed in range(n):
        sim = motion.advected_movie((96, 96) if quick else (128, 128), n_frames=3, photons=30.0, bleaching=0.1,
                                    seed=100 + seed)
        truth = sim["flows"]
        DATA[f"flow_movie{100 + seed}"] = np.asarray(sim["movie"])
        ft = fl.finetune_unsupervised(fl.clone_net(net), sim["movie"], 10 if quick else 60, patch=64)
        for name, f in (("tvl1", fl.flow_tvl1(sim["movie"])), ("ilk", fl.flow_ilk(sim["movie"])),
                        ("cnn", fl.cnn_flow(sim["movie"], net)), ("cnn+finetune", fl.cnn_flow(sim["movie"], ft))):
            e = fl.endpoint_error(f, truth, 8)
            res[name].append(e)
            mag = np.sqrt((np.asarray(f, np.float32) ** 2).sum(-3))  # (frames − 1, Y, X) flow magnitude
            tmag = np.sqrt((np.asarray(truth, np.float32) ** 2).sum(-3))
            mov = np.asarray(sim["movie"], np.float32)  # drawn in the |flow| display range of the row
            CASES.setdefault(name.replace("+", "_"), []).append(Case(
                f"movie {100 + seed}", -e, {"recording (rescaled)": mov / max(float(mov.max()), 1e-9) * float(tmag.max()),
                                            "result": mag, "reference": tmag}, {"epe_px": e}))
    out = {k: float(np.mean(v)) for k, v in res.items()}
    out["per_movie"] = {k: list(map(float, v)) for k, v in res.items()}
    out.update({"ratio_cnn_tvl1": out["cnn"] / out["tvl1"], "ratio_cnn_finetune_tvl1": out["cnn+finetune"] / out["tvl1"],
                "train_seconds": train_s, "train_steps": int(net.trained_steps), "movies": n,
                "setting": "128² (quick: 96²), 3 frames, 30 photons at intensity 1, bleaching 10 %/frame, flow RMS 1.5 px "
                           "+ translation ≤ 1.5 px per frame; EPE over the interior (8 px border excluded)",
                "target": "CNN EPE ≤ 0.7 × TV-L1"})
    out["met"] = bool(min(out["ratio_cnn_tvl1"], out["ratio_cnn_finetune_tvl1"]) <= 0.7)
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
    lines += ["", "## Optical flow (EPE, px)", "", "| TV-L1 | iLK | CNN | CNN + unsup. fine-tune | CNN/TV-L1 | met |",
              "|---|---|---|---|---|---|",
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
            figures: Path) -> dict:
    """Add the galleries of this run and its provenance record to ``r``."""
    if CASES:
        r["galleries"] = {m: {"path": str(figures / f"geometry_worst_{m}.png"),
                              "cases": save_gallery(cs, figures / f"geometry_worst_{m}.png",
                                                    f"geometry.py flow: {m}, worst 3 movies by EPE (score = −EPE, px); "
                                                    "panels: movie, |flow| result and truth"),
                              "scores": {c.label: c.score for c in cs}}
                          for m, cs in CASES.items()}
    params = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "seeds": seeds,
              "fixed_seeds": {"flow_training": 0, "flow_movies": "100+i", "stabilize_series": 0, "big_grid": 1}}
    prov = provenance(seeds=seeds, data=DATA, params=params, argv=command)
    prov["date_utc"] = r.get("date", prov["date_utc"])
    prov["load_average_start"] = r.get("load_before", prov["load_average_start"])
    r["provenance"] = finish(prov, t_start)
    return r


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
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the reduced run used 1)")
    a = ap.parse_args(argv)
    try:
        seeds = ([0] if a.quick and not a.peers else [0, 1, 2]) if a.seeds is None else \
            [int(v) for v in ",".join(a.seeds).split(",") if v.strip()]
    except ValueError:
        ap.error(f"--seeds takes integers, e.g. '--seeds 0 1 2'; got {' '.join(a.seeds)!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        ap.error("--seeds needs distinct integers")
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
             "flow": bench_flow(a.quick, flow_budget), "load_after": [round(v, 2) for v in os.getloadavg()]}
        (out_dir / "geometry_flow.json").write_text(json.dumps(_record(r, a, seeds, command, t_start, figures), indent=2))
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
    r["flow"] = bench_flow(a.quick, flow_budget)
    r["stabilize"] = bench_stabilize(a.quick, deform_budget)
    r["load_after"] = [round(v, 1) for v in os.getloadavg()]
    r["self_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _record(r, a, seeds, command, t_start, figures)
    a.out.write_text(json.dumps(r, indent=2))
    md = to_markdown(r)
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
