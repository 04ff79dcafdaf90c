"""Training throughput and prediction speed of the restoration engine's U-Net (~0.33 M parameters).

Prints a table and writes ``train_throughput.json`` beside this script. Measures, on 2 CPU threads
(and on CUDA when present): training steps/s and patches/s at batch 16, 64² patches, for the full N2V
step (masking + forward + backward + Adam) and for a plain supervised step; prediction time of a
1024² image (no-grad, inference mode, channels_last, whole image or tiles). ``--peer`` also runs
careamics N2V (built by the denoise engineer at ``$HOME/.cache/peer-careamics``) through
``../shared/peers/careamics_n2v.py`` for the same wall time and reports its steps/s beside ours.

The machine is shared: the table reports the CPU time our process got (cpu_s / wall_s) so contention
is visible; steps are counted, not only seconds.

Usage: python benchmarks/train_throughput.py [--seconds 20] [--peer] [--threads 2]

Two more parts (issue 14, prediction speed against careamics):

* ``--predict-peer``: prediction of one 1024² image (the four 512² noisy images of
  ``fmd-dev-pairs``' BPAE confocal/two-photon set, tiled 2×2) with the N2V network of
  ``fluorecon denoise --method n2v`` (UNet depth 2, width 32, with its normaliser): one plain pass,
  exact blind-spot inference (16 passes, the default of ``denoise --method n2v``) and first-order
  corrected inference (``predict_j_invariant(mode="linear")``), side by side with careamics'
  ``CAREamist.predict`` on the same image in its own venv (``peers/careamics_predict_time.py``).
  Wall time (best of ``--repeats``) and CPU time; run it on a quiet machine. Writes
  ``train_throughput_predict.json``.
* ``--jinv-tune``: quality of those inference modes on the tuning pairs ``fmd-dev-pairs`` (never on
  the FMD benchmark images): an N2V network is trained on each noisy image (``--tune-steps``
  steps, seeds ``--seeds``) and every mode's PSNR to the averaged ground truth is reported, with the
  paired difference to exact blind-spot inference. Writes ``train_throughput_jinv.json``.

Reproducibility: every JSON gets a ``provenance`` record (command, code hash, the data by hash — the seeded
random training/prediction arrays of the speed rows, the ``fmd-dev-pairs`` files of the other parts — seeds,
parameters, machine, load). The speed parts are deterministic given their data (random arrays of seed 0,
untrained networks). ``--jinv-tune`` takes ``--seeds 0 1 2`` (or ``0,1,2``), reports per seed, the mean over
seeds with a 95 % t-interval of each mode's paired difference to exact inference, and draws each mode's
three lowest-PSNR images as ``<figures>/train_throughput_worst_<mode>.png``. ``--quick``: the speed rows at a
256² prediction image (tests); ``--out`` moves the speed JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gallery import Case, save_gallery, worst
from _provenance import finish, provenance
from _stats import mean_ci

FIGURES = Path(__file__).with_name("figures")


def train_data(scheme: str) -> np.ndarray:
    """The seeded random patches of a training-rate row (64 patches of 64², 1 or 2 channels)."""
    k = 2 if scheme == "care" else 1
    return np.random.default_rng(0).random((64, k, 1, 64, 64), dtype=np.float32)


def predict_data(size: int = 1024) -> np.ndarray:
    """The seeded random image of a prediction row."""
    return np.random.default_rng(0).random((size, size), dtype=np.float32)


def parse_seeds(tokens) -> list[int]:
    """``["0", "1"]`` or ``["0,1"]`` (the older comma form) → ``[0, 1]``.

    >>> parse_seeds(["0,1", "2"])
    [0, 1, 2]
    """
    return [int(v) for t in tokens for v in str(t).split(",") if v.strip()]


EXACT = "exact blind spot (16 passes)"
MODES = ("plain (1 pass)", "linear-corrected", "linear-corrected, 4 bins")


def per_seed_summary(rows: list[dict]) -> dict:
    """Per seed: the mean over images of each mode's PSNR − exact; across seeds: mean and 95 % t-interval."""
    seeds = sorted({r["seed"] for r in rows})
    per = {str(s): {m: float(np.mean([r[m] - r[EXACT] for r in rows if r["seed"] == s])) for m in MODES}
           for s in seeds}
    return {"seeds": seeds, "per_seed_mean_minus_exact_db": per,
            "over_seeds": {m: mean_ci([per[str(s)][m] for s in seeds]) for m in MODES}}


