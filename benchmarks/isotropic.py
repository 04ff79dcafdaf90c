"""Isotropic restoration benchmark: ours vs Z interpolation vs Richardson–Lucy vs CSBDeep, fairly.

Simulated part: 3D phantoms (filaments, nuclei) with a known isotropic truth — the object blurred by
the *lateral* PSF in all three directions, which is what an isotropic restoration can at best reach —
are imaged with an elongated axial PSF (axial σ = 3× lateral), point-sampled every ``f`` planes
(f = 2, 4, 8) and given Poisson–Gaussian noise. One volume per phantom kind and seed (``--seeds``);
metrics (SSIM, NRMSE, PSNR) are averaged over the XZ slices *of a volume*, and CIs are bootstrapped
over the independent volumes (never over correlated slices), with paired per-volume differences
ours − peer. No method's output is rescaled against the truth.

Peers: linear/cubic interpolation; Richardson–Lucy with the acquisition's forward model (blur along Z
by the axial kernel, then keep every ``f``-th plane — not RL on an interpolated stack), its iteration
count chosen from a wide grid (1…233) on a separate tuning volume per kind (seed 900 + f), so the
reported volumes never choose it; the grid's optimum is reported with an ``interior`` flag and, for
the record, the count the truth would have picked on each reported volume. CSBDeep's isotropic CARE
(peer venv, ``benchmarks/peers/``) gets the same CPU-seconds that our run used (budget-matched, not
converged) and, on the volumes of ``--converged-seeds`` × ``--converged-factors``, is trained a second time to its own
validation plateau (capped at ``--converged-cap`` CPU-s; best weights), a separate row. Ours:
``--steps`` optimiser steps (batch 16, 64² patches, ``--threads``), seed = volume seed.

Real part: ``../shared/data/deconwolf-dapi-widefield`` (130 nm pixels, 300 nm steps) resampled
laterally to 150 nm so that the Z factor is exactly 2. No truth: the stack is split into even and
odd planes (two halves with independent noise, Z factor 4 each), each is restored independently, and
the XZ-plane FRC between the two restorations (odd half shifted by its known 2 fine planes; 1/7
threshold) is compared with the same split for linear interpolation. Caveat (recorded in the JSON):
a linear filter applied to both halves leaves this FRC unchanged, and a learned prior that adds the
same structure to both halves raises it without resolving anything — it is a consistency measure
between independent halves, not proof of resolution.

Usage: python benchmarks/isotropic.py [--steps 600] [--factors 2 4 8] [--seeds 0 1 2] [--quick]
                                      [--skip-real] [--no-peer]
Writes benchmarks/isotropic.json (``--out``; with a provenance record: command, commit, data hashes, seeds,
machine, load) and benchmarks/figures/isotropic_worst_<method>_f<factors>.png; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import bootstrap_ci, frc, nrmse, psnr, ssim
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom
from fluorecon.tasks import isotropic as iso

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gallery import Case, save_gallery
from _provenance import bundle_entry, finish, provenance

HERE = Path(__file__).resolve().parent
CSBDEEP_VENV = Path(os.environ.get("FLUORECON_PEER_CSBDEEP", Path.home() / ".cache" / "peer-csbdeep"))


def csbdeep_python(build: bool) -> Path | None:
    """Python of the CSBDeep peer venv (built by benchmarks/peers/csbdeep_setup.sh when ``build``)."""
    py = CSBDEEP_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import csbdeep"], capture_output=True).returncode == 0
    if ok or not build:
        return py if ok else None
    r = subprocess.run(["bash", str(HERE / "peers" / "csbdeep_setup.sh"), str(CSBDEEP_VENV)], capture_output=True, text=True)
    return py if r.returncode == 0 else None


def run_csbdeep(py: Path, stack: np.ndarray, f: int, sigma: float, seconds: float,
                seed: int = 0, until_plateau: int = 0, threads: int = 2) -> tuple[np.ndarray | None, dict]:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "stack.npy", Path(d) / "out.npy"
        np.save(src, stack.astype(np.float32))
        r = subprocess.run([str(py), str(HERE / "peers" / "csbdeep_isotropic.py"), str(src), str(dst), "--z-factor", str(f),
                            "--axial-sigma", f"{sigma:.4f}", "--seconds", f"{seconds:.1f}", "--clock", "cpu", "--seed", str(seed),
                            "--until-plateau", str(until_plateau), "--threads", str(threads)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not dst.exists():
            return None, {"error": r.stderr[-500:]}
        info = json.loads(r.stdout.strip().splitlines()[-1])
        return np.load(dst), info


METHODS = ("linear", "cubic", "rl", "csbdeep", "csbdeep_converged", "ours")
S_LAT, S_AX = 1.0, 3.0  # lateral and axial PSF σ in lateral pixels (axial FWHM 3× lateral)
# RL iteration grid (roughly geometric): wide enough that the chosen count is interior (checked and reported).
RL_GRID = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
KINDS = ("filaments", "nuclei")
TUNE_SEED = 900  # RL's iteration count is chosen on volumes of this seed, never on the reported ones


def simulate(kind: str, shape: tuple[int, int, int], f: int, seed: int, photons: float = 300.0):
    # Filaments in all 3D orientations (the default lays them mostly flat, like cells on a coverslip).
    kw = {"isotropic": True} if kind == "filaments" else {}
    obj = phantom(kind, shape, seed=seed, **kw).astype(np.float32)
    truth = ndimage.gaussian_filter(obj, S_LAT)
    blurred = ndimage.gaussian_filter(obj, (S_AX, S_LAT, S_LAT))
    clean = blurred[::f]
    cam = Camera(photons=photons, read_noise=1.0, gain=1.0, offset=0.0)
    noisy = cam.simulate(clean / max(clean.max(), 1e-9), seed=seed).astype(np.float32)
    noisy = noisy / photons * max(clean.max(), 1e-9)  # back to the object's intensity scale
    n_fine = (clean.shape[0] - 1) * f + 1
    return noisy, truth[:n_fine], obj


def rl_subsampled(observed: np.ndarray, f: int, kernel: np.ndarray, checkpoints: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Richardson–Lucy on the fine Z grid with the forward model of the acquisition.

    ``x ↦ S(h * x)``: blur along Z with the axial kernel ``h`` (zero padding), then keep every ``f``-th
    plane (``S``) — the measured planes only, never an interpolated stack. Multiplicative update
    ``x ← x · Hᵀ Sᵀ(y / S H x) / Hᵀ Sᵀ 1``; started from linear interpolation (clipped ≥ ε). Returns
    the estimate at each iteration count in ``checkpoints``.
    """
    eps = 1e-6
    y = np.maximum(observed.astype(np.float64), 0.0)
    n_fine = (y.shape[0] - 1) * f + 1
    k = np.asarray(kernel, np.float64)

    def h(x):
        return ndimage.convolve1d(x, k, axis=0, mode="constant")

    def ht(x):  # adjoint of h (correlation with the same kernel)
        return ndimage.correlate1d(x, k, axis=0, mode="constant")

    ones = np.zeros(n_fine)
    ones[::f] = 1.0
    norm = np.maximum(ht(ones[:, None, None]), eps)
    x = np.maximum(iso.interpolate_z(y.astype(np.float32), f, 1).astype(np.float64), eps)
    out: dict[int, np.ndarray] = {}
    for it in range(1, max(checkpoints) + 1):
        ratio = y / np.maximum(h(x)[::f], eps)
        up = np.zeros_like(x)
        up[::f] = ratio
        x = x * ht(up) / norm
        if it in checkpoints:
            out[it] = x.astype(np.float32)
    return out


