"""Light-field benchmark: RL vs RL on pyolaf's own projectors, RL vs learned on simulations, the real worm.

    .venv/bin/python benchmarks/lightfield.py [peer] [sim] [worm] [--pyolaf ~/.cache/peer-pyolaf/bin/python]
        [--seeds 0] [--budget 120] [--out benchmarks/lightfield.json] [--figures benchmarks/figures] [--quick]

- ``peer``: the same operator (fluorecon's kernels) and the same RL update, projected by fluorecon
  (lenslet-grid FFTs + batched matrix product) and by pyolaf 0.2.1's own, unmodified
  ``LFM_forwardProject`` / ``LFM_backwardProject`` (one full-size FFT convolution per pattern and depth,
  summed in batches of 15 by ``cufftconvsum``; numpy backend), fed with the kernels converted to
  pyolaf's pattern format (``peers/pyolaf_run.py``; the RL loop around them is ours): CPU seconds per
  iteration (one thread each) and the correlation of the volumes.
- ``sim``: beads and filaments at several depths and two photon levels; RL (discrepancy stop, and the
  oracle-best iteration) vs the VCD-style network: PSNR/SSIM per depth against the truth, times.
- ``worm``: the rectified C. elegans light field (``../shared/data/lightfield-worm``), central crop,
  RL and learned, orthogonal max projections (``figures/lightfield_worm.png``) and the re-projection
  consistency ``1 − ‖A x − d‖² / ‖d − mean d‖²``.

Writes ``benchmarks/lightfield.json``. Timings are on a shared 2-core machine (load printed). Every part's
entry holds a ``provenance`` record (command, code hash, data by hash: the simulated truths, the worm file;
seeds, parameters, machine, load). ``sim`` runs once per ``--seeds`` value s (network seed s, volumes seed
s + 1, noise seed s + 2: ``--seeds 0``, the default, is the reported run), reports per seed, the mean with a
95 % t-interval and the paired learned − RL difference per scene, and draws each method's three
lowest-PSNR scenes (max projections) as ``<figures>/lightfield_worst_<method>.png``. ``--quick``: a tiny
``sim`` (3 depths, 6×6 lenslets, 2 s of training, 10 RL iterations) for tests. ``--budget`` (default: the
``LF_BUDGET`` environment variable, else 120 s) is the learned network's training time.
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
sys.path.insert(0, str(HERE.resolve()))
from _gallery import Case, save_gallery, worst  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

OUT = HERE / "lightfield.json"
FIGURES = HERE / "figures"
SIM_OPTICS = LightFieldOptics(magnification=20, na=0.5, wavelength=0.52, medium_index=1.0, pitch=100.0, f_ml=2000.0,
                              nnum=7, osr=3)
WORM_OPTICS = LightFieldOptics(magnification=40, na=0.95, wavelength=0.52, medium_index=1.0, pitch=150.0,
                               f_ml=3000.0, nnum=15, osr=1)

# peer configurations: (name, optics, depths µm, light-field shape, RL iterations)
PEER_CONFIGS = [("nnum7_12x12_3depths", SIM_OPTICS, [-4.0, 0.0, 4.0], (84, 84), 5),
                ("nnum15_14x14_3depths_worm_optics", WORM_OPTICS, [-4.0, -2.0, 0.0], (210, 210), 2)]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _params(args: argparse.Namespace | None) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} if args is not None else {}


def _save(key: str, value: dict) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[key] = value
    OUT.write_text(json.dumps(data, indent=1, default=float))
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


def bench_peer(python: str, args: argparse.Namespace | None = None) -> None:
    t_wall = time.time()
    truths: dict[str, np.ndarray] = {}
    rows = []
    for name, optics, depths, shape, iters in PEER_CONFIGS:
        op = LightFieldOperator(optics, depths, shape)
        rng = np.random.default_rng(0)
        truth = (rng.random(op.volume_shape) < 0.01).astype(np.float32) * 100
        truths[f"truth_{name}"] = truth
        lf, _ = simulate_lightfield(truth, op, Camera(photons=1.0, gain=1.0, read_noise=1.0), seed=1)
        lf = np.clip(lf, 0, None)
        ours, t_ours = _rl_cpu_per_iteration(lf, op, iters)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(src, kernels=op.kernels, lightfield=lf, iterations=iters)
            # one thread each; TQDM_DISABLE silences pyolaf's per-call progress bars
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "TQDM_DISABLE": "1"}
            subprocess.run([python, str(HERE / "peers" / "pyolaf_run.py"), str(src), str(dst)], check=True, env=env)
            peer = np.load(dst)
            theirs, t_theirs = peer["volume"], float(np.median(peer["cpu_s_per_iteration"]))
        corr = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
        # the key keeps its old name (README, older JSON); since the audit fix it times pyolaf's own functions
        rows.append({"config": name, "iterations": iters, "cpu_s_per_iteration_fluorecon": round(t_ours, 3),
                     "cpu_s_per_iteration_pyolaf_algorithm": round(t_theirs, 3),
                     "pyolaf_projectors": "pyolaf.project.LFM_forwardProject/LFM_backwardProject (unmodified)",
                     "speedup": round(t_theirs / t_ours, 1), "volume_correlation": round(corr, 5),
                     "load": _load()})
        print(rows[-1], flush=True)
    # deterministic given the data: truth seed 0, noise seed 1
    prov = provenance(seeds=[0, 1], data=truths, params={**_params(args), "truth_seed": 0, "noise_seed": 1})
    _save("peer", {"rows": rows, "note": "same kernels and RL update; the peer's projections are pyolaf 0.2.1's own "
                   "LFM_forwardProject/LFM_backwardProject (numpy backend, step 15) on the kernels converted to "
                   "pyolaf's pattern format, with exact-transpose backward patterns; CPU process time, one thread "
                   "each, shared machine",
                   "provenance": finish(prov, t_wall)})


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


def bench_sim(budget_s: float, seeds: list[int] | None = None, quick: bool = False,
              args: argparse.Namespace | None = None) -> None:
    """RL vs learned on simulated volumes, once per seed s (network s, volumes s + 1, noise s + 2)."""
    torch.set_num_threads(1)
    t_wall = time.time()
    seeds = [0] if seeds is None else list(seeds)
    depths = [-4.0, 0.0, 4.0] if quick else [-8.0, -4.0, 0.0, 4.0, 8.0]
    op = LightFieldOperator(SIM_OPTICS, depths, (42, 42) if quick else (84, 84))
    rl_iters = 10 if quick else 150
    t0 = time.perf_counter()
    rows = []
    tinfos = []
    truths: dict[str, np.ndarray] = {}
    cases: dict[str, list[Case]] = {}
    for seed in seeds:
        net, tinfo = train_lightfield_net(op, budget_s=budget_s, patch_lenslets=6, batch_size=4, width=16, seed=seed,
                                          photons=(100.0, 5000.0))
        tinfos.append(tinfo)
        for kind, photons in _scenes(quick):           # photons emitted by a voxel of value 1
            truth = _volume(kind, op.volume_shape, seed=seed + 1)
            truths[f"truth_{kind}_seed{seed}"] = truth
            scale = photons
            cam = Camera(photons=1.0, gain=1.0, offset=0.0, read_noise=1.0)
            lf, _ = simulate_lightfield(truth * scale, op, cam, seed=seed + 2)
            rng_max = float(truth.max() * scale)
            scores = []

            def cb(k, x, scores=scores, truth=truth, scale=scale, rng_max=rng_max):
                scores.append(psnr(x.numpy(), truth * scale, data_range=rng_max))

            t = time.perf_counter()
            vol_rl, info = richardson_lucy_lightfield(lf, op, rl_iters, stop="discrepancy", gain=1.0, read_noise=1.0,
                                                      return_info=True, callback=cb)
            t_rl = time.perf_counter() - t
            t = time.perf_counter()
            vol_nn = predict_lightfield(net, lf, operator=op)
            t_nn = time.perf_counter() - t
            row = {"seed": seed, "kind": kind, "photons_scale": photons, "rl_iterations": info["iterations"],
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
            label = f"seed {seed} {kind} {photons:g} photons"
            ref = (truth * scale).max(axis=0)
            for name, vol in (("rl", vol_rl), ("learned", vol_nn)):
                # max projections over depth: the sparse volumes' middle plane may be empty
                cases[name] = worst([*cases.get(name, []), Case(label, row[f"{name}_psnr"], {
                    "light field": lf.astype(np.float32), "result": np.asarray(vol, np.float32).max(axis=0),
                    "reference": ref.astype(np.float32)}, {"seed": seed, "kind": kind, "photons": photons})], 3)
    figures = getattr(args, "figures", FIGURES)
    galleries = {name: {"path": str(figures / f"lightfield_worst_{name}.png"), "metric": "psnr (dB)",
                        "cases": save_gallery(cs, figures / f"lightfield_worst_{name}.png",
                                              f"lightfield.py sim: worst PSNR, {name} (max projections)")}
                 for name, cs in cases.items()}
    summary = {}
    for kind, photons in _scenes(quick):
        at = [r for r in rows if r["kind"] == kind and r["photons_scale"] == photons]
        summary[f"{kind}@{photons:g}"] = {
            "seeds": [r["seed"] for r in at], "rl_psnr": mean_ci([r["rl_psnr"] for r in at]),
            "learned_psnr": mean_ci([r["learned_psnr"] for r in at]),
            "learned_minus_rl_psnr": mean_ci([r["learned_psnr"] - r["rl_psnr"] for r in at])}
    prov = provenance(seeds=seeds, data=truths, params={
        **_params(args), "budget_s": budget_s, "quick": quick, "depths_um": depths, "rl_max_iterations": rl_iters,
        "network_seed": "s", "volume_seed": "s + 1", "noise_seed": "s + 2", "patch_lenslets": 6, "batch_size": 4,
        "width": 16, "train_photons": [100.0, 5000.0]})
    _save("sim", {"rows": rows, "training": tinfos[0], "training_per_seed": tinfos, "depths_um": depths,
                  "optics": SIM_OPTICS.to_dict(), "train_seconds": round(time.perf_counter() - t0, 1),
                  "summary": summary, "galleries": galleries, "provenance": finish(prov, t_wall)})


def _scenes(quick: bool) -> list[tuple[str, float]]:
    return [(k, p) for k in ("beads", "filaments") for p in ((2000.0,) if quick else (200.0, 2000.0))]


def _consistency(op: LightFieldOperator, vol: np.ndarray, d: np.ndarray) -> float:
    r = op.forward(vol) - d
    return float(1 - np.sum(r**2) / np.sum((d - d.mean()) ** 2))


def bench_worm(budget_s: float, args: argparse.Namespace | None = None) -> None:
    torch.set_num_threads(1)
    t_wall = time.time()
    folder = shared_data("lightfield-worm")
    if folder is None:
        print("no worm data")
        return
    worm_file = folder / "20131219WORM2_small_full_neg_X1_N15_cropped_uncompressed.tif"
    lf = read_image(worm_file).data.astype(np.float32)
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
    res["provenance"] = finish(provenance(seeds=[0], data={"lightfield-worm/" + worm_file.name: worm_file}, params={
        **_params(args), "budget_s": budget_s, "crop_lenslets": [24, 24], "crop_origin_lenslets": [10, 3],
        "network_seed": 0, "width": 24, "batch_size": 2, "rl_iterations": 20, "rl_stop": "auto"}), t_wall)
    _save("worm", res)


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", choices=("peer", "sim", "worm"), help="parts to run")
    ap.add_argument("--pyolaf", default=str(Path.home() / ".cache/peer-pyolaf/bin/python"),
                    help="python of a venv with pyolaf (benchmarks/peers/pyolaf_setup.sh creates it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="sim: seeds (network s, volumes s+1, noise s+2)")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("LF_BUDGET", "120")),
                    help="training seconds of the learned network (default $LF_BUDGET or 120)")
    ap.add_argument("--quick", action="store_true", help="sim: tiny sizes, 2 s of training (tests)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON (parts are merged into it)")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="folder of the worst-case galleries")
    args = ap.parse_args()
    OUT = args.out
    budget = 2.0 if args.quick else args.budget
    print("load", _load(), flush=True)
    if "peer" in args.parts:
        bench_peer(args.pyolaf, args)
    if "sim" in args.parts:
        bench_sim(budget, args.seeds, args.quick, args)
    if "worm" in args.parts:
        bench_worm(budget, args)


if __name__ == "__main__":
    main()
