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
    rng = np.random.default_rng(0)
    k = 2 if scheme == "care" else 1
    data = torch.as_tensor(rng.random((64, k, 1, 64, 64), dtype=np.float32), device=device)
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


def _predict_rate(device: torch.device, tile, repeats: int = 2) -> dict:
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.predict import predict

    net = UNet(dim=2, depth=2, width=32, residual=False)
    x = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    predict(net, x[:256, :256], "YX", tile=None, device=str(device))
    best, cpu = 1e9, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        predict(net, x, "YX", tile=tile, device=str(device))
        best = min(best, time.perf_counter() - t0)
        cpu = time.process_time() - c0
    return {"what": f"predict 1024² tile={tile}", "device": str(device), "wall_s": round(best, 3), "cpu_s": round(cpu, 2),
            "mpx_per_s": round(1.048576 / best, 3)}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for scheme in ("n2v", "care"):
            rows.append(_train_rate(scheme, a.seconds, dev))
        for tile in (None, (512, 512)):
            rows.append(_predict_rate(dev, tile))
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
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
