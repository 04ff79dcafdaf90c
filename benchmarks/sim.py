"""SIM benchmark: parameter estimation and reconstruction on simulations with known truth, pyfairsim side by
side, and the real 3D-SIM data's pattern against its acquisition config.

Run: ``.venv/bin/python benchmarks/sim.py [--quick] [--seeds 0 1 2] [--learned-budget 600]``. Prints a
table, writes ``benchmarks/sim.json``. The peer runs in its own venv (``--pyfairsim PYTHON``, default
``/tmp/venv-fairsim/bin/python``; skipped with a note when absent).

Data. Simulations: 512² fine-grid phantoms (filaments, puncta, membranes; seeds given) imaged as 2D-SIM
(3 angles × 3 phases, k = 0.85 of the OTF cut-off, phase jitter 0.05 rad) at NA 1.3, λ 0.52 µm, raw
pixels 65 nm, photons per pixel at signal 1 in {20, 100, 1000}, modulation in {0.5, 0.8}. Nothing was
tuned on these scenes: the Wiener parameter (0.05) is fairSIM's usual value; the learned network is
trained on its own simulated structures (other seeds), never on the scenes reported here. Quality:
PSNR/SSIM against the truth after the *same* least-squares gain/offset for every method (units differ);
resolution: FRC (1/7) against the truth, relative to the widefield OTF cut-off.

Reproducibility: the JSON holds a ``provenance`` record (command, code hash, every simulated truth and the real
raw file by hash, seeds, all parameters, machine, load), ``summary["per_seed"]`` (per-seed means, their mean
with a 95 % t-interval, and the paired per-seed differences against the peers), and ``galleries``: the three
lowest-PSNR scenes of every method as ``<figures>/sim_worst_<method>.png`` (``--figures``). Learned − classical:
``<name>_minus_ours_<metric>_at_<photons>`` (per scene) and ``..._per_network`` (per network × scene) count every
modulation of a truth as a scene of its own; ``..._units`` (:func:`crossed_ci`) is the interval to quote: truth
seeds (their scenes averaged) crossed with the networks' training seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats
from skimage.metrics import structural_similarity

from fluorecon.classical.sim import estimate_parameters, reconstruct_sim, wiener_widefield
from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import frc, psnr
from fluorecon.io import read_image
from fluorecon.learn.sim_net import predict_sim, train_sim_correction, train_sim_net
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMPattern, simulate_sim
from fluorecon.tasks.registry import get

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _gallery import Case, save_gallery, worst  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

METHODS = ("widefield", "ours", "ours_true_pattern", "learned", "learned_physics", "pyfairsim")
DX, NA, LAM = 0.065, 1.3, 0.52
KC = 2 * NA / LAM * DX


def _affine(a: np.ndarray, truth: np.ndarray) -> np.ndarray:
    design = np.stack([a.ravel(), np.ones(a.size)], 1)
    c = np.linalg.lstsq(design, truth.ravel(), rcond=None)[0]
    return a * c[0] + c[1]


def _scores(img: np.ndarray, truth: np.ndarray, wf_cut: float) -> dict:
    a = _affine(img, truth)
    return {"psnr": float(psnr(a, truth, 1.0)), "ssim": float(structural_similarity(a, truth, data_range=1.0)),
            "frc_cutoff_ratio": float(frc(img, truth).cutoff / wf_cut)}


def _centre_phase_errors(est: SIMPattern, true: SIMPattern, n: int) -> list[float]:
    """|phase error| of every frame at the image centre (a wave-vector error δk turns the phase at the
    corner by 2π δk·r without changing the pattern where the image is)."""
    c = np.array([n / 2, n / 2])

    def at_c(p: SIMPattern) -> np.ndarray:
        return p.phases + 2 * np.pi * (p.k @ c)[:, None]

    return np.abs(np.angle(np.exp(1j * (at_c(est) - at_c(true))))).ravel().tolist()


def _peer_k_error(k_px: list, true: SIMPattern, n: int) -> float:
    """pyfairsim reports (px, py) = (kx, ky)·n up to the sign of the pair; the worst angle's error in FFT px."""
    got = np.asarray(k_px, np.float64)
    want = true.k[:, ::-1] * n
    return float(max(min(np.abs(g - w).max(), np.abs(g + w).max()) for g, w in zip(got, want, strict=True)))