def xz_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    rng = float(truth.max() - truth.min())
    out: dict[str, list[float]] = {"ssim": [], "nrmse": [], "psnr": []}
    for y in range(4, truth.shape[1] - 4, 2):  # every other XZ slice, away from the lateral border
        p, t = pred[:, y, :], truth[:, y, :]
        if t.max() - t.min() < 1e-3 * rng:  # an empty XZ slice has no structure to score
            continue
        out["ssim"].append(ssim(p, t, data_range=rng))
        out["nrmse"].append(nrmse(p, t))
        out["psnr"].append(psnr(p, t, data_range=rng))
    return out


def volume_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """One number per metric and volume: the mean over its XZ slices (slices of a volume are correlated)."""
    return {k: float(np.mean(v)) for k, v in xz_metrics(pred, truth).items()}


def tune_rl(f: int, shape: tuple[int, int, int], kern: np.ndarray) -> dict[str, dict]:
    """Choose RL's iteration count per phantom kind on a separate tuning volume (seed TUNE_SEED)."""
    out = {}
    for kind in KINDS:
        noisy, truth, _ = simulate(kind, shape, f, seed=TUNE_SEED + f)
        its = rl_subsampled(noisy, f, kern, RL_GRID)
        curve = {n: volume_metrics(v, truth)["ssim"] for n, v in its.items()}
        best = max(curve, key=curve.get)
        out[kind] = {"iterations": best, "interior": RL_GRID[0] < best < RL_GRID[-1],
                     "ssim_curve": {str(n): round(v, 4) for n, v in curve.items()}}
    return out


