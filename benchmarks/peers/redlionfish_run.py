"""Run RedLionfish's CPU Richardson–Lucy (scipy FFT path) on a volume; print one JSON line.

Peer for ``benchmarks/deconvolve.py`` (section "speed"). Runs in the RedLionfish venv built by
``redlionfish_setup.sh`` (RedLionfish is never a dependency of fluorecon) and only exchanges ``.npy``
files with the benchmark, so the timings exclude process start-up and file I/O.

Usage::

    PY=$(benchmarks/peers/redlionfish_setup.sh)/bin/python
    $PY benchmarks/peers/redlionfish_run.py DATA.npy PSF.npy OUT.npy --iterations 10 --repeat 3 --workers 1

stdout (one JSON line): ``{"peer": "redlionfish", "version": ..., "method": "cpu", "iterations": 10,
"workers": 1, "seconds": [...], "best_s": ..., "shape": [...]}``. ``--workers`` sets scipy.fft's
thread count around the call (``scipy.fft.set_workers``); RedLionfish itself passes none (1 thread).
Bad input (missing file, not 3D): message on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("psf")
    ap.add_argument("out")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    for p in (a.data, a.psf):
        if not Path(p).is_file():
            print(f"error: {p} not found", file=sys.stderr)
            return 2
    data = np.load(a.data).astype(np.float32)
    psf = np.load(a.psf).astype(np.float32)
    if data.ndim != 3 or psf.ndim != 3:
        print(f"error: RedLionfish needs 3D data and PSF, got {data.shape} and {psf.shape}", file=sys.stderr)
        return 2
    from RedLionfishDeconv import doRLDeconvolutionFromNpArrays

    times = []
    out = None
    with scipy.fft.set_workers(a.workers):
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            out = doRLDeconvolutionFromNpArrays(data, psf, niter=a.iterations, method="cpu")
            times.append(time.perf_counter() - t0)
    if out is None:
        print("error: RedLionfish returned None", file=sys.stderr)
        return 1
    np.save(a.out, np.asarray(out, np.float32))
    print(json.dumps({"peer": "redlionfish", "version": importlib.metadata.version("redlionfish"), "method": "cpu",
                      "iterations": a.iterations, "workers": a.workers, "seconds": times, "best_s": min(times),
                      "shape": list(data.shape), "numpy": np.__version__, "scipy": scipy.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
