"""SMLM benchmark: classical MLE vs DECODE-style (and Deep-STORM-style) localizers, SMLM-2016 metrics.

Simulated movies (SMLM-2016 EMCCD camera, Gaussian PSF σ = 130 nm, 100 nm pixels, blinking emitters)
at densities 0.1–4 emitters/µm² per frame; a 3D astigmatic movie (MLE with z); the Deep-STORM
ThunderSTORM simulation (ground truth); the real deconSTORM microtubule movie (FRC only). The
learned localizer is trained once on simulations at ``--train-density`` within ``--budget`` seconds
and applied at every density (a per-density model would be better at the extremes). Peers
(smappy-smlm) are run from ``--peer-python`` when given, with the detection settings ``PEER_SETTINGS`` chosen
on development movies (seed 901, never reported; see the comment there); each peer row records smappy's own
detection counts, so a collapse of its detector shows in the JSON. The Deep-STORM row localizes with a PSF σ
estimated from its own movie (``estimate_psf_sigma``), not the truth table's.

Usage::

    python benchmarks/smlm.py --quick --out /tmp/smlm  # smoke run: density 1, 20 frames of 32², no training
    python benchmarks/smlm.py --budget 600 --frames 500 --seeds 0 1 2

Writes ``benchmarks/smlm.json`` and ``benchmarks/smlm.md`` (table). Always read the load average
recorded with the numbers: timings on a shared machine are not the machine's speed. The JSON holds a
``provenance`` record (command, code hash, every simulated movie and the real files by hash, seeds, all
parameters, machine, load), ``summary`` (per density: the per-seed Jaccard and RMSE of each method, their
mean with a 95 % t-interval and the paired differences against the peers) and ``galleries``: each
method's three lowest-Jaccard movies as ``<figures>/smlm_worst_<method>.png`` (rendered localizations
against the rendered truth).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.stats import gaussian_kde

from fluorecon.classical.localize import filter_localizations, localize
from fluorecon.datasets import shared_data
from fluorecon.evaluate.smlm import assess, frc_localizations, match
from fluorecon.io import read_image
from fluorecon.io_tables import read_table, write_table
from fluorecon.learn.smlm_nets import SimConfig, train_localizer
from fluorecon.physics.smlm import AstigmaticPSF, Blinking, SMLMCamera, simulate_movie

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.resolve()))
from _gallery import Case, save_gallery, worst  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

RENDER = 4  # rendered pixels per camera pixel in the galleries (25 nm)

# smappy-smlm's settings. Its default detection (cutoff_mode "dynamic", factor 1.7: each frame's cutoff is the
# median + 1.7·(q80 − q20)/0.6 of that frame's local maxima of the DoG image, after SMAP) assumes that almost all
# maxima are noise. A 64² frame holds only ~100 maxima, so from ~1 emitter/µm² (~40 per frame) the upper quantiles
# are emitters and the cutoff rises above nearly all of them: on the development movie at density 1 the median
# cutoff was 35.7 photons against the emitters' median 12.8 on the filtered image, and 3 % were detected (the
# earlier run's JI 0.016 at density 1, 0.000 at 2 and 4). That is a setting, not the method: smappy offers a fixed
# ("absolute") cutoff in photons. Chosen on development movies only (simulate_movie seed 901, 64², 30 frames (90
# at 0.1), densities 0.1 0.5 1 2 4, the benchmark's camera, PSF and blinking), by the mean Jaccard over the five
# densities, from: dynamic 1.7 / ROI 9 (the earlier run's settings: 0.245), absolute 2 3 4 5 6 8 photons × ROI 7 9,
# absolute 1 1.5 2 × ROI 5 7 (smappy's smallest ROI is 5); best absolute 2 / ROI 5 (0.580; JI 0.82 0.70 0.60
# 0.47 0.30). σ = 1.3 px is the simulated PSF, which our MLE is given too.
PEER_SETTINGS = {"sigma": 1.3, "roisize": 5, "cutoff": 2.0, "cutoff_mode": "absolute"}
PEER_DEFAULTS = {"sigma": 1.3, "roisize": 9, "cutoff": 1.7, "cutoff_mode": "dynamic"}  # the earlier run's
PEER_DEV = "simulate_movie seed 901 (64², 30 frames, 90 at density 0.1; densities 0.1 0.5 1 2 4), mean Jaccard"
COLLAPSE = 0.1  # fewer detector candidates than this × the true emitters: the peer's detection has collapsed


def _load() -> float:
    return os.getloadavg()[0]


def _metrics(m: dict) -> dict:
    keys = ("jaccard", "recall", "precision", "rmse_lateral", "rmse_axial", "efficiency_lateral", "efficiency_axial",
            "n_truth", "n_pred")
    return {k: (round(float(m[k]), 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def summarize(rows: list[dict]) -> dict:
    """Per density: each method's Jaccard / RMSE per seed, mean ± 95 % CI, paired differences by seed."""
    out: dict = {}
    for dens in sorted({r["density"] for r in rows}):
        at = sorted((r for r in rows if r["density"] == dens), key=lambda r: r["seed"])
        g: dict = {"seeds": [r["seed"] for r in at]}
        methods = [m for m in ("mle", "mle_dev3", "decode", "smappy") if all("jaccard" in r.get(m, {}) for r in at)]
        for m in methods:
            g[m] = {k: mean_ci([r[m][k] for r in at]) for k in ("jaccard", "rmse_lateral")}
        for a, b in (("mle", "smappy"), ("decode", "smappy"), ("decode", "mle")):
            if a in methods and b in methods:
                g[f"{a}_minus_{b}"] = {k: mean_ci([r[a][k] - r[b][k] for r in at]) for k in ("jaccard", "rmse_lateral")}
        out[f"{dens:g}"] = g
    return out