def paired_differences(a: list[float], a_ids: list[str], b: list[float], b_ids: list[str]) -> list[float]:
    """``a − b`` on the volumes both were scored on, in ``b``'s order (methods may cover different volumes).

    >>> paired_differences([0.9, 0.8, 0.7], ["x", "y", "z"], [0.5, 0.6], ["z", "x"])
    [0.19999999999999996, 0.30000000000000004]
    """
    where = dict(zip(a_ids, a, strict=True))
    return [where[i] - v for i, v in zip(b_ids, b, strict=True) if i in where]


def _ci(values: list[float]) -> dict:
    b = bootstrap_ci(values, n=2000, seed=0)
    return {"mean": float(np.mean(values)), "ci": [float(b.low), float(b.high)], "n": len(values)}


def run_simulated(args, data_hashes: dict) -> dict:
    kernel_sigma = float(np.sqrt(S_AX**2 - S_LAT**2))
    results: dict = {}
    peer = None if args.no_peer else csbdeep_python(build=args.build_peer)
    if peer is None and not args.no_peer:
        print("CSBDeep peer venv not found (build it with benchmarks/peers/csbdeep_setup.sh or --build-peer)")
    kern = iso.gaussian_kernel_1d(kernel_sigma)
    cases: dict[str, list[Case]] = {}  # method → scored volumes, for the failure gallery (XZ planes)
    for f in args.factors:
        shape = (8 * f * (2 if args.quick else 4) + 1, 64 if args.quick else 96, 64 if args.quick else 96)
        tuned = tune_rl(f, shape, kern)
        per_volume: dict[str, dict[str, list[float]]] = {}
        volume_ids: dict[str, list[str]] = {}  # which volumes each method was scored on (for pairing)
        peer_runs: list[dict] = []
        models: list[dict] = []
        rl_oracle: list[int] = []
        timing: dict[str, float] = {}
        for seed in args.seeds:
            for kind in KINDS:
                noisy, truth, _ = simulate(kind, shape, f, seed=11 + f + 100 * seed)
                data_hashes[f"f{f}_{kind}_seed{seed}_recording"] = noisy
                preds: dict[str, np.ndarray] = {}
                t = time.perf_counter()
                preds["linear"] = iso.interpolate_z(noisy, f, 1)
                preds["cubic"] = iso.interpolate_z(noisy, f, 3)
                timing["interp"] = timing.get("interp", 0) + time.perf_counter() - t
                t = time.perf_counter()
                its = rl_subsampled(noisy, f, kern, RL_GRID)
                timing["rl_all_checkpoints"] = timing.get("rl_all_checkpoints", 0) + time.perf_counter() - t
                preds["rl"] = its[tuned[kind]["iterations"]]
                # for the record only: the count the truth would have chosen on this volume
                rl_oracle.append(max(its, key=lambda n: volume_metrics(its[n], truth)["ssim"]))
                t, c = time.perf_counter(), time.process_time()
                bundle = iso.train_isotropic(noisy, f, kern, steps=args.steps, seed=seed, device="cpu")
                cpu_s = time.process_time() - c
                if args.save_models is not None:  # the trained model by hash (review guideline 1)
                    saved = bundle.save(args.save_models / f"isotropic_f{f}_{kind}_seed{seed}")
                    models.append({"factor": f, "kind": kind, "seed": seed, "steps": args.steps, **bundle_entry(saved)})
                res = iso.isotropic(noisy, z_factor=f, method="learned", axial_psf=kern, model=bundle, device="cpu")
                timing["ours"] = timing.get("ours", 0) + time.perf_counter() - t
                timing["ours_train_cpu_s"] = timing.get("ours_train_cpu_s", 0) + cpu_s
                preds["ours"] = res.volume
                timing["ours_steps"] = timing.get("ours_steps", 0) + int(res.bundle.provenance.get("steps", 0))
                if peer is not None:
                    # Same training budget as ours, in CPU-seconds (robust to other load on the machine).
                    out, pinfo = run_csbdeep(peer, noisy, f, kernel_sigma, cpu_s, seed=seed, threads=args.threads)
                    if out is not None and out.shape == truth.shape:
                        preds["csbdeep"] = out.astype(np.float32)
                        timing["csbdeep_steps"] = timing.get("csbdeep_steps", 0) + pinfo.get("steps", 0)
                    else:
                        print("csbdeep failed:", pinfo.get("error", out.shape if out is not None else None))
                    if seed in args.converged_seeds and f in args.converged_factors:
                        # The peer's own convergence (validation plateau, best weights), capped in CPU-s.
                        out, cinfo = run_csbdeep(peer, noisy, f, kernel_sigma, args.converged_cap, seed=seed,
                                                 until_plateau=args.converged_patience, threads=args.threads)
                        if out is not None and out.shape == truth.shape:
                            preds["csbdeep_converged"] = out.astype(np.float32)
                            peer_runs.append({"kind": kind, "seed": seed, "budget_matched_steps": pinfo.get("steps"),
                                              **{k: cinfo.get(k) for k in ("steps", "train_cpu_s", "stopped_by", "epochs",
                                                                           "best_epoch", "val_loss")}})
                        else:
                            print("csbdeep (converged) failed:", cinfo.get("error"))
                mid = truth.shape[1] // 2
                for name, p in preds.items():
                    m = volume_metrics(p, truth)
                    cases.setdefault(name, []).append(Case(
                        f"×{f} {kind} seed {seed}", m["ssim"],
                        {"linear interp. (XZ)": preds["linear"][:, mid], "result": p[:, mid], "reference": truth[:, mid]},
                        {"factor": f, "kind": kind, "seed": seed}))
                    volume_ids.setdefault(name, []).append(f"{kind}/seed{seed}")
                    d = per_volume.setdefault(name, {"ssim": [], "nrmse": [], "psnr": []})
                    for k in d:
                        d[k].append(m[k])
        row: dict = {}
        for name in [m for m in METHODS if m in per_volume]:
            row[name] = {k: _ci(v) for k, v in per_volume[name].items()}
            if name != "ours" and "ours" in per_volume:
                diff = paired_differences(per_volume["ours"]["ssim"], volume_ids["ours"],
                                          per_volume[name]["ssim"], volume_ids[name])
                if diff:
                    row[name]["ours_minus_this_ssim"] = _ci(diff)
        row["models"] = models
        if peer_runs:
            row["csbdeep_converged_runs"] = peer_runs
        row["rl_tuning"] = tuned
        row["rl_oracle_iterations_on_reported_volumes"] = rl_oracle
        row["seconds"] = {k: round(v, 1) for k, v in timing.items()}
        row["n_volumes"] = len(args.seeds) * len(KINDS)
        results[f"f{f}"] = row
        print(f"factor {f}: " + ", ".join(f"{n} SSIM {row[n]['ssim']['mean']:.3f}" for n in METHODS if n in row)
              + f"; RL iterations {[tuned[k]['iterations'] for k in KINDS]} (interior: "
              f"{all(tuned[k]['interior'] for k in KINDS)})", flush=True)
    # failure cases (review guideline 5): per method, the three volumes with the lowest SSIM to the truth
    results["worst_cases"] = {
        name: save_gallery(cs, HERE / "figures" / f"isotropic_worst_{name}_f{'-'.join(map(str, args.factors))}.png",
                           f"isotropic.py: {name}, worst 3 volumes by SSIM (XZ plane through the middle)")
        for name, cs in cases.items()}
    return results