def _train_rate(scheme: str, seconds: float, device: torch.device) -> dict:
    from fluorecon.learn.nets import UNet, n_parameters
    from fluorecon.learn.schemes import get_scheme
    from fluorecon.learn.train import TrainConfig

    cfg = TrainConfig(scheme=scheme)
    net = UNet(dim=2, depth=2, width=32, residual=False).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = get_scheme(scheme)
    gen = torch.Generator().manual_seed(0)
    data = torch.as_tensor(train_data(scheme), device=device)
    steps = 0
    # warm-up (first-call allocations)
    for _ in range(2):
        loss = loss_fn(net, data[:16], gen, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        i = (steps * 16) % 48
        loss = loss_fn(net, data[i:i + 16], gen, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"what": f"train {scheme}", "device": str(device), "params": n_parameters(net), "steps": steps,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "steps_per_s": round(steps / wall, 3),
            "patches_per_s": round(16 * steps / wall, 2)}


def _predict_rate(device: torch.device, tile, repeats: int = 2, size: int = 1024) -> dict:
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.predict import predict

    net = UNet(dim=2, depth=2, width=32, residual=False)
    x = predict_data(size)
    predict(net, x[:256, :256], "YX", tile=None, device=str(device))
    best, cpu = 1e9, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        predict(net, x, "YX", tile=tile, device=str(device))
        best = min(best, time.perf_counter() - t0)
        cpu = time.process_time() - c0
    return {"what": f"predict {size}² tile={tile}", "device": str(device), "wall_s": round(best, 3),
            "cpu_s": round(cpu, 2), "mpx_per_s": round(size * size / 1e6 / best, 3)}


def _peer(seconds: float) -> dict | None:
    venv = Path(os.environ.get("HOME", "~")) / ".cache" / "peer-careamics" / "bin" / "python"
    script = Path(__file__).resolve().parents[2] / "shared" / "peers" / "careamics_n2v.py"
    from fluorecon.datasets import shared_data

    data = shared_data("fmd-confocal-pairs")
    if not venv.exists() or not script.exists() or data is None:
        return None
    out = Path("/tmp/_peer_careamics_out.tif")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([str(venv), str(script), str(data / "noisy" / "fish.tif"), str(out), "--seconds", str(seconds)],
                       capture_output=True, text=True, env=env, timeout=seconds * 6 + 300)
    for line in reversed(r.stdout.strip().splitlines()):
        try:
            return {"what": "careamics N2V (peer)", **json.loads(line)}
        except json.JSONDecodeError:
            continue
    return {"what": "careamics N2V (peer)", "error": r.stderr[-500:]}


def _fmd_root() -> Path:
    from fluorecon.datasets import shared_data

    root = shared_data("fmd-dev-pairs")
    if root is None:
        raise SystemExit("fmd-dev-pairs is not in ../shared/data (set FLUORECON_SHARED_DATA)")
    return root


def _fmd_dev(name: str) -> tuple[np.ndarray, np.ndarray]:
    from skimage.io import imread

    root = _fmd_root()
    noisy = imread(root / "noisy" / f"{name}.png").astype(np.float32)
    gt = imread(root / "gt" / f"{name}.png").astype(np.float32)
    return (noisy[..., 0] if noisy.ndim == 3 else noisy), (gt[..., 0] if gt.ndim == 3 else gt)


def _modes(bundle, x: np.ndarray) -> dict:
    from fluorecon.learn.predict import predict, predict_j_invariant

    return {"plain (1 pass)": lambda: predict(bundle, x, "YX", tile="auto", device="cpu"),
            "exact blind spot (16 passes)": lambda: predict_j_invariant(bundle, x, "YX", mode="exact", device="cpu"),
            "linear-corrected": lambda: predict_j_invariant(bundle, x, "YX", mode="linear", bins=1, device="cpu"),
            "linear-corrected, 4 bins": lambda: predict_j_invariant(bundle, x, "YX", mode="linear", bins=4,
                                                                   device="cpu")}


def predict_peer(repeats: int, threads: int) -> dict:
    """Quiet-machine timing: our inference modes vs careamics' predict on one 1024² image."""
    import tempfile

    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer

    t_wall = time.time()
    names = ["Confocal_BPAE_B_1", "Confocal_BPAE_G_1", "TwoPhoton_BPAE_B_1", "TwoPhoton_BPAE_G_1"]
    tiles = [_fmd_dev(n)[0] for n in names]
    x = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]).astype(np.float32)
    torch.manual_seed(0)
    # the weights do not change the cost of a forward pass: an untrained network of the n2v size
    bundle = Bundle(UNet(dim=2, depth=2, width=32, residual=False).eval(), PercentileNormalizer(1, 99.8).fit(x),
                    config={"axes": "YX"})
    with open("/proc/loadavg") as fh:
        load0 = fh.read().split()[:3]
    rows = {}
    _modes(bundle, x[:256, :256])["plain (1 pass)"]()  # first-call allocations
    for name, fn in _modes(bundle, x).items():
        walls, cpus = [], []
        for _ in range(repeats if "16" not in name else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        rows[name] = {"wall_s": [round(w, 3) for w in walls], "cpu_s": [round(c, 2) for c in cpus]}
        print(name, rows[name], flush=True)
    peer = None
    from _peers import careamics_python

    py = careamics_python(build=False)
    if py is not None:
        with tempfile.TemporaryDirectory() as td:
            np.save(Path(td) / "x.npy", x)
            r = subprocess.run([str(py), str(Path(__file__).parent / "peers" / "careamics_predict_time.py"),
                                str(Path(td) / "x.npy"), "--repeats", str(repeats), "--threads", str(threads)],
                               capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)),
                               timeout=900, cwd=td)
        for line in reversed(r.stdout.strip().splitlines()):
            try:
                peer = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
        if peer is None:
            peer = {"error": r.stderr[-1000:]}
        print("careamics", peer, flush=True)
    with open("/proc/loadavg") as fh:
        load1 = fh.read().split()[:3]
    res = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "image": "1024x1024 (fmd-dev-pairs "
           + ", ".join(names) + " tiled 2x2)", "threads": threads, "torch": torch.__version__, "ours": rows,
           "careamics": peer, "loadavg_start": load0, "loadavg_end": load1,
           "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU"}
    if peer and "wall_s" in peer:
        best_peer = min(peer["wall_s"])
        res["speedup_vs_careamics_best"] = {k: round(best_peer / min(v["wall_s"]), 2) for k, v in rows.items()}
        res["speedup_vs_careamics_first_call"] = {k: round(peer["wall_s"][0] / min(v["wall_s"]), 2)
                                                  for k, v in rows.items()}
        print(res["speedup_vs_careamics_best"], flush=True)
    root = _fmd_root()
    res["provenance"] = finish(provenance(seeds=[0], data={
        f"fmd-dev-pairs/noisy/{n}.png": root / "noisy" / f"{n}.png" for n in names}, params={
        "repeats": repeats, "threads": threads, "deterministic": "untrained network of torch seed 0"}), t_wall)
    Path(__file__).with_name("train_throughput_predict.json").write_text(json.dumps(res, indent=2))
    return res


