"""Out-of-core benchmark: RL deconvolution of an OME-Zarr volume ≥ 4× the worker memory limit, the
in-memory path on a volume that fits, learned denoising out of core, and 1 vs 2 workers.

Run:  .venv/bin/python benchmarks/scale.py            (defaults: ~6-8 min on 2 free cores)
      .venv/bin/python benchmarks/scale.py --quick    (small sizes, ~1 min: checks the script)
Writes benchmarks/scale.json and prints a markdown table (copied into benchmarks/scale.md).

What is measured
* (a) RL (3 iterations, Gaussian PSF 5×5×5) out of core: a LocalCluster of ``--workers`` workers ×
  1 thread with ``--worker-memory`` each; the volume is ≥ 4× the per-worker limit. Peak RSS of every
  worker process (psutil, sampled every 0.1 s) and throughput (voxels/s, end to end: read, RL,
  write, pyramid). The in-memory path (``richardson_lucy`` on a numpy volume that fits, torch on the
  same number of threads) gives the reference throughput.
* (a') learned denoising (tiny untrained 2D UNet; throughput only) out of core.
* (sched) the same RL job out of core with the threads scheduler (2 threads) and a LocalCluster
  (2 workers × 1 thread), alternated, best of 2, on ``--sched-shape`` (64×1024² by default: big
  enough that the per-run fixed costs do not dominate).
* (b) the same RL job with 1 and with 2 workers (1 thread each, 1 torch/FFT thread each): speed-up
  of the processing phase. Cluster start-up (one-time imports) and the warm-up of every worker on a
  small block are excluded; they are reported separately in the JSON.
Out-of-core throughput is reported for the processing phase (reading, RL, writing, pyramid) and end
to end (adding the LocalCluster start and the global decisions, which read the volume once).
The machine is shared with other engineers while this runs: timings are noisy and the 1→2 worker
speed-up is bounded by whatever else is running (the script records the load average).

Reproducibility (issue 15): a timing benchmark on deterministic synthetic data (``_chunk_data``, data
seed 0: every chunk's generator is seeded from the seed and the chunk's position), so it has no
``--seeds`` and no failure gallery. The JSON's ``provenance`` record (command, commit, source hash,
parameters, machine, load) states this and fingerprints every generated volume by its shape, chunking
and the SHA-256 (``array_hash``) of its first chunk.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _provenance import finish, provenance  # noqa: E402

DATA_SEED = 0
VOLUMES: dict = {}  # name → first chunk of each generated volume, hashed into the provenance record


def _chunk_data(block_info=None, seed=0):
    """Deterministic synthetic fluorescence for one chunk: sparse beads + filaments, blurred, Poisson."""
    from scipy import ndimage

    loc = block_info[None]["array-location"]
    shape = block_info[None]["chunk-shape"]
    s = hash((seed,) + tuple(a for a, _ in loc)) % (2**32)
    rng = np.random.default_rng(s)
    v = np.zeros(shape, np.float32)
    n = max(1, v.size // 2000)
    idx = tuple(rng.integers(0, d, n) for d in shape)
    v[idx] = rng.uniform(200, 1000, n).astype(np.float32)
    v[:, :, :: max(8, shape[2] // 16)] += 30.0
    v = ndimage.gaussian_filter(v, (1.0, 0.8, 0.8))
    return (rng.poisson(v + 10.0).astype(np.float32))


def first_chunk(shape, chunks, seed: int = DATA_SEED) -> np.ndarray:
    """The first chunk of the volume ``make_volume`` writes (its fingerprint in the provenance record)."""
    cs = tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))
    return _chunk_data({None: {"array-location": [(0, c) for c in cs], "chunk-shape": cs}}, seed=seed)


def make_volume(path: Path, shape, chunks, scheduler="threads") -> float:
    import dask.array as da

    from fluorecon.scale import write_ome_zarr

    VOLUMES[f"{Path(path).name}_{'x'.join(map(str, shape))}_first_chunk"] = first_chunk(shape, chunks)
    t = time.perf_counter()
    darr = da.map_blocks(_chunk_data, dtype=np.float32, chunks=tuple((c,) * (n // c) + ((n % c,) if n % c else ())
                                                                      for n, c in zip(shape, chunks, strict=True)),
                         meta=np.empty((0, 0, 0), np.float32))
    write_ome_zarr(path, darr, "ZYX", (0.3, 0.1, 0.1), chunks=chunks, levels=1, overwrite=True, scheduler=scheduler,
                   compression="blosc-lz4")
    return time.perf_counter() - t


class RssSampler:
    """Peak RSS of this process's children (dask workers) and of this process, sampled in a thread."""

    def __init__(self, interval=0.1):
        import psutil

        self.me = psutil.Process(os.getpid())
        self.interval = interval
        self.peak_child = 0
        self.peak_self = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                kids = self.me.children(recursive=True)
                rss = []
                for k in kids:
                    try:
                        rss.append(k.memory_info().rss)
                    except psutil.Error:
                        pass
                own = self.me.memory_info().rss
                self.peak_child = max([self.peak_child, *rss])
                self.peak_self = max(self.peak_self, own)
                self.peak_total = max(self.peak_total, own + sum(rss))
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


