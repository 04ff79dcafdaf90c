"""Light-field benchmark: RL vs the pyolaf projection algorithm, RL vs learned on simulations, the real worm.

    .venv/bin/python benchmarks/lightfield.py [peer] [sim] [worm] [--pyolaf /tmp/pyolaf-venv/bin/python]

- ``peer``: the same operator (fluorecon's kernels) and the same RL, projected by fluorecon
  (lenslet-grid FFTs + batched matrix product) and by pyolaf's algorithm (one full-size FFT
  convolution per kernel and depth, ``pyolaf.fftpack.cufftconvsum``; ``peers/pyolaf_run.py``):
  CPU seconds per iteration (one thread each) and the correlation of the volumes.
- ``sim``: beads and filaments at several depths and two photon levels; RL (discrepancy stop, and the
  oracle-best iteration) vs the VCD-style network: PSNR/SSIM per depth against the truth, times.
- ``worm``: the rectified C. elegans light field (``../shared/data/lightfield-worm``), central crop,
  RL and learned, orthogonal max projections (``figures/lightfield_worm.png``) and the re-projection
  consistency ``1 − ‖A x − d‖² / ‖d − mean d‖²``.

Writes ``benchmarks/lightfield.json``. Timings are on a shared 2-core machine (load printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from fluorecon.classical.lightfield import richardson_lucy_lightfield
from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import psnr, ssim
from fluorecon.io import read_image
from fluorecon.learn.lightfield_net import predict_lightfield, train_lightfield_net
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics, simulate_lightfield

HERE = Path(__file__).parent
OUT = HERE / "lightfield.json"
SIM_OPTICS = LightFieldOptics(magnification=20, na=0.5, wavelength=0.52, medium_index=1.0, pitch=100.0, f_ml=2000.0,
                              nnum=7, osr=3)
WORM_OPTICS = LightFieldOptics(magnification=40, na=0.95, wavelength=0.52, medium_index=1.0, pitch=150.0,
                               f_ml=3000.0, nnum=15, osr=1)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _save(key: str, value: dict) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[key] = value
    OUT.write_text(json.dumps(data, indent=1))
    print(json.dumps({key: value}, indent=1), flush=True)


def _rl_cpu_per_iteration(lf: np.ndarray, op: LightFieldOperator, iters: int) -> tuple[np.ndarray, float]:
    times = []
    last = [time.process_time()]

    def cb(k, x):
        now = time.process_time()
        times.append(now - last[0])
        last[0] = now

    vol = richardson_lucy_lightfield(lf, op, iters, callback=cb)
    return vol, float(np.median(times))


def bench_peer(python: str) -> None:
    configs = [("nnum7_12x12_3depths", SIM_OPTICS, [-4.0, 0.0, 4.0], (84, 84), 5),
               ("nnum15_14x14_3depths_worm_optics", WORM_OPTICS, [-4.0, -2.0, 0.0], (210, 210), 2)]
    rows = []
    for name, optics, depths, shape, iters in configs:
        op = LightFieldOperator(optics, depths, shape)
        rng = np.random.default_rng(0)
        truth = (rng.random(op.volume_shape) < 0.01).astype(np.float32) * 100
        lf, _ = simulate_lightfield(truth, op, Camera(photons=1.0, gain=1.0, read_noise=1.0), seed=1)
        lf = np.clip(lf, 0, None)
        ours, t_ours = _rl_cpu_per_iteration(lf, op, iters)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(src, kernels=op.kernels, lightfield=lf, iterations=iters)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            subprocess.run([python, str(HERE / "peers" / "pyolaf_run.py"), str(src), str(dst)], check=True, env=env)
            peer = np.load(dst)
            theirs, t_theirs = peer["volume"], float(np.median(peer["cpu_s_per_iteration"]))
        corr = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
        rows.append({"config": name, "iterations": iters, "cpu_s_per_iteration_fluorecon": round(t_ours, 3),
                     "cpu_s_per_iteration_pyolaf_algorithm": round(t_theirs, 3),
                     "speedup": round(t_theirs / t_ours, 1), "volume_correlation": round(corr, 5),
                     "load": _load()})
        print(rows[-1], flush=True)
    _save("peer", {"rows": rows, "note": "same kernels and RL; pyolaf's projection algorithm and FFT routine "
                   "(pyolaf 0.2.1, numpy backend); CPU process time, one thread each, shared machine"})


def _volume(kind: str, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    d = shape[0]
    vol = np.zeros(shape, np.float32)
    rng = np.random.default_rng(seed)
    if kind == "beads":
        for _ in range(12):
            vol[rng.integers(d), rng.integers(6, shape[1] - 6), rng.integers(6, shape[2] - 6)] = 1.0
    else:
        for z in rng.choice(d, 2, replace=False):
            vol[z] = phantoms.filaments(shape[1:], seed=int(rng.integers(1 << 30)), n=3)
    return vol


def bench_sim(budget_s: float) -> None:
    torch.set_num_threads(1)
    depths = [-8.0, -4.0, 0.0, 4.0, 8.0]
    op = LightFieldOperator(SIM_OPTICS, depths, (84, 84))
    t0 = time.perf_counter()
    net, tinfo = train_lightfield_net(op, budget_s=budget_s, patch_lenslets=6, batch_size=4, width=16, seed=0,
                                      photons=(100.0, 5000.0))
    rows = []
    for kind in ("beads", "filaments"):
        for photons in (200.0, 2000.0):               # photons emitted by a voxel of value 1
            truth = _volume(kind, op.volume_shape, seed=1)
            scale = photons
            cam = Camera(photons=1.0, gain=1.0, offset=0.0, read_noise=1.0)
            lf, _ = simulate_lightfield(truth * scale, op, cam, seed=2)
            rng_max = float(truth.max() * scale)
            scores = []

            def cb(k, x, scores=scores, truth=truth, scale=scale, rng_max=rng_max):
                scores.append(psnr(x.numpy(), truth * scale, data_range=rng_max))

            t = time.perf_counter()
            vol_rl, info = richardson_lucy_lightfield(lf, op, 150, stop="discrepancy", gain=1.0, read_noise=1.0,
                                                      return_info=True, callback=cb)
            t_rl = time.perf_counter() - t
            t = time.perf_counter()
            vol_nn = predict_lightfield(net, lf, operator=op)
            t_nn = time.perf_counter() - t
            row = {"kind": kind, "photons_scale": photons, "rl_iterations": info["iterations"],
                   "rl_psnr": round(psnr(vol_rl, truth * scale, data_range=rng_max), 2),
                   "rl_best_psnr": round(max(scores), 2), "rl_best_iteration": int(np.argmax(scores)) + 1,
                   "learned_psnr": round(psnr(vol_nn, truth * scale, data_range=rng_max), 2),
                   "rl_ssim": round(float(ssim(vol_rl, truth * scale, data_range=rng_max)), 3),
                   "learned_ssim": round(float(ssim(vol_nn, truth * scale, data_range=rng_max)), 3),
                   "rl_corr": round(float(np.corrcoef(vol_rl.ravel(), truth.ravel())[0, 1]), 3),
                   "learned_corr": round(float(np.corrcoef(vol_nn.ravel(), truth.ravel())[0, 1]), 3),
                   "rl_psnr_per_depth": [round(psnr(vol_rl[z], truth[z] * scale, data_range=rng_max), 2)
                                         if truth[z].any() else None for z in range(len(depths))],
                   "learned_psnr_per_depth": [round(psnr(vol_nn[z], truth[z] * scale, data_range=rng_max), 2)
                                              if truth[z].any() else None for z in range(len(depths))],
                   "rl_seconds": round(t_rl, 3), "learned_inference_seconds": round(t_nn, 4),
                   "speed_ratio_rl_over_inference": round(t_rl / max(t_nn, 1e-6), 1), "load": _load()}
            rows.append(row)
            print(row, flush=True)
    _save("sim", {"rows": rows, "training": tinfo, "depths_um": depths, "optics": SIM_OPTICS.to_dict(),
                  "train_seconds": round(time.perf_counter() - t0, 1)})


def _consistency(op: LightFieldOperator, vol: np.ndarray, d: np.ndarray) -> float:
    r = op.forward(vol) - d
    return float(1 - np.sum(r**2) / np.sum((d - d.mean()) ** 2))


def bench_worm(budget_s: float) -> None:
    torch.set_num_threads(1)
    folder = shared_data("lightfield-worm")
    if folder is None:
        print("no worm data")
        return
    lf = read_image(folder / "20131219WORM2_small_full_neg_X1_N15_cropped_uncompressed.tif").data.astype(np.float32)
    crop = lf[15 * 10:15 * 34, 15 * 3:15 * 27]           # 24×24 lenslets around the worm
    depths = [-8.0, -4.0, 0.0, 4.0, 8.0]                  # both signs: which side the worm lies on is a check
    t = time.perf_counter()
    op = LightFieldOperator(WORM_OPTICS, depths, crop.shape)
    t_op = time.perf_counter() - t
    t = time.perf_counter()
    vol, info = richardson_lucy_lightfield(crop, op, 20, stop="auto", return_info=True)
    t_rl = time.perf_counter() - t
    net, tinfo = train_lightfield_net(op, budget_s=budget_s, patch_lenslets=6, batch_size=2, width=24, seed=0)
    t = time.perf_counter()
    vol_nn = predict_lightfield(net, crop, operator=op)
    t_nn = time.perf_counter() - t
    res = {"crop_lenslets": [24, 24], "depths_um": depths, "operator_seconds": round(t_op, 1),
           "rl_iterations": info["iterations"], "rl_stop": info["stop_reason"], "rl_seconds": round(t_rl, 1),
           "rl_consistency": round(_consistency(op, vol, crop), 3),
           "learned_consistency": round(_consistency(op, vol_nn, crop), 3), "learned_training": tinfo,
           "learned_inference_seconds": round(t_nn, 3), "rl_depth_fraction": np.round(
               vol.sum(axis=(1, 2)) / vol.sum(), 3).tolist(), "load": _load()}
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), gridspec_kw={"width_ratios": [3, 1, 3]})
    for row, (name, v) in enumerate((("RL", vol), ("learned", vol_nn))):
        dz = 4.0 / WORM_OPTICS.pixel_size        # z step in lateral pixels, for the aspect ratio
        axes[row, 0].imshow(v.max(axis=0), cmap="magma")
        axes[row, 0].set_title(f"{name}: XY max projection")
        axes[row, 1].imshow(v.max(axis=2).T, cmap="magma", aspect=1 / dz)
        axes[row, 1].set_title("YZ")
        axes[row, 2].imshow(v.max(axis=1), cmap="magma", aspect=dz)
        axes[row, 2].set_title("XZ")
    fig.suptitle("C. elegans light field (Prevedel et al. 2014), depths -8..8 µm every 4 µm")
    (HERE / "figures").mkdir(exist_ok=True)
    fig.savefig(HERE / "figures" / "lightfield_worm.png", dpi=80)
    res["figure"] = "benchmarks/figures/lightfield_worm.png"
    _save("worm", res)


if __name__ == "__main__":
    args = sys.argv[1:]
    python = "/tmp/pyolaf-venv/bin/python"
    if "--pyolaf" in args:
        python = args[args.index("--pyolaf") + 1]
    budget = float(os.environ.get("LF_BUDGET", "120"))
    print("load", _load(), flush=True)
    if "peer" in args:
        bench_peer(python)
    if "sim" in args:
        bench_sim(budget)
    if "worm" in args:
        bench_worm(budget)