def jinv_tune(names: list[str], seeds: list[int], steps: int, out: Path, figures: Path = FIGURES) -> dict:
    """PSNR of the inference modes on the tuning pairs (fmd-dev-pairs), N2V trained per image and seed."""
    from fluorecon.learn.single_image import denoise_single_image

    t_wall = time.time()
    res = json.loads(out.read_text()) if out.exists() else {"rows": []}
    cases: dict[str, list[Case]] = {}
    for name in names:
        x, gt = _fmd_dev(name)
        rng = float(gt.max() - gt.min())
        for seed in seeds:
            _, info = denoise_single_image(x, "YX", steps=steps, seed=seed, device="cpu", progress=False,
                                           blind_spot_inference=False)
            row = {"image": name, "seed": seed, "steps": steps, "data_range": rng,
                   "noisy_psnr": round(float(10 * np.log10(rng**2 / np.mean((x - gt) ** 2))), 3)}
            for mode, fn in _modes(info["bundle"], x).items():
                c0 = time.process_time()
                y = fn()
                row[mode] = round(float(10 * np.log10(rng**2 / np.mean((y - gt) ** 2))), 3)
                row[mode + " cpu_s"] = round(time.process_time() - c0, 2)
                cases[mode] = worst([*cases.get(mode, []), Case(f"{name} seed {seed}", row[mode], {
                    "noisy": x, "result": np.asarray(y, np.float32), "reference": gt}, {"image": name, "seed": seed})])
            print(row, flush=True)
            res["rows"] = [r for r in res["rows"] if not (r["image"] == name and r["seed"] == seed)] + [row]
            out.write_text(json.dumps(res, indent=2))
    ex = "exact blind spot (16 passes)"
    summ = {}
    for mode in ("plain (1 pass)", "linear-corrected", "linear-corrected, 4 bins"):
        d = np.array([r[mode] - r[ex] for r in res["rows"]])
        if len(d) > 1:
            half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
            summ[mode] = {"mean_minus_exact_db": round(float(d.mean()), 3), "ci95": [round(float(d.mean() - half), 3),
                                                                                  round(float(d.mean() + half), 3)],
                          "n": int(len(d))}
    res["paired_vs_exact"] = summ
    res["per_seed"] = per_seed_summary(res["rows"])
    res["galleries"] = {}
    for mode, cs in cases.items():
        slug = mode.split(" (")[0].replace(",", "").replace(" ", "-")
        path = figures / f"train_throughput_worst_{slug}.png"
        res["galleries"][mode] = {"path": str(path), "metric": "psnr dB (this run's images × seeds)",
                                  "cases": save_gallery(cs, path, f"train_throughput --jinv-tune: worst, {mode}")}
    root = _fmd_root()
    imgs = sorted({r["image"] for r in res["rows"]})
    res["provenance"] = finish(provenance(seeds=sorted({r["seed"] for r in res["rows"]}), data={
        **{f"fmd-dev-pairs/noisy/{n}.png": root / "noisy" / f"{n}.png" for n in imgs},
        **{f"fmd-dev-pairs/gt/{n}.png": root / "gt" / f"{n}.png" for n in imgs}}, params={
        "images": names, "seeds_this_run": list(seeds), "tune_steps": steps,
        "note": "rows merged from earlier runs keep their own seeds/steps"}), t_wall)
    res["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out.write_text(json.dumps(res, indent=2))
    print(summ)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--predict-peer", action="store_true", help="1024² prediction: our modes vs careamics (quiet)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--jinv-tune", action="store_true", help="quality of the inference modes on fmd-dev-pairs")
    ap.add_argument("--images", default="Confocal_BPAE_R_1,Confocal_FISH_1,TwoPhoton_MICE_1")
    ap.add_argument("--seeds", nargs="+", default=["0"], help="--jinv-tune seeds (0 1 2 or 0,1,2)")
    ap.add_argument("--tune-steps", type=int, default=300)
    ap.add_argument("--jinv-out", default=None, help="JSON of --jinv-tune (default train_throughput_jinv.json; "
                                                      "merged, so runs split by image can share one file in turn)")
    ap.add_argument("--quick", action="store_true", help="speed rows with a 256² prediction image (tests)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"), help="JSON of the speed rows")
    ap.add_argument("--figures", type=Path, default=FIGURES, help="folder of the --jinv-tune galleries")
    a = ap.parse_args()
    a.seeds = parse_seeds(a.seeds)
    t_wall = time.time()
    torch.set_num_threads(a.threads)
    if a.predict_peer:
        predict_peer(a.repeats, a.threads)
        return
    if a.jinv_tune:
        jinv_tune(a.images.split(","), a.seeds, a.tune_steps,
                  Path(a.jinv_out) if a.jinv_out else Path(__file__).with_name("train_throughput_jinv.json"), a.figures)
        return
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for scheme in ("n2v", "care"):
            rows.append(_train_rate(scheme, a.seconds, dev))
        for tile in (None, (512, 512)):
            rows.append(_predict_rate(dev, tile, size=256 if a.quick else 1024))
    if a.peer:
        p = _peer(a.seconds)
        if p is not None:
            rows.append(p)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "threads": a.threads, "torch": torch.__version__,
            "loadavg_at_end": load, "caveat": "shared machine; compare cpu_s/wall_s for contention"}
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    print(meta)
    size = 256 if a.quick else 1024
    prov = provenance(seeds=[0], data={"train_patches_n2v": train_data("n2v"), "train_patches_care": train_data("care"),
                                       f"predict_image_{size}": predict_data(size)}, params={
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "batch": 16, "patch": 64,
        "net": "UNet depth 2 width 32", "deterministic": "timed code on seeded random data (seed 0), untrained nets"})
    out = a.out
    out.write_text(json.dumps({"meta": meta, "rows": rows, "provenance": finish(prov, t_wall)}, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