def rl_params(psf_shape=(5, 5, 5), sigma=(1.0, 0.8, 0.8), iterations=3):
    from fluorecon.physics.psf import gaussian_psf

    return {"psf": gaussian_psf(psf_shape, sigma), "iterations": iterations, "background": 10.0}


def run_ooc(op, inp: Path, out: Path, params, **kw):
    from fluorecon.scale import run_out_of_core

    with RssSampler() as rs:
        t = time.perf_counter()
        info = run_out_of_core(op, inp, out, params, overwrite=True, quiet=True, levels=1, **kw)
        dt = time.perf_counter() - t
    return info, dt, rs


def in_memory_rl(inp: Path, params, threads: int):
    import resource

    import torch

    from fluorecon.classical.deconvolve import richardson_lucy
    from fluorecon.io import read_image

    torch.set_num_threads(threads)
    x = read_image(inp).data.astype(np.float32)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    richardson_lucy(x, params["psf"], params["iterations"], background=params["background"])
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return x.size, dt, max(r0, r1)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the script in ~1 min)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="512MiB", help="per-worker limit, or 'none'")
    ap.add_argument("--big-shape", default="128,2048,2048")
    ap.add_argument("--fit-shape", default="128,512,512")
    ap.add_argument("--sched-shape", default="64,1024,1024",
                    help="volume of the threads-vs-LocalCluster comparison (large enough that the per-run fixed "
                         "costs do not dominate: ~6 s of blocks on 2 quiet cores)")
    ap.add_argument("--speedup-shape", default="64,1024,1024")
    ap.add_argument("--block-xy", type=int, default=256, help="Y/X size of the blocks in the sched/speedup parts")
    ap.add_argument("--learned-shape", default="4,1024,1024")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a temp dir, removed at the end)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: big,fit,sched,learned,speedup")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/scale.json; merged part by part)")
    a = ap.parse_args(argv)
    t_start = time.time()
    command = [__file__, *(sys.argv[1:] if argv is None else argv)]
    VOLUMES.clear()
    start = provenance(argv=command)
    if a.quick:
        a.big_shape, a.fit_shape, a.speedup_shape, a.learned_shape = "64,512,512", "64,256,256", "32,512,512", "8,256,256"
        a.sched_shape = "32,512,512"
        a.worker_memory = "768MiB"
    skip = set(a.skip.split(",")) - {""}
    shp = {k: tuple(int(v) for v in getattr(a, k).split(",")) for k in ("big_shape", "fit_shape", "sched_shape", "speedup_shape", "learned_shape")}
    from dask.utils import parse_bytes

    # 'none': no per-worker limit (the LocalCluster then also drops dask's malloc-trim setting)
    mem = None if a.worker_memory.lower() == "none" else parse_bytes(a.worker_memory)
    tmp = Path(a.tmp or tempfile.mkdtemp(prefix="fluorecon-scale-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    params = rl_params()
    out = Path(a.out) if a.out else HERE / ("scale.quick.json" if a.quick else "scale.json")
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, {platform.system()}; shared with other engineers during the run",
           "load_avg_start": os.getloadavg(), "rl": {"iterations": params["iterations"], "psf": "gaussian 5x5x5 sigma (1.0, 0.8, 0.8)"},
           "worker_memory_limit_bytes": mem, "workers": a.workers})

    def save():  # after every part, so that an interrupted run keeps what it measured
        out.write_text(json.dumps(res, indent=2, default=str) + "\n")

    try:
        # ---------------------------------------------------------------- (a) big volume out of core
        if "big" not in skip:
            big = tmp / "big.ome.zarr"
            gen = make_volume(big, shp["big_shape"], (shp["big_shape"][0], 128, 128))
            nbytes = int(np.prod(shp["big_shape"])) * 4
            info, dt, rs = run_ooc("deconvolve", big, tmp / "big-rl.ome.zarr", params, scheduler="distributed",
                                   n_workers=a.workers, threads_per_worker=1, memory_limit=mem)
            nvox = int(np.prod(shp["big_shape"]))
            proc = info["timing"]["blocks_s"] + info["timing"]["pyramid_s"]
            res["big"] = {"shape": shp["big_shape"], "bytes": nbytes, "ratio_to_worker_limit": nbytes / mem,
                          "generate_s": gen, "seconds": dt, "voxels_per_s_end_to_end": nvox / dt,
                          "timing": info["timing"], "voxels_per_s": nvox / proc, "chunks": info["chunks"],
                          "halo": info["halo"], "n_chunks": info["n_chunks"], "peak_worker_rss": rs.peak_child,
                          "peak_client_rss": rs.peak_self, "peak_total_rss": rs.peak_total,
                          "within_limit": rs.peak_child <= mem}
            print(f"big: {nbytes / 1e9:.2f} GB in {dt:.0f} s, {nvox / proc / 1e6:.2f} Mvox/s, peak worker RSS "
                  f"{rs.peak_child / 2**20:.0f} MiB (limit {mem / 2**20:.0f} MiB)", flush=True)
            shutil.rmtree(tmp / "big-rl.ome.zarr", ignore_errors=True)
            shutil.rmtree(big, ignore_errors=True)
            save()
        # ---------------------------------------------------------------- in-memory reference
        if "fit" not in skip:
            fit = tmp / "fit.ome.zarr"
            make_volume(fit, shp["fit_shape"], (shp["fit_shape"][0], 128, 128))
            nvox, dt, rss = in_memory_rl(fit, params, threads=a.workers)
            res["in_memory"] = {"shape": shp["fit_shape"], "seconds": dt, "voxels_per_s": nvox / dt, "torch_threads": a.workers,
                                "peak_rss": rss}
            # The same volume out of core, for a like-for-like ratio.
            info, dt2, rs = run_ooc("deconvolve", fit, tmp / "fit-rl.ome.zarr", params, scheduler="distributed",
                                    n_workers=a.workers, threads_per_worker=1, memory_limit=mem)
            proc = info["timing"]["blocks_s"] + info["timing"]["pyramid_s"]
            res["fit_out_of_core"] = {"seconds": dt2, "voxels_per_s_end_to_end": nvox / dt2, "voxels_per_s": nvox / proc,
                                      "timing": info["timing"], "peak_worker_rss": rs.peak_child}
            print(f"in memory: {nvox / dt / 1e6:.2f} Mvox/s; same volume out of core {nvox / proc / 1e6:.2f} Mvox/s", flush=True)
            save()
        # ---------------------------------------------------------------- threads vs LocalCluster, same job
        if "sched" not in skip:
            sh = shp["sched_shape"]
            bxy = (sh[0], a.block_xy, a.block_xy)
            sv = tmp / "sched.ome.zarr"
            make_volume(sv, sh, (sh[0], 128, 128))
            nvox = int(np.prod(sh))
            runs: dict = {}
            # alternate the schedulers so that a change of machine load hits both alike
            for _rep in range(2):
                for sched in ("threads", "distributed"):
                    load = os.getloadavg()[0]
                    kw = ({"n_workers": a.workers, "threads_per_worker": 1, "memory_limit": mem}
                          if sched == "distributed" else {"n_workers": a.workers})
                    info, dt, _ = run_ooc("deconvolve", sv, tmp / f"sched-{sched}.ome.zarr", params, scheduler=sched,
                                          chunks=bxy, **kw)
                    tm = info["timing"]
                    runs.setdefault(sched, []).append({"blocks_s": tm["blocks_s"], "pyramid_s": tm["pyramid_s"],
                                                       "start_s": tm["scheduler_start_s"], "setup_s": tm["setup_s"],
                                                       "end_to_end_s": dt, "load_avg_1min_before": load})
            best = {k: min(v, key=lambda r: r["blocks_s"] + r["pyramid_s"]) for k, v in runs.items()}
            thr = {k: nvox / (b["blocks_s"] + b["pyramid_s"]) for k, b in best.items()}
            res["schedulers"] = {"shape": sh, "chunks": list(bxy), "runs": runs,
                                 "voxels_per_s": thr, "distributed_over_threads": thr["distributed"] / thr["threads"],
                                 "load_avg_end": os.getloadavg()[0],
                                 "note": "processing phase (blocks + pyramid), best of 2 per scheduler; LocalCluster "
                                         f"{a.workers} workers x 1 thread (1 torch/FFT thread each), threads scheduler "
                                         f"{a.workers} threads; cluster start (one-time imports) and the warm-up of "
                                         "every worker on a small block are reported as start_s / setup_s"}
            print(f"threads {thr['threads'] / 1e6:.2f} Mvox/s, LocalCluster {thr['distributed'] / 1e6:.2f} Mvox/s: "
                  f"{res['schedulers']['distributed_over_threads']:.0%}", flush=True)
            save()
        # ---------------------------------------------------------------- learned denoising out of core
        if "learned" not in skip:
            import torch

            from fluorecon.learn.bundle import Bundle
            from fluorecon.learn.nets import UNet
            from fluorecon.learn.normalize import PercentileNormalizer

            torch.manual_seed(0)
            bdir = tmp / "tiny-bundle"
            Bundle(UNet(dim=2, depth=2, width=16), PercentileNormalizer(lo=[10.0], hi=[500.0])).save(bdir)
            lv = tmp / "learned.ome.zarr"
            make_volume(lv, shp["learned_shape"], (1, 512, 512))
            info, dt, rs = run_ooc("predict", lv, tmp / "learned-out.ome.zarr", {"model": str(bdir)},
                                   scheduler="distributed", n_workers=a.workers, threads_per_worker=1, memory_limit=mem * 2)
            nvox = int(np.prod(shp["learned_shape"]))
            res["learned"] = {"shape": shp["learned_shape"], "model": "UNet 2D depth 2 width 16 (untrained)",
                              "seconds": dt, "voxels_per_s": nvox / info["timing"]["blocks_s"], "timing": info["timing"], "peak_worker_rss": rs.peak_child,
                              "worker_memory_limit": mem * 2, "halo": info["halo"], "chunks": info["chunks"]}
            print(f"learned: {res['learned']['voxels_per_s'] / 1e6:.3f} Mvox/s", flush=True)
            save()
        # ---------------------------------------------------------------- (b) 1 vs 2 workers
        if "speedup" not in skip:
            sh = shp["speedup_shape"]
            bxy = (sh[0], a.block_xy, a.block_xy)
            sv = tmp / "sched.ome.zarr"
            if "sched" in skip or sh != shp["sched_shape"] or not sv.exists():
                sv = tmp / "speed.ome.zarr"
                make_volume(sv, sh, (sh[0], 128, 128))
            runs = {}
            # 1 thread per worker (and 1 torch/FFT thread): the speed-up of adding a worker, not of
            # letting a lone worker's FFTs use both cores; alternated, best of 2
            for _rep in range(2):
                for n in (1, 2):
                    load = os.getloadavg()[0]
                    info, dt, _ = run_ooc("deconvolve", sv, tmp / f"speed-{n}.ome.zarr", params, scheduler="distributed",
                                          n_workers=n, threads_per_worker=1, memory_limit=mem, chunks=bxy)
                    tm = info["timing"]
                    runs.setdefault(n, []).append({"seconds": tm["blocks_s"] + tm["pyramid_s"], "end_to_end_s": dt,
                                                   "start_s": tm["scheduler_start_s"], "setup_s": tm["setup_s"],
                                                   "load_avg_1min_before": load})
            times = {n: min(v, key=lambda r: r["seconds"]) for n, v in runs.items()}
            res["speedup"] = {"shape": sh, "chunks": list(bxy), "times": times, "runs": runs,
                              "speedup": times[1]["seconds"] / times[2]["seconds"], "load_avg_end": os.getloadavg()[0]}
            print(f"1→2 workers: {res['speedup']['speedup']:.2f}×", flush=True)
            save()
    finally:
        if a.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    res["load_avg_end"] = os.getloadavg()
    prov = provenance(seeds=[DATA_SEED], data=VOLUMES, argv=command,
                      params={**vars(a), "skipped": sorted(skip),
                              "rl": {k: (list(v.shape) if isinstance(v, np.ndarray) else v) for k, v in params.items()}})
    prov.update(date_utc=start["date_utc"], load_average_start=start["load_average_start"],
                deterministic=f"synthetic volumes from _chunk_data with data seed {DATA_SEED} (each chunk seeded by "
                              "the seed and its position); data entries: the first chunk of each generated volume; "
                              "timing benchmark: no seeds to vary, no failure gallery")
    res["provenance"] = finish(prov, t_start)
    if "big" in res and "in_memory" in res:
        res["ratio_out_of_core_vs_in_memory"] = res["big"]["voxels_per_s"] / res["in_memory"]["voxels_per_s"]
    save()
    print(table(res))
    print(f"wrote {out}")