def render(table: dict, shape: tuple[int, int], pixel_size: float = 100.0) -> np.ndarray:
    """Localizations as a histogram at ``RENDER``× the camera sampling, smoothed by one rendered pixel.

    >>> render({"x [nm]": np.array([150.0]), "y [nm]": np.array([50.0])}, (2, 2)).shape
    (8, 8)
    """
    px = pixel_size / RENDER
    h = np.zeros((shape[0] * RENDER, shape[1] * RENDER), np.float32)
    y = (np.asarray(table["y [nm]"], np.float64) // px).astype(int)
    x = (np.asarray(table["x [nm]"], np.float64) // px).astype(int)
    ok = (y >= 0) & (y < h.shape[0]) & (x >= 0) & (x < h.shape[1])
    np.add.at(h, (y[ok], x[ok]), 1.0)
    return ndimage.gaussian_filter(h, 1.0)


def _keep_worst(cases: dict | None, method: str, case: Case, n: int = 3) -> None:
    if cases is not None:
        cases[method] = worst([*cases.get(method, []), case], n)


def simulated(densities, frames, size, seeds, budget, train_density, peer_python, cases=None, movies=None,
              peer_settings=None):
    """The simulated movies; ``cases`` collects each method's worst movies, ``movies`` the movies (hashes).

    ``peer_settings`` go to smappy (default ``PEER_SETTINGS``).
    """
    cam = SMLMCamera.smlm2016()
    out = []
    model = None
    if budget > 0:
        sim = SimConfig(pixel_size=100.0, psf_sigma=130.0, density=train_density, photons=2000.0, background=20.0,
                        camera=cam.model_dump(mode="json"))
        t0 = time.perf_counter()
        model = train_localizer("decode", sim, budget_s=budget, seed=0)
        print(f"DECODE-style trained: {model.training} (load {_load():.1f})", flush=True)
        train_s = time.perf_counter() - t0
    for dens in densities:
        for seed in seeds:
            n = frames if dens >= 0.5 else frames * 3
            kin = Blinking(on_time=2.0, off_time=40.0, photons=2000.0)
            mov, truth = simulate_movie(n, (size, size), 100.0, density=dens, psf=130.0, camera=cam, background=20.0,
                                        kinetics=kin, seed=1000 + seed)
            row = {"density": dens, "seed": seed, "frames": n, "size": size}
            if movies is not None:
                movies[f"movie_density{dens:g}_seed{seed}"] = mov
            t0 = time.perf_counter()
            locs = localize(mov, cam, 100.0, 130.0)
            dt = time.perf_counter() - t0
            m = assess(locs, truth)
            ip, _ = match(locs, truth)
            crlb = float(np.sqrt(np.mean(locs["crlb_x [nm]"][ip] ** 2 + locs["crlb_y [nm]"][ip] ** 2))) if len(ip) \
                else float("nan")
            row["mle"] = {**_metrics(m), "rms_crlb_nm": round(crlb, 3), "rmse_over_crlb": round(m["rmse_lateral"] / crlb, 3),
                          "seconds": round(dt, 3), "locs_per_s": round(len(locs["frame"]) / dt, 1), "load": _load()}
            dev = filter_localizations(locs, max_deviance=3.0)
            md = assess(dev, truth)
            ip, _ = match(dev, truth)
            c2 = float(np.sqrt(np.mean(dev["crlb_x [nm]"][ip] ** 2 + dev["crlb_y [nm]"][ip] ** 2))) if len(ip) \
                else float("nan")
            row["mle_dev3"] = {**_metrics(md), "rms_crlb_nm": round(c2, 3), "rmse_over_crlb": round(md["rmse_lateral"] / c2, 3)}
            if model is not None:
                t0 = time.perf_counter()
                l2 = model.localize(mov)
                dt = time.perf_counter() - t0
                row["decode"] = {**_metrics(assess(l2, truth)), "seconds": round(dt, 3),
                                 "frames_per_s": round(n / dt, 1), "load": _load()}
            if peer_python:
                row["smappy"] = _peer(peer_python, mov, truth, cam, peer_settings)
            if cases is not None:
                ref = render(truth, (size, size))
                mean = np.kron(mov.mean(axis=0), np.ones((RENDER, RENDER), np.float32))
                # ADU → the rendered truth's range, so that the shared display range shows it
                mean = (mean - mean.min()) / max(float(np.ptp(mean)), 1e-12) * float(ref.max())
                tables = {"mle": locs, "mle_dev3": dev, **({"decode": l2} if model is not None else {})}
                for name, tab in tables.items():
                    _keep_worst(cases, name, Case(f"density {dens:g} seed {seed}", row[name]["jaccard"], {
                        "movie mean": mean, "result": render(tab, (size, size)), "reference": ref},
                        {"density": dens, "seed": seed}))
            print(json.dumps(row), flush=True)
            out.append(row)
    return out, (train_s if model is not None else None), model


def _peer(python: str, mov: np.ndarray, truth: dict, cam: SMLMCamera, settings: dict | None = None) -> dict:
    """Run smappy-smlm in its own venv through a small script; its table is scored with our matcher.

    ``settings`` (default ``PEER_SETTINGS``) go to ``smappy.fit``. ``detection`` records smappy's own counts
    (candidates, fitted ROIs, dropped at the border, rejected) and ``detection_collapsed`` whether it found fewer
    than ``COLLAPSE`` × the true emitters as candidates: a peer that detects nothing has no localization error to
    compare, so such a row must not be read as the method's accuracy.
    """
    settings = dict(PEER_SETTINGS if settings is None else settings)
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "movie.npy", mov)
        script = Path(d) / "run.py"
        script.write_text(PEER_SCRIPT)
        t0 = time.perf_counter()
        r = subprocess.run([python, str(script), d, json.dumps(cam.model_dump(mode="json")), json.dumps(settings)],
                           capture_output=True, text=True, timeout=600)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            return {"error": r.stderr[-500:], "settings": settings}
        t = read_table(Path(d) / "locs.csv")
        info = json.loads(r.stdout.strip().splitlines()[-1])
    m = assess(t, truth)
    n_truth = len(truth["frame"])
    stats = {k: int(info["stats"][k]) for k in ("frames", "candidates", "rois", "dropped_at_border", "rejected")}
    stats["candidates_per_truth"] = round(stats["candidates"] / max(n_truth, 1), 4)
    return {**_metrics(m), "bias_x": round(m["bias_x"], 2), "bias_y": round(m["bias_y"], 2),
            "fit_seconds": round(info["fit_seconds"], 3),
            "locs_per_s": round(info["n"] / info["fit_seconds"], 1) if info["fit_seconds"] > 0 else float("nan"),
            "seconds_incl_start": round(dt, 2), "load": _load(), "settings": settings, "detection": stats,
            "detection_collapsed": bool(stats["candidates"] < COLLAPSE * n_truth)}


PEER_SCRIPT = """
import sys, json, time, numpy as np
import smappy
d, cam, settings = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
mov = np.load(d + '/movie.npy')
conv = 1.0 / cam['gain']  # smappy: e- per ADU
camera = {'conversion': conv, 'offset': cam['baseline'], 'pixelsize_um': 0.1, 'em_on': bool(cam['em_gain']),
          'emgain': cam['em_gain'] or 1.0, 'read_noise_e': cam['read_noise']}
t0 = time.perf_counter()
locs = smappy.fit(mov, camera=camera, **settings)
dt = time.perf_counter() - t0
n = len(locs)
# smappy: frames from 0, x_nm = pixel index x pixel size (origin at the first pixel's centre)
cols = {'frame': np.asarray(locs['frame'] if n else [], int) + 1,
        'x [nm]': np.asarray(locs['x_nm'] if n else [], float) + 50.0,
        'y [nm]': np.asarray(locs['y_nm'] if n else [], float) + 50.0}
with open(d + '/locs.csv', 'w') as fh:
    fh.write('frame,x [nm],y [nm]\\n')
    for f, x, y in zip(cols['frame'], cols['x [nm]'], cols['y [nm]']):
        fh.write(f'{int(f)},{x},{y}\\n')
stats = {k: v for k, v in locs.metadata.get('stats', {}).items() if isinstance(v, (int, float))}
print(json.dumps({'fit_seconds': dt, 'n': n, 'stats': stats}))
"""


def astigmatic(frames, size, seed):
    cam = SMLMCamera.smlm2016()
    psf = AstigmaticPSF(110.0, 250.0, 400.0)
    mov, truth = simulate_movie(frames, (size, size), 100.0, density=0.1, psf=psf, camera=cam, background=20.0,
                                kinetics=Blinking(on_time=2, off_time=40, photons=3000), z_range=(-400, 400),
                                seed=seed)
    locs = localize(mov, cam, 100.0, psf=psf)
    return {"density": 0.1, "frames": frames, **_metrics(assess(locs, truth)),
            "median_crlb_z_nm": round(float(np.median(locs["crlb_z [nm]"])), 2)}


def _nearest_other(table: dict) -> np.ndarray:
    """Each localization's distance (nm) to the nearest other one in its frame (inf when alone)."""
    out = np.full(len(table["frame"]), np.inf)
    xy = np.c_[table["x [nm]"], table["y [nm]"]]
    for f in np.unique(table["frame"]):
        i = np.flatnonzero(table["frame"] == f)
        if len(i) > 1:
            out[i] = cKDTree(xy[i]).query(xy[i], k=2)[0][:, 1]
    return out


def estimate_psf_sigma(mov: np.ndarray, cam: SMLMCamera, pixel_size: float, *, guess_nm: float | None = None,
                       isolation_px: float = 4.0, rounds: int = 2, min_spots: int = 10) -> dict:
    """The Gaussian PSF σ of a movie from its own spots, without ground truth.

    Each round localizes with σ free (``localize(..., fit_sigma=True)``, started at the previous estimate; the
    first at ``guess_nm``, default one pixel), keeps the spots with no other localization within
    ``isolation_px`` pixels in their frame and, of those, the best-fitting quarter (lowest deviance), and takes the
    mode of their σ (the peak of a Gaussian kernel density). Overlapping, unresolved spots fit wide and sit in the
    right tail, so the mode resists them where the median does not. Chosen on development movies only
    (simulate_movie seeds 902 and 903, densities 0.1 4 6, σ 110 130 160 nm): within 4 % of the simulated σ at
    densities 0.1 and 6, against up to +39 % for the median of the same spots.

    Parameters
    ----------
    mov : (T, Y, X) array
        The movie in ADU.
    cam : SMLMCamera
    pixel_size : float
        nm per camera pixel.
    guess_nm : float, optional
        Starting σ (nm); default one pixel.
    isolation_px : float
        A spot counts as isolated with no other localization closer than this (pixels).
    rounds : int
        Localize-and-estimate rounds (≥ 1).
    min_spots : int
        Fewest isolated, well-fitting spots accepted.

    Returns
    -------
    dict
        ``sigma_nm``, ``n_spots`` (spots in the last round's mode), ``rounds``, ``guess_nm``, ``method``.

    Raises
    ------
    ValueError
        For bad arguments, or when fewer than ``min_spots`` isolated spots are found.
    """
    if pixel_size <= 0 or isolation_px <= 0 or rounds < 1 or min_spots < 2:
        raise ValueError("pixel_size and isolation_px must be > 0, rounds ≥ 1, min_spots ≥ 2")
    s = float(guess_nm if guess_nm is not None else pixel_size)
    if s <= 0:
        raise ValueError(f"guess_nm must be > 0, got {guess_nm}")
    n = 0
    for _ in range(rounds):
        try:
            locs = localize(mov, cam, pixel_size, s, fit_sigma=True)
        except KeyError:  # localize() has no table to return when nothing at all is detected
            locs = {"frame": np.zeros(0, np.int64), "x [nm]": np.zeros(0), "y [nm]": np.zeros(0)}
        iso = _nearest_other(locs) >= isolation_px * pixel_size
        if iso.sum() < min_spots:
            raise ValueError(f"only {int(iso.sum())} isolated spots (need {min_spots}): the movie is too dense "
                             "to estimate the PSF σ; give a calibration movie")
        dev = locs["deviance"]
        keep = iso & (dev <= np.quantile(dev[iso], 0.25))
        sig = locs["sigma [nm]"][keep]
        if len(sig) < min_spots or np.ptp(sig) == 0:
            raise ValueError(f"only {len(sig)} distinct well-fitting isolated spots (need {min_spots})")
        grid = np.linspace(0.25, 4.0, 1501) * pixel_size  # 0.25 % of a pixel steps
        s = float(grid[np.argmax(gaussian_kde(sig)(grid))])
        n = len(sig)
    return {"sigma_nm": round(s, 2), "n_spots": int(n), "rounds": rounds,
            "guess_nm": float(guess_nm if guess_nm is not None else pixel_size),
            "method": f"mode of free-σ MLE fits of isolated (≥ {isolation_px:g} px) spots, lowest-deviance quarter"}


def deepstorm_data():
    d = shared_data("deepstorm-simulated-smlm")
    if d is None:
        return {"skipped": "data absent"}
    mov = read_image(d / "ArtificialDataset_demo1.tif").data
    truth = read_table(d / "positions_demo1.csv")
    # ThunderSTORM simulation in photons (offset 50 photons per pixel given as background): camera = identity
    cam = SMLMCamera(baseline=0.0, gain=1.0, read_noise=0.0)
    # the PSF σ comes from the movie itself: the truth table's sigma column would be PSF knowledge no real
    # acquisition has (the earlier run used its median)
    est = estimate_psf_sigma(mov, cam, 100.0)
    locs = localize(mov, cam, 100.0, est["sigma_nm"])
    m = assess(locs, truth)
    area = (mov.shape[1] * mov.shape[2]) * 0.01
    return {"frames": int(mov.shape[0]), "density_per_um2": round(len(truth) / mov.shape[0] / area, 2),
            "psf_sigma_nm": est["sigma_nm"], "psf_sigma_source": "estimated from this movie", "psf_sigma_estimate": est,
            # recorded to judge the estimate, never used by the localizer
            "truth_sigma_median_nm_not_used": round(float(np.median(truth["sigma [nm]"])), 2),
            "mle": {**_metrics(m), "bias_x": round(m["bias_x"], 2), "bias_y": round(m["bias_y"], 2)}}


def microtubules(pixel_size=100.0):
    d = shared_data("deconstorm-microtubules")
    if d is None:
        return {"skipped": "data absent"}
    mov = np.load(d / "deconSTORM_microtubuledata_mov_TYX.npy").astype(np.float32)
    cam = SMLMCamera(baseline=0.0, gain=1.0, read_noise=0.0)
    locs = localize(mov, cam, pixel_size, pixel_size * 1.0)  # demo: sigma = 1 pixel, values in photons
    res = frc_localizations(locs, pixel_size / 8, fov_nm=(16 * pixel_size, 16 * pixel_size), blocks=20)
    return {"frames": int(mov.shape[0]), "n_localizations": len(locs["frame"]),
            "frc_resolution_px": round(res.info["resolution_nm"] / pixel_size, 3), "frc_crossed": bool(res.crossed),
            "note": "pixel size unknown: resolution in camera pixels"}


def inference_speed(model, size=64, frames=200, threads=2):
    torch.set_num_threads(threads)
    sim = model.sim
    mov, _ = sim.simulate_movie(frames, (size, size), seed=5)
    model.localize(mov[:8])
    t0 = time.perf_counter()
    model.localize(mov, batch=64)
    dt = time.perf_counter() - t0
    torch.set_num_threads(1)
    return {"frames": frames, "size": size, "threads": threads, "seconds": round(dt, 3),
            "frames_per_s": round(frames / dt, 1), "load": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: density 1, 20 frames of 32², no training, no real data (unless given)")
    ap.add_argument("--densities", type=float, nargs="+", default=None, help="default 0.1 0.5 1 2 4 (quick: 1)")
    ap.add_argument("--frames", type=int, default=None, help="default 100 (quick: 20)")
    ap.add_argument("--size", type=int, default=None, help="default 64 (quick: 32)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=float, default=None,
                    help="DECODE-style training budget (s), 0 to skip; default 170 (quick: 0)")
    ap.add_argument("--train-density", type=float, default=2.0)
    ap.add_argument("--peer-python", default=None, help="python of a venv with smappy-smlm")
    ap.add_argument("--peer-cutoff-mode", choices=("absolute", "dynamic"), default=PEER_SETTINGS["cutoff_mode"],
                    help="smappy's detection cutoff (default %(default)s; smappy's own default is dynamic)")
    ap.add_argument("--peer-cutoff", type=float, default=PEER_SETTINGS["cutoff"],
                    help="photons on the filtered image (absolute) or a factor (dynamic); default %(default)s")
    ap.add_argument("--peer-roisize", type=int, default=PEER_SETTINGS["roisize"],
                    help="smappy's fit box, odd, ≥ 5 pixels; default %(default)s")
    ap.add_argument("--out", default=str(HERE / "smlm"), help="output prefix (writes PREFIX.json and PREFIX.md)")
    ap.add_argument("--figures", type=Path, default=HERE / "figures", help="folder of smlm_worst_<method>.png")
    args = ap.parse_args()
    if not args.peer_cutoff > 0:
        ap.error(f"--peer-cutoff must be > 0, got {args.peer_cutoff}")
    if args.peer_roisize < 5 or args.peer_roisize % 2 == 0:
        ap.error(f"--peer-roisize must be odd and ≥ 5, got {args.peer_roisize}")
    peer_settings = {"sigma": PEER_SETTINGS["sigma"], "roisize": args.peer_roisize, "cutoff": args.peer_cutoff,
                     "cutoff_mode": args.peer_cutoff_mode}
    full = {"densities": [0.1, 0.5, 1.0, 2.0, 4.0], "frames": 100, "size": 64, "budget": 170.0}
    quick = {"densities": [1.0], "frames": 20, "size": 32, "budget": 0.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.set_num_threads(1)
    t_wall = time.time()
    t_start = time.perf_counter()
    cases: dict[str, list[Case]] = {}
    movies: dict[str, np.ndarray] = {}
    res = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                       "load_start": _load()},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    rows, train_s, model = simulated(args.densities, args.frames, args.size, args.seeds, args.budget,
                                     args.train_density, args.peer_python, cases, movies, peer_settings)
    res["simulated"] = rows
    res["summary"] = summarize(rows)
    res["decode_training_seconds"] = train_s
    res["astigmatic_3d"] = astigmatic(args.frames * 3, args.size, 7)
    print("astigmatic", res["astigmatic_3d"], flush=True)
    data: dict = dict(movies)
    if args.quick:
        res["deepstorm_simulated"] = res["deconstorm_microtubules"] = {"skipped": "--quick"}
    else:
        res["deepstorm_simulated"] = deepstorm_data()
        print("deepstorm data", res["deepstorm_simulated"], flush=True)
        res["deconstorm_microtubules"] = microtubules()
        print("microtubules", res["deconstorm_microtubules"], flush=True)
        for name, files in (("deepstorm-simulated-smlm", ("ArtificialDataset_demo1.tif", "positions_demo1.csv")),
                            ("deconstorm-microtubules", ("deconSTORM_microtubuledata_mov_TYX.npy",))):
            d = shared_data(name)
            for f in files if d is not None else ():
                if (d / f).exists():
                    data[f"{name}/{f}"] = d / f
    res["galleries"] = {}
    for name, cs in cases.items():
        path = args.figures / f"smlm_worst_{name}.png"
        res["galleries"][name] = {"path": str(path), "metric": "jaccard",
                                  "cases": save_gallery(cs, path, f"smlm.py: worst Jaccard, {name}")}
    if model is not None:
        res["decode_inference"] = inference_speed(model)
        print("inference", res["decode_inference"], flush=True)
    res["machine"]["load_end"] = _load()
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    res["provenance"] = finish(provenance(seeds=args.seeds, data=data, params={
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "movie_seed": "1000 + seed", "astigmatic_seed": 7, "decode_training_seed": 0, "camera": "SMLM-2016 EMCCD",
        "psf_sigma_nm": 130.0, "pixel_size_nm": 100.0, "background": 20.0,
        "blinking": {"on_time": 2.0, "off_time": 40.0, "photons": 2000.0},
        "peer_settings": peer_settings if args.peer_python else None, "peer_settings_chosen_on": PEER_DEV,
        "deepstorm_psf_sigma": "estimated from the movie (estimate_psf_sigma)"}), t_wall)
    Path(args.out + ".json").write_text(json.dumps(res, indent=1, default=float))
    lines = ["| density µm⁻² | MLE JI | MLE RMSE nm | RMSE/CRLB | MLE E_lat | MLE dev≤3 JI | dev≤3 RMSE/CRLB | "
             "DECODE JI | DECODE RMSE nm | DECODE E_lat | smappy JI | smappy RMSE nm | smappy E_lat |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("decode", {})
        sm = r.get("smappy", {})
        lines.append(f"| {r['density']} | {r['mle']['jaccard']:.3f} | {r['mle']['rmse_lateral']:.1f} | "
                     f"{r['mle']['rmse_over_crlb']:.2f} | {r['mle']['efficiency_lateral']:.1f} | "
                     f"{r['mle_dev3']['jaccard']:.3f} | {r['mle_dev3']['rmse_over_crlb']:.2f} | "
                     f"{d.get('jaccard', float('nan')):.3f} | {d.get('rmse_lateral', float('nan')):.1f} | "
                     f"{d.get('efficiency_lateral', float('nan')):.1f} | "
                     f"{sm.get('jaccard', float('nan')):.3f} | {sm.get('rmse_lateral', float('nan')):.1f} | "
                     f"{sm.get('efficiency_lateral', float('nan')):.1f} |")
    if args.peer_python:
        collapsed = [f"{r['density']:g}" for r in rows if r.get("smappy", {}).get("detection_collapsed")]
        lines.append("")
        lines.append(f"smappy settings: {json.dumps(peer_settings)} (chosen on {PEER_DEV})"
                     + (f"; its detection COLLAPSED (< {COLLAPSE:g} candidates per true emitter) at density "
                        f"{', '.join(collapsed)}: those rows are not its accuracy" if collapsed else ""))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _ = write_table  # tables of a run can be written with fluorecon.io_tables.write_table


if __name__ == "__main__":
    sys.exit(main())