def _pyfairsim(python: str, raw: np.ndarray) -> dict | None:
    if not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "in.npz", Path(d) / "out.npz"
        np.savez(inp, raw=raw, pixel_nm=DX * 1000, na=NA, wavelength_nm=LAM * 1000, angles=3, phases=3, wiener=0.05)
        r = subprocess.run([python, str(HERE / "peers" / "pyfairsim_run.py"), str(inp), str(out)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            return {"error": r.stderr[-500:]}
        res = np.load(out)
        return {"image": res["image"], "seconds": float(res["seconds"]), "k_px": res["k"].tolist()}


def per_seed_summary(rows: list[dict]) -> dict:
    """Per seed: each method's mean PSNR/SSIM over the nominal scenes; across seeds: mean, 95 % CI and the paired
    per-seed differences ours − widefield, ours − pyfairsim and learned − ours (seeds are the independent units)."""
    nominal = [r for r in rows if "ours" in r and not r["distorted"]]
    seeds = sorted({r["seed"] for r in nominal})
    per: dict = {}
    for s in seeds:
        at = [r for r in nominal if r["seed"] == s]
        per[str(s)] = {m: {k: float(np.mean([r[m][k] for r in at])) for k in ("psnr", "ssim")}
                       for m in METHODS if all(m in r and "psnr" in r[m] for r in at)}
    out: dict = {"seeds": seeds, "per_seed": per, "mean_ci": {}, "paired": {}}
    for m in METHODS:
        if seeds and all(m in per[str(s)] for s in seeds):
            out["mean_ci"][m] = {k: mean_ci([per[str(s)][m][k] for s in seeds]) for k in ("psnr", "ssim")}
    for a, b in (("ours", "widefield"), ("ours", "pyfairsim"), ("learned", "ours"), ("learned_physics", "ours")):
        if a in out["mean_ci"] and b in out["mean_ci"]:
            out["paired"][f"{a}_minus_{b}"] = {k: mean_ci([per[str(s)][a][k] - per[str(s)][b][k] for s in seeds])
                                               for k in ("psnr", "ssim")}
    return out


def _keep_worst(cases: dict | None, method: str, case: Case, n: int = 3) -> None:
    """Keep only the ``n`` worst cases per method: the full run has 60+ scenes of 512² images."""
    if cases is not None:
        cases[method] = worst([*cases.get(method, []), case], n)


def _paired(diffs: list[float], seed: int = 0) -> dict:
    """Mean paired difference with a bootstrap 95 % CI (10,000 resamples, seeded) and a t-interval."""
    d = np.asarray(diffs, np.float64)
    rng = np.random.default_rng(seed)
    boot = rng.choice(d, (10000, d.size)).mean(axis=1)
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"n": int(d.size), "mean": float(d.mean()), "boot_ci95": np.percentile(boot, [2.5, 97.5]).tolist(),
            "t_ci95": [float(d.mean() - half), float(d.mean() + half)], "positive": int((d > 0).sum())}


def unit_diffs(rows: list[dict], name: str, metric: str) -> tuple[list[int], np.ndarray]:
    """Paired differences ``name − ours`` at the level of the independent units: a ``(truth seeds, networks)`` table.

    A truth seed's scenes (its modulations and phantom kinds: the same structures imaged again) are averaged;
    each network (training seed, ``<name>_per_seed``) keeps its own column.

    Parameters
    ----------
    rows : list of dict
        Scene rows of one group and photon level, each with ``seed``, ``ours`` and ``<name>_per_seed``.
    name, metric : str
        The learned method (``learned``, ``learned_physics``) and ``psnr`` or ``ssim``.

    Returns
    -------
    seeds : list of int
        The truth seeds, the table's row order.
    diffs : ndarray (T, N)
    """
    seeds = sorted({r["seed"] for r in rows})
    table = [np.mean([[p[metric] - r["ours"][metric] for p in r[f"{name}_per_seed"]] for r in rows
                      if r["seed"] == s], axis=0) for s in seeds]
    return seeds, np.asarray(table, np.float64)


def crossed_ci(diffs: np.ndarray) -> dict:
    """Mean of a ``(truths × networks)`` table of paired differences with 95 % t-intervals over independent units.

    ``truths``: t-interval over the truth means (networks averaged: ignores which networks were trained);
    ``networks``: over the network means; ``crossed``: both sources at once, standard error
    ``√(s²_truth/T + s²_net/N)`` (s² of the row / column means; conservative, it counts the interaction twice)
    with Welch–Satterthwaite degrees of freedom — the interval to quote. With one network it is ``truths``,
    with one truth ``networks``; ``None`` when neither has two units.

    Examples
    --------
    >>> r = crossed_ci(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> r["mean"], r["positive_truths"], round(r["crossed"]["df"], 3)     # df = 1.25² / (1²/1 + 0.25²/1)
    (2.5, 2, 1.471)
    """
    d = np.asarray(diffs, np.float64)
    if d.ndim != 2 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"diffs must be a finite, non-empty (truths, networks) table, got shape {d.shape}")
    n_t, n_n = d.shape
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    out = {"n_truths": n_t, "n_networks": n_n, "mean": float(d.mean()), "truths": mean_ci(rows),
           "networks": mean_ci(cols), "positive_truths": int((rows > 0).sum()),
           "positive_networks": int((cols > 0).sum()), "positive_cells": int((d > 0).sum()), "crossed": None}
    parts = [(float(v.var(ddof=1)) / v.size, v.size - 1) for v in (rows, cols) if v.size > 1]
    if parts:
        var = sum(p for p, _ in parts)
        # Welch–Satterthwaite: the degrees of freedom of a sum of independent variance estimates
        df = var**2 / sum(p**2 / k for p, k in parts) if var > 0 else float("inf")
        half = float(stats.t.ppf(0.975, df) * np.sqrt(var)) if var > 0 else 0.0
        out["crossed"] = {"se": float(np.sqrt(var)), "df": float(df),
                          "ci95": [float(d.mean() - half), float(d.mean() + half)]}
    return out