def table(r: dict) -> str:
    mib = 2**20
    lines = ["| measurement | value |", "|---|---|"]
    if "big" in r and "voxels_per_s_end_to_end" in r["big"]:
        b = r["big"]
        lines += [f"| out-of-core RL volume | {'×'.join(map(str, b['shape']))} float32 = {b['bytes'] / 1e9:.2f} GB "
                  f"({b['ratio_to_worker_limit']:.1f}× the {r['worker_memory_limit_bytes'] / mib:.0f} MiB worker limit) |",
                  f"| workers × threads | {r['workers']} × 1 (LocalCluster), chunks {b['chunks']}, halo {b['halo']} |",
                  f"| throughput out of core (read + RL + write + pyramid) | {b['voxels_per_s'] / 1e6:.2f} Mvox/s |",
                  f"| end to end incl. cluster start and global decisions | {b['voxels_per_s_end_to_end'] / 1e6:.2f} Mvox/s "
                  f"({b['seconds']:.0f} s) |",
                  f"| peak RSS per worker | {b['peak_worker_rss'] / mib:.0f} MiB (within limit: {b['within_limit']}) |",
                  f"| peak RSS all processes | {b['peak_total_rss'] / mib:.0f} MiB |"]
    if "in_memory" in r:
        m = r["in_memory"]
        lines += [f"| in-memory RL ({'×'.join(map(str, m['shape']))}, torch {m['torch_threads']} threads) | "
                  f"{m['voxels_per_s'] / 1e6:.2f} Mvox/s, peak RSS {m['peak_rss'] / mib:.0f} MiB |"]
        if "fit_out_of_core" in r:
            f = r["fit_out_of_core"]
            lines += [f"| same volume out of core | {f['voxels_per_s'] / 1e6:.2f} Mvox/s "
                      f"({f['voxels_per_s'] / m['voxels_per_s']:.0%} of in-memory) |"]
    if "ratio_out_of_core_vs_in_memory" in r:
        lines += [f"| big out-of-core / in-memory throughput | {r['ratio_out_of_core_vs_in_memory']:.0%} (target ≥ 80 %) |"]
    if "schedulers" in r:
        sc = r["schedulers"]
        lines += [f"| same RL job, threads vs LocalCluster ({'×'.join(map(str, sc['shape']))}) | threads "
                  f"{sc['voxels_per_s']['threads'] / 1e6:.2f} Mvox/s, LocalCluster {sc['voxels_per_s']['distributed'] / 1e6:.2f}"
                  f" Mvox/s = {sc['distributed_over_threads']:.0%} (target ≥ 80 %) |"]
    if "learned" in r:
        lines += [f"| learned denoising out of core ({'×'.join(map(str, r['learned']['shape']))}) | "
                  f"{r['learned']['voxels_per_s'] / 1e6:.2f} Mvox/s |"]
    if "speedup" in r:
        s = r["speedup"]
        lines += [f"| 1 → 2 workers ({'×'.join(map(str, s['shape']))}) | {s['times'][1]['seconds']:.1f} s → "
                  f"{s['times'][2]['seconds']:.1f} s = {s['speedup']:.2f}× (target ≥ 1.7×; load avg before: "
                  f"{s['times'][1]['load_avg_1min_before']:.1f} / {s['times'][2]['load_avg_1min_before']:.1f}) |"]
    lines += [f"| date, machine | {r['date']}, {r['machine']} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
