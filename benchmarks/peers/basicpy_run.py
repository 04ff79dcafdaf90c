"""Run BaSiCPy on one stack (inside its own venv, see basicpy_setup.sh) and report the fit's CPU time.

    PEER_PYTHON basicpy_run.py STACK.npy OUT_PREFIX [--darkfield] [--threads 1]

Writes ``OUT_PREFIX_flatfield.npy`` (and ``_darkfield.npy``, ``_baseline.npy``) and prints one JSON line:
``process_s`` (CPU time of ``BaSiC.fit``, all threads), ``wall_s``, versions. Only the fit is timed
(loading and import are not).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import time

import numpy as np
import torch
from basicpy import BaSiC


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stack")
    ap.add_argument("out")
    ap.add_argument("--darkfield", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x = np.load(a.stack)
    b = BaSiC(get_darkfield=a.darkfield, fitting_mode="approximate", device="cpu")
    c0, w0 = time.process_time(), time.perf_counter()
    b.fit(x)
    c1, w1 = time.process_time(), time.perf_counter()
    np.save(a.out + "_flatfield.npy", np.asarray(b.flatfield, np.float32))
    np.save(a.out + "_darkfield.npy", np.asarray(b.darkfield, np.float32))
    if b.baseline is not None:
        np.save(a.out + "_baseline.npy", np.asarray(b.baseline, np.float32))
    print(json.dumps({"process_s": round(c1 - c0, 2), "wall_s": round(w1 - w0, 2), "threads": a.threads,
                      "versions": {p: md.version(p) for p in ("basicpy", "numpy", "scipy", "torch")}}))


if __name__ == "__main__":
    main()