def simulations(seeds: list[int], quick: bool, peer: str, learned_budget: float, learned_seeds: list[int],
                photons: tuple[float, ...] | None = None, mods: tuple[float, ...] | None = None,
                correction_budget: float = 0.0, worst_cases: dict | None = None,
                truths: dict | None = None) -> list[dict]:
    """The simulated scenes; ``worst_cases`` collects each method's worst scenes, ``truths`` the truths."""
    size = 256 if quick else 512
    if photons is None:
        photons = (100.0,) if quick else (20.0, 100.0, 1000.0)
    if mods is None:
        mods = (0.8,) if quick else (0.5, 0.8)
    kinds = ("filaments",) if quick else ("filaments", "puncta", "membranes")
    models = []
    tinfos = []
    for ls in learned_seeds if learned_budget > 0 else []:
        # Trained on its own simulations (other structures and seeds), never on the scenes below.
        model, tinfo = train_sim_net(n_angles=3, n_phases=3, pixel_size=DX, na=NA, wavelength=LAM,
                                     steps=None, budget_s=learned_budget, seed=ls)
        models.append(model)
        tinfos.append(tinfo)
    corrections = []
    for ls in learned_seeds if correction_budget > 0 else []:
        # Physics-informed: the classical reconstruction is an input, the network learns a correction;
        # the budget is process CPU time (comparable under load), trained on its own simulations.
        model, tinfo = train_sim_correction(n_angles=3, n_phases=3, pixel_size=DX, na=NA, wavelength=LAM,
                                            steps=None, budget_s=correction_budget, cpu_budget=True, seed=ls)
        corrections.append(model)
        tinfos.append({"kind": "correction", **tinfo})
        print(json.dumps({"trained_correction": ls, "steps": tinfo["steps"], "cpu_s": tinfo["seconds"],
                          "load": os.getloadavg()[0]}), flush=True)
    rows = []
    for seed in seeds:
        for kind in kinds:
            truth = np.asarray(phantoms.phantom(kind, (size, size), seed=seed), np.float64)
            if truths is not None:
                truths[f"truth_seed{seed}_{kind}"] = truth
            # The nominal cases, and one distorted pattern per scene: strong phase jitter (0.3 rad) and
            # uneven contrast between the angles (1, 0.6, 0.3), where classical estimation is strained.
            cases = [(ph, m, False) for ph in photons for m in mods] + [(min(photons), 0.8, True)]
            for ph, m, distorted in cases:
                rng = np.random.default_rng([seed, int(ph), int(100 * m), int(distorted)])
                pat = SIMPattern.regular(3, 3, k=0.85 * KC, modulation=m, angle0=float(rng.uniform(0, np.pi)),
                                         phase0=float(rng.uniform(0, 6.28)))
                cam = Camera(photons=ph, gain=1.0, offset=0.0, read_noise=1.0)
                raw, info = simulate_sim(truth, pat, pixel_size=DX, na=NA, wavelength=LAM, camera=cam, seed=rng,
                                         phase_jitter=0.3 if distorted else 0.05,
                                         contrast=(1.0, 0.6, 0.3) if distorted else None)
                true = SIMPattern.from_dict(info["pattern"])
                n = raw.shape[-1]
                t0, c0 = time.perf_counter(), time.process_time()
                est = estimate_parameters(raw, 3, 3, pixel_size=DX, na=NA, wavelength=LAM)
                t1, c1 = time.perf_counter(), time.process_time()
                rec, _ = reconstruct_sim(raw, est, pixel_size=DX, na=NA, wavelength=LAM, wiener=0.05)
                t2, c2 = time.perf_counter(), time.process_time()
                rec_true, _ = reconstruct_sim(raw, true, pixel_size=DX, na=NA, wavelength=LAM, wiener=0.05)
                wf = wiener_widefield(raw, pixel_size=DX, na=NA, wavelength=LAM, wiener=0.05)
                wf_cut = frc(wf, truth).cutoff
                perr = _centre_phase_errors(est, true, n)
                row = {"seed": seed, "kind": kind, "photons": ph, "modulation": m, "distorted": distorted,
                       "size": size, "k_error_px": float(np.abs(est.k - true.k).max() * n),
                       "phase_errors_centre_rad": perr, "phase_error_centre_rad": max(perr),
                       "modulation_est": est.modulation.tolist(), "modulation_true": true.modulation.tolist(),
                       "ours_estimate_s": round(t1 - t0, 3), "ours_reconstruct_s": round(t2 - t1, 3),
                       "ours_estimate_cpu_s": round(c1 - c0, 3), "ours_reconstruct_cpu_s": round(c2 - c1, 3),
                       "load": os.getloadavg()[0],
                       "widefield": _scores(wf, truth, wf_cut), "ours": _scores(rec, truth, wf_cut),
                       "ours_true_pattern": _scores(rec_true, truth, wf_cut)}
                if models:
                    per = [_scores(predict_sim(mod, raw), truth, wf_cut) for mod in models]
                    row["learned"] = {key: float(np.mean([p[key] for p in per])) for key in per[0]}
                    row["learned_per_seed"] = per
                if corrections:
                    per = [_scores(predict_sim(mod, raw), truth, wf_cut) for mod in corrections]
                    row["learned_physics"] = {key: float(np.mean([p[key] for p in per])) for key in per[0]}
                    row["learned_physics_per_seed"] = per
                res = _pyfairsim(peer, raw) if peer else None
                if res is not None and "image" in res:
                    row["pyfairsim"] = {**_scores(res["image"], truth, wf_cut), "seconds": res["seconds"],
                                        "k_error_px": _peer_k_error(res["k_px"], true, n)}
                elif res is not None:
                    row["pyfairsim"] = {"error": res["error"]}
                label = f"seed {seed} {kind} {ph:g} ph m {m:g}" + (" distorted" if distorted else "")
                images = {"widefield": (wf, row["widefield"]["psnr"]), "ours": (rec, row["ours"]["psnr"]),
                          "ours_true_pattern": (rec_true, row["ours_true_pattern"]["psnr"])}
                # learned rows average several networks: the gallery shows (and scores) the first network
                if models:
                    images["learned"] = (predict_sim(models[0], raw), row["learned_per_seed"][0]["psnr"])
                if corrections:
                    images["learned_physics"] = (predict_sim(corrections[0], raw),
                                                 row["learned_physics_per_seed"][0]["psnr"])
                if res is not None and "image" in res:
                    images["pyfairsim"] = (res["image"], row["pyfairsim"]["psnr"])
                wf_fit = _affine(wf, truth).astype(np.float32)
                for name, (img, score) in images.items():
                    # panels after the same gain/offset fit as the scores (units differ between methods)
                    _keep_worst(worst_cases, name, Case(label, score, {
                        "widefield": wf_fit, "result": _affine(img, truth).astype(np.float32),
                        "reference": truth.astype(np.float32)}, {"seed": seed, "kind": kind, "photons": ph,
                                                                 "modulation": m, "distorted": distorted}))
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("modulation_est", "phase_errors_centre_rad",
                                                                            "learned_per_seed",
                                                                            "learned_physics_per_seed")}), flush=True)
    return rows if not tinfos else [*rows, {"learned_training": tinfos}]