def fsc_z(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """XZ-plane FRC (1/7) between two restorations, over a dozen XZ planes.

    ``cutoff_cycles_per_px``: mean crossing frequency (higher = the halves agree to finer detail; 0 for a plane
    whose curve starts below the threshold). ``resolution_px``: median crossing length ``1/cutoff`` in pixels
    (lower is finer; the median because a plane without common signal has an infinite length).
    """
    cut, length = [], []
    for y in range(8, a.shape[1] - 8, max(1, a.shape[1] // 12)):
        r = frc(a[:, y, :], b[:, y, :])
        cut.append(r.cutoff)
        length.append(r.resolution_px)
    return {"cutoff_cycles_per_px": float(np.mean(cut)), "resolution_px": float(np.median(length)),
            "n_planes": len(cut)}


def run_real(args, data_hashes: dict) -> dict | None:
    d = shared_data("deconwolf-dapi-widefield")
    if d is None:
        print("skip real data: ../shared/data/deconwolf-dapi-widefield not found")
        return None
    import tifffile

    data_hashes["deconwolf-dapi-widefield/dapi_001.tif"] = d / "dapi_001.tif"
    raw = tifffile.imread(d / "dapi_001.tif").astype(np.float32)
    # 130 nm → 150 nm pixels laterally, so that the 300 nm steps are exactly 2 pixels.
    vol = ndimage.zoom(raw, (1, 130 / 150, 130 / 150), order=1)
    vs = (0.3, 0.15, 0.15)
    # Born–Wolf-like axial blur for NA 1.45 at 461 nm (n = 1.512), as a Gaussian: lateral FWHM
    # ≈ 0.51 λ/NA, axial FWHM ≈ 0.88 λ/(n − sqrt(n² − NA²)); only the excess of axial over lateral is used.
    lam, na, n = 0.461, 1.45, 1.512
    fwhm_lat = 0.51 * lam / na
    fwhm_ax = 0.88 * lam / (n - np.sqrt(n**2 - na**2))
    excess = float(np.sqrt(max(fwhm_ax**2 - fwhm_lat**2, 0)))
    out: dict = {"voxel_size_um": vs, "axial_excess_fwhm_um": excess,
                 "fsc_note": "FRC between restorations of the even and odd planes (independent noise), odd half "
                             "shifted by its 2 fine planes; unchanged by any linear filter applied to both halves, "
                             "raised by a prior shared by both: consistency, not resolution"}
    halves = [vol[0::2], vol[1::2]]
    recon: dict[str, list[np.ndarray]] = {"linear": [], "ours": []}
    for h in halves:
        recon["linear"].append(iso.interpolate_z(h, 4))
        r = iso.isotropic(h, voxel_size=(0.6, 0.15, 0.15), axial_fwhm=excess, steps=args.steps_real, seed=args.seeds[0],
                          device="cpu")
        recon["ours"].append(r.volume)
    # Odd planes start one raw plane (= 2 fine pixels) later: align before correlating.
    for name, (a, b) in recon.items():
        n_common = min(a.shape[0] - 2, b.shape[0])
        out[f"fsc_z_{name}"] = fsc_z(a[2: 2 + n_common], b[:n_common])
    full = iso.isotropic(vol, voxel_size=vs, axial_fwhm=excess, steps=args.steps_real, seed=args.seeds[0],
                         device="cpu")
    out["consistency_excess_full"] = full.info["consistency_excess"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        (HERE / "figures").mkdir(exist_ok=True)
        y = vol.shape[1] // 2
        lin = iso.interpolate_z(vol, 2)
        fig, ax = plt.subplots(1, 2, figsize=(8, 4))
        for a_, img, title in ((ax[0], lin[:, y, :], "linear interpolation"), (ax[1], full.volume[:, y, :], "fluorecon isotropic")):
            a_.imshow(img, cmap="magma", vmin=np.percentile(lin, 1), vmax=np.percentile(lin, 99.8), aspect=1)
            a_.set_title(title)
            a_.axis("off")
        fig.suptitle("deconwolf DAPI widefield: XZ slice, 150 nm isotropic pixels")
        fig.tight_layout()
        fig.savefig(HERE / "figures" / "isotropic_dapi_xz.png", dpi=110)
        out["figure"] = "figures/isotropic_dapi_xz.png"
    except Exception as e:  # a figure failure must not lose the numbers
        out["figure_error"] = str(e)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="training steps per simulated run (our budget; the peer gets the same CPU-seconds)")
    ap.add_argument("--steps-real", type=int, default=400, help="training steps per real-data run")
    ap.add_argument("--factors", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="one simulated volume per phantom kind and seed (phantom, noise and training seed)")
    ap.add_argument("--quick", action="store_true", help="small volumes, for a smoke run")
    ap.add_argument("--threads", type=int, default=2,
                    help="CPU threads of ours (torch) and of the peer (TensorFlow); 1 lets two runs (e.g. split by "
                         "--factors) share two cores without OpenMP spin-waiting inflating the CPU-second budgets")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="skip CSBDeep isotropic CARE")
    ap.add_argument("--build-peer", action="store_true", help="build the CSBDeep venv if missing")
    ap.add_argument("--converged-seeds", type=int, nargs="*", default=[0],
                    help="seeds whose volumes also get CSBDeep trained to its own validation plateau (a second peer "
                         "row; none: budget-matched only)")
    ap.add_argument("--converged-factors", type=int, nargs="*", default=None,
                    help="Z factors that get the converged CSBDeep row (default: all --factors)")
    ap.add_argument("--converged-cap", type=float, default=900.0, help="CPU-second cap of a converged CSBDeep run")
    ap.add_argument("--converged-patience", type=int, default=10,
                    help="epochs (of 50 steps) without a 0.5 %% validation gain that end a converged CSBDeep run")
    ap.add_argument("--out", type=Path, default=HERE / "isotropic.json")
    ap.add_argument("--save-models", type=Path, default=HERE / "models",
                    help="folder for our trained bundles (SHA-256 of their weights go into the JSON; not in git)")
    ap.add_argument("--no-save-models", dest="save_models", action="store_const", const=None,
                    help="do not keep the trained bundles (their hashes are then not recorded)")
    args = ap.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or any(f < 2 for f in args.factors):
        ap.error("--seeds must be distinct and every --factors value ≥ 2")
    if args.converged_factors is None:
        args.converged_factors = list(args.factors)
    if not set(args.converged_seeds) <= set(args.seeds) or not set(args.converged_factors) <= set(args.factors):
        ap.error(f"--converged-seeds {args.converged_seeds} / --converged-factors {args.converged_factors} must be "
                 f"among --seeds {args.seeds} / --factors {args.factors}")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    hashes: dict = {}
    record = provenance(seeds=args.seeds, params={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                        argv=None if argv is None else ["benchmarks/isotropic.py", *argv])
    sim = run_simulated(args, hashes)
    worst = sim.pop("worst_cases", {})
    real = None if args.skip_real else run_real(args, hashes)
    prov = finish(provenance(seeds=args.seeds, data=hashes, params=record["params"],
                             argv=None if argv is None else ["benchmarks/isotropic.py", *argv]), t0)
    # the code that ran is the code at the start (a commit made during a long run must not be credited)
    for key in ("date_utc", "load_average_start", "git_commit", "source_sha256"):
        prov[key] = record[key]
    report = {"provenance": prov, "steps": args.steps, "seeds": args.seeds,
              "scaling": "none: every method's output is scored as it comes (no fit against the truth)",
              "ci": "bootstrap over independent volumes (phantom kinds × seeds), per-volume mean over XZ slices",
              "simulated": sim, "real": real, "worst_cases": worst}
    print("\n| factor | method | SSIM (95% CI, n volumes) | ours − method SSIM (95% CI) | NRMSE | PSNR |\n|---|---|---|---|---|---|")
    for fk, row in sim.items():
        for m in [m for m in METHODS if m in row]:
            s = row[m]
            d = s.get("ours_minus_this_ssim")
            dtxt = f"{d['mean']:+.3f} ({d['ci'][0]:+.3f}–{d['ci'][1]:+.3f})" if d else "—"
            print(f"| {fk[1:]} | {m} | {s['ssim']['mean']:.3f} ({s['ssim']['ci'][0]:.3f}–{s['ssim']['ci'][1]:.3f}, "
                  f"{s['ssim']['n']}) | {dtxt} | {s['nrmse']['mean']:.3f} | {s['psnr']['mean']:.2f} |")
    if real:
        print("real:", json.dumps({k: v for k, v in real.items() if not isinstance(v, list | tuple)}, indent=1))
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
