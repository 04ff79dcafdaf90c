"""Isotropic restoration benchmark: ours vs Z interpolation vs 3D Richardson–Lucy.

Simulated part: 3D phantoms (filaments, nuclei) with a known isotropic truth — the object blurred by
the *lateral* PSF in all three directions, which is what an isotropic restoration can at best reach —
are imaged with an elongated axial PSF (axial σ = 3× lateral), point-sampled every ``f`` planes
(f = 2, 4, 8) and given Poisson–Gaussian noise. Metrics (SSIM, NRMSE, PSNR) are computed on XZ views
(every Y row), with bootstrap 95 % CIs over slices pooled across phantoms. Every learned run has the
same fixed training budget: ``--steps`` optimiser steps for ours (batch 16, 64² patches, 2 threads);
CSBDeep's isotropic CARE (peer venv, ``benchmarks/peers/``) gets the same CPU-seconds that our run used. RL uses the anisotropic
PSF and, to favour the baseline, its best iteration count from {5, 10, 20, 40} chosen with the truth.

Real part: ``../shared/data/deconwolf-dapi-widefield`` (130 nm pixels, 300 nm steps) resampled
laterally to 150 nm so that the Z factor is exactly 2. No truth: the stack is split into even and
odd planes (two independent half-stacks, Z factor 4 each), each is restored independently, and the
Fourier shell correlation between the two restorations along Z (XZ-plane FRC, 1/7 threshold) is
compared with the same split for linear interpolation. An XZ figure is saved.

Usage: python benchmarks/isotropic.py [--steps 600] [--factors 2 4 8] [--quick] [--skip-real] [--no-peer]
Writes benchmarks/isotropic.json and benchmarks/figures/isotropic_*.png; prints a table.
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
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import bootstrap_ci, frc, nrmse, psnr, ssim
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom
from fluorecon.tasks import isotropic as iso

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


def run_csbdeep(py: Path, stack: np.ndarray, f: int, sigma: float, seconds: float) -> tuple[np.ndarray | None, dict]:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "stack.npy", Path(d) / "out.npy"
        np.save(src, stack.astype(np.float32))
        r = subprocess.run([str(py), str(HERE / "peers" / "csbdeep_isotropic.py"), str(src), str(dst), "--z-factor", str(f),
                            "--axial-sigma", f"{sigma:.4f}", "--seconds", f"{seconds:.1f}", "--clock", "cpu", "--seed", "0"],
                           capture_output=True, text=True)
        if r.returncode != 0 or not dst.exists():
            return None, {"error": r.stderr[-500:]}
        info = json.loads(r.stdout.strip().splitlines()[-1])
        return np.load(dst), info
METHODS = ("linear", "cubic", "rl", "csbdeep", "ours")
S_LAT, S_AX = 1.0, 3.0  # lateral and axial PSF σ in lateral pixels (axial FWHM 3× lateral)


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


def run_simulated(args) -> dict:
    kernel_sigma = float(np.sqrt(S_AX**2 - S_LAT**2))
    results: dict = {}
    peer = None if args.no_peer else csbdeep_python(build=args.build_peer)
    if peer is None and not args.no_peer:
        print("CSBDeep peer venv not found (build it with benchmarks/peers/csbdeep_setup.sh or --build-peer)")
    for f in args.factors:
        per_method: dict[str, dict[str, list[float]]] = {}
        timing: dict[str, float] = {}
        for kind in ("filaments", "nuclei"):
            shape = (8 * f * (2 if args.quick else 4) + 1, 64 if args.quick else 96, 64 if args.quick else 96)
            noisy, truth, _ = simulate(kind, shape, f, seed=11 + f)
            kern = iso.gaussian_kernel_1d(kernel_sigma)
            preds: dict[str, np.ndarray] = {}
            t = time.perf_counter()
            preds["linear"] = iso.interpolate_z(noisy, f, 1)
            preds["cubic"] = iso.interpolate_z(noisy, f, 3)
            timing["interp"] = timing.get("interp", 0) + time.perf_counter() - t
            best = None
            for its in (5, 10, 20, 40):
                t = time.perf_counter()
                r, _ = iso.rl_baseline(noisy, f, kern, iterations=its)
                dt = time.perf_counter() - t
                s = float(np.mean(xz_metrics(r, truth)["ssim"]))
                if best is None or s > best[0]:
                    best = (s, its, r, dt)
            preds["rl"] = best[2]
            timing["rl"] = timing.get("rl", 0) + best[3]
            per_method.setdefault("rl_iterations", {}).setdefault(kind, []).append(best[1])
            t, c = time.perf_counter(), time.process_time()
            bundle = iso.train_isotropic(noisy, f, kern, steps=args.steps, seed=0, device="cpu")
            cpu_s = time.process_time() - c
            res = iso.isotropic(noisy, z_factor=f, method="learned", axial_psf=kern, model=bundle, device="cpu")
            timing["ours"] = timing.get("ours", 0) + time.perf_counter() - t
            timing["ours_train_cpu_s"] = timing.get("ours_train_cpu_s", 0) + cpu_s
            preds["ours"] = res.volume
            if peer is not None:
                # Same training budget as ours, in CPU-seconds (robust to other load on the machine).
                out, pinfo = run_csbdeep(peer, noisy, f, kernel_sigma, cpu_s)
                if out is not None and out.shape == truth.shape:
                    preds["csbdeep"] = out.astype(np.float32)
                    timing["csbdeep_steps"] = timing.get("csbdeep_steps", 0) + pinfo.get("steps", 0)
                else:
                    print("csbdeep failed:", pinfo.get("error", out.shape if out is not None else None))
            timing["ours_steps"] = timing.get("ours_steps", 0) + int(res.bundle.provenance.get("steps", 0))
            for name, p in preds.items():
                m = xz_metrics(p, truth)
                d = per_method.setdefault(name, {"ssim": [], "nrmse": [], "psnr": []})
                for k in d:
                    d[k] += m[k]
        row = {}
        for name in [m for m in METHODS if m in per_method]:
            row[name] = {k: {"mean": float(np.mean(v)), "ci": list(bootstrap_ci(v, n=1000, seed=0)[1:])}
                         for k, v in per_method[name].items()}
        row["rl_iterations"] = per_method["rl_iterations"]
        row["seconds"] = {k: round(v, 1) for k, v in timing.items()}
        results[f"f{f}"] = row
        print(f"factor {f}: " + ", ".join(f"{n} SSIM {row[n]['ssim']['mean']:.3f}" for n in METHODS if n in row),
              flush=True)
    return results


def fsc_z(a: np.ndarray, b: np.ndarray) -> float:
    """Mean XZ-plane FRC resolution (cycles/pixel) between two restorations: higher is better."""
    vals = []
    for y in range(8, a.shape[1] - 8, max(1, a.shape[1] // 12)):
        r = frc(a[:, y, :], b[:, y, :])
        vals.append(r.resolution if np.isfinite(r.resolution) else 0.5)
    return float(np.mean(vals))


def run_real(args) -> dict | None:
    d = shared_data("deconwolf-dapi-widefield")
    if d is None:
        print("skip real data: ../shared/data/deconwolf-dapi-widefield not found")
        return None
    import tifffile

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
    out: dict = {"voxel_size_um": vs, "axial_excess_fwhm_um": excess}
    halves = [vol[0::2], vol[1::2]]
    recon: dict[str, list[np.ndarray]] = {"linear": [], "ours": []}
    for h in halves:
        recon["linear"].append(iso.interpolate_z(h, 4))
        r = iso.isotropic(h, voxel_size=(0.6, 0.15, 0.15), axial_fwhm=excess, steps=args.steps_real, seed=0,
                          device="cpu")
        recon["ours"].append(r.volume)
    # Odd planes start one raw plane (= 2 fine pixels) later: align before correlating.
    for name, (a, b) in recon.items():
        n_common = min(a.shape[0] - 2, b.shape[0])
        out[f"fsc_z_{name}_cycles_per_px"] = fsc_z(a[2: 2 + n_common], b[:n_common])
    full = iso.isotropic(vol, voxel_size=vs, axial_fwhm=excess, steps=args.steps_real, seed=0, device="cpu")
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
    ap.add_argument("--quick", action="store_true", help="small volumes, for a smoke run")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="skip CSBDeep isotropic CARE")
    ap.add_argument("--build-peer", action="store_true", help="build the CSBDeep venv if missing")
    ap.add_argument("--out", type=Path, default=HERE / "isotropic.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.time()
    sim = run_simulated(args)
    real = None if args.skip_real else run_real(args)
    report = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, 2 threads",
              "steps": args.steps, "simulated": sim, "real": real, "wall_s": round(time.time() - t0, 1)}
    print("\n| factor | method | SSIM (95% CI) | NRMSE | PSNR |\n|---|---|---|---|---|")
    for fk, row in sim.items():
        for m in [m for m in METHODS if m in row]:
            s = row[m]
            print(f"| {fk[1:]} | {m} | {s['ssim']['mean']:.3f} ({s['ssim']['ci'][0]:.3f}–{s['ssim']['ci'][1]:.3f}) | "
                  f"{s['nrmse']['mean']:.3f} | {s['psnr']['mean']:.2f} |")
    if real:
        print("real:", json.dumps({k: v for k, v in real.items() if not isinstance(v, list | tuple)}, indent=1))
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