def real_data() -> dict:
    folder = shared_data("cudasirecon-3dsim-raw")
    if folder is None:
        return {"skipped": "cudasirecon-3dsim-raw not found"}
    img = read_image(folder / "raw.tif")
    cfg = dict(line.split("=", 1) for line in (folder / "config-tiff").read_text().split() if "=" in line)
    t0 = time.perf_counter()
    res = get("sim")(img.data.astype(np.float32) * 1e4, axes="ZYX", voxel_size=(0.125, 0.08, 0.08), angles=3,
                     phases=5, order="azp", na=float(cfg["na"]), wavelength=0.528)
    est = res.params_used["estimate"]
    return {"seconds": round(time.perf_counter() - t0, 2), "line_spacing_um": est["line_spacing_um"],
            "config_line_spacing_um": float(cfg["ls"]), "angle_rad": est["angle_rad"],
            "config_k0angles": [float(a) for a in cfg["k0angles"].split(",")],
            "modulation": res.params_used["pattern"]["modulation"],
            "sha256_raw": hashlib.sha256((folder / "raw.tif").read_bytes()).hexdigest()}


def summarise(simulations: list[dict]) -> dict:
    """The run's summary from its scene rows: means per method, paired learned − classical differences (per scene,
    per network × scene, and over the independent units: truth seeds crossed with training seeds), estimation
    errors, timings and per-seed means. Pure: ``--summarise JSON`` recomputes it from a stored run."""
    sims = [r for r in simulations if "ours" in r]
    summary = {}
    for group, rows in (("nominal", [r for r in sims if not r["distorted"]]),
                        ("distorted", [r for r in sims if r["distorted"]])):
        g: dict = {}
        for name in ("widefield", "ours", "ours_true_pattern", "learned", "learned_physics", "pyfairsim"):
            have = [r[name] for r in rows if name in r and "psnr" in r[name]]
            if have:
                g[name] = {"n": len(have), **{f"{key}_mean": float(np.mean([h[key] for h in have]))
                                              for key in ("psnr", "ssim", "frc_cutoff_ratio")}}
        for ph in sorted({r["photons"] for r in rows}):
            at = [r for r in rows if r["photons"] == ph]
            g[f"frc_ratio_ours_at_{int(ph)}"] = float(np.mean([r["ours"]["frc_cutoff_ratio"] for r in at]))
            g[f"frc_ratio_true_pattern_at_{int(ph)}"] = float(np.mean([r["ours_true_pattern"]["frc_cutoff_ratio"]
                                                                       for r in at]))
        for name in ("learned", "learned_physics"):
            for ph in sorted({r["photons"] for r in rows}):
                at = [r for r in rows if r["photons"] == ph and name in r]
                if not at:
                    continue
                for metric in ("psnr", "ssim"):
                    # Per scene (mean of the networks) and per network × scene, paired with the classical.
                    g[f"{name}_minus_ours_{metric}_at_{int(ph)}"] = _paired([r[name][metric] - r["ours"][metric]
                                                                             for r in at])
                    g[f"{name}_minus_ours_{metric}_at_{int(ph)}_per_network"] = _paired(
                        [p[metric] - r["ours"][metric] for r in at for p in r[f"{name}_per_seed"]])
                    # The two above treat scenes of one truth (and networks × scenes) as independent; this is
                    # over the independent units: truth seeds (scenes averaged) crossed with training seeds.
                    unit_seeds, table = unit_diffs(at, name, metric)
                    g[f"{name}_minus_ours_{metric}_at_{int(ph)}_units"] = {"truth_seeds": unit_seeds,
                                                                          **crossed_ci(table)}
        for ph in sorted({r["photons"] for r in rows}):
            for m in sorted({r["modulation"] for r in rows}):
                at = [r for r in rows if r["photons"] == ph and r["modulation"] == m]
                if at:
                    e = np.concatenate([r["phase_errors_centre_rad"] for r in at])
                    g[f"estimation_at_{int(ph)}_m{m}"] = {
                        "phase_rms": float(np.sqrt(np.mean(e**2))), "phase_p95": float(np.percentile(e, 95)),
                        "phase_max": float(e.max()), "k_error_px_max": max(r["k_error_px"] for r in at),
                        "frames": int(e.size)}
        if rows:
            errs = np.concatenate([r["phase_errors_centre_rad"] for r in rows])
            g["k_error_px_max"] = max(r["k_error_px"] for r in rows)
            g["phase_error_rad"] = {"rms": float(np.sqrt(np.mean(errs**2))), "median": float(np.median(errs)),
                                    "p95": float(np.percentile(errs, 95)), "max": float(errs.max()),
                                    "frames": int(errs.size)}
        summary[group] = g
    nominal = [r for r in sims if not r["distorted"]]
    summary["ours_total_cpu_s_median"] = float(np.median([r["ours_estimate_cpu_s"] + r["ours_reconstruct_cpu_s"]
                                                          for r in nominal]))
    summary["ours_total_s_median"] = float(np.median([r["ours_estimate_s"] + r["ours_reconstruct_s"] for r in nominal]))
    peer_t = [r["pyfairsim"]["seconds"] for r in nominal if "pyfairsim" in r and "seconds" in r["pyfairsim"]]
    if peer_t:
        summary["pyfairsim_total_s_median"] = float(np.median(peer_t))
        summary["pyfairsim_k_error_px_max"] = max(r["pyfairsim"]["k_error_px"] for r in nominal if "pyfairsim" in r
                                                  and "k_error_px" in r["pyfairsim"])
    summary["per_seed"] = per_seed_summary(sims)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pyfairsim", default="/tmp/venv-fairsim/bin/python")
    ap.add_argument("--learned-budget", type=float, default=0.0,
                    help="seconds of training per learned model (0: skip)")
    ap.add_argument("--correction-budget", type=float, default=0.0,
                    help="CPU seconds of training per physics-informed correction network (0: skip)")
    ap.add_argument("--learned-seeds", type=int, nargs="+", default=[1234, 1235, 1236],
                    help="training seeds of the learned models (their mean is reported, each kept in the JSON)")
    ap.add_argument("--photons", type=float, nargs="+", default=None, help="photon levels (default by --quick)")
    ap.add_argument("--mods", type=float, nargs="+", default=None, help="modulation depths (default by --quick)")
    ap.add_argument("--skip-real", action="store_true", help="do not run the real 3D-SIM data")
    ap.add_argument("--out", type=Path, default=HERE / "sim.json", help="JSON output (default: benchmarks/sim.json)")
    ap.add_argument("--figures", type=Path, default=HERE / "figures",
                    help="folder of the worst-case galleries sim_worst_<method>.png")
    ap.add_argument("--summarise", type=Path, default=None, metavar="JSON",
                    help="recompute the summary of a stored run (its `simulations`) and print the learned − "
                         "classical differences over independent units; runs nothing")
    args = ap.parse_args()
    if args.summarise is not None:
        if not args.summarise.is_file():
            ap.error(f"--summarise {args.summarise}: no such file (give a JSON written by sim.py)")
        stored = json.loads(args.summarise.read_text())
        if not isinstance(stored, dict) or "simulations" not in stored:
            ap.error(f"--summarise {args.summarise}: not a sim.py result (no 'simulations' list)")
        summary = summarise(stored["simulations"])
        for group in ("nominal", "distorted"):
            for key, v in sorted(summary.get(group, {}).items()):
                if key.endswith("_units") and v.get("crossed"):
                    lo, hi = v["crossed"]["ci95"]
                    print(f"{group} {key.removesuffix('_units')}: {v['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                          f"(truths {v['n_truths']} × networks {v['n_networks']}, df {v['crossed']['df']:.1f}, "
                          f"cells > 0: {v['positive_cells']}/{v['n_truths'] * v['n_networks']})")
        return
    t_wall = time.time()
    cases: dict[str, list[Case]] = {}
    truths: dict[str, np.ndarray] = {}
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": os.getloadavg()[0], "seeds": args.seeds}
    out["simulations"] = simulations(args.seeds, args.quick, args.pyfairsim, args.learned_budget, args.learned_seeds,
                                     tuple(args.photons) if args.photons else None,
                                     tuple(args.mods) if args.mods else None, args.correction_budget, cases, truths)
    out["real"] = {"skipped": "--skip-real"} if args.skip_real else real_data()
    out["load_after"] = os.getloadavg()[0]
    out["summary"] = summary = summarise(out["simulations"])
    out["galleries"] = {}
    for name, cs in cases.items():
        path = args.figures / f"sim_worst_{name}.png"
        out["galleries"][name] = {"path": str(path), "metric": "psnr (dB, after the gain/offset fit)",
                                  "cases": save_gallery(cs, path, f"sim.py: worst PSNR, {name}")}
    data: dict = dict(truths)
    real_raw = shared_data("cudasirecon-3dsim-raw")
    if not args.skip_real and real_raw is not None:
        data["cudasirecon-3dsim-raw/raw.tif"] = real_raw / "raw.tif"
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out["provenance"] = finish(provenance(seeds=args.seeds, data=data, params={
        **params, "pixel_size_um": DX, "na": NA, "wavelength_um": LAM, "k_over_cutoff": 0.85, "wiener": 0.05,
        "phase_jitter": 0.05, "distorted": {"phase_jitter": 0.3, "contrast": [1.0, 0.6, 0.3]}}), t_wall)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    print(json.dumps(out["real"], indent=1))


if __name__ == "__main__":
    main()
