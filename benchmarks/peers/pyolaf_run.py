"""Peer runner: Richardson–Lucy with pyolaf's projection algorithm on fluorecon's light-field kernels.

Runs in a separate venv with ``pyolaf`` (pip; CPU: its cupy fallback is numpy):

    /tmp/pyolaf-venv/bin/python benchmarks/peers/pyolaf_run.py IN.npz OUT.npz

``IN.npz`` holds ``kernels`` (D, N, N, K, K) from ``fluorecon.physics.lightfield.lightfield_kernels``,
``lightfield`` (Y, X) and ``iterations``. The projections follow ``pyolaf.project.LFM_forwardProject``:
for every depth and every source position behind a lenslet, the sub-grid of the volume is scattered
into a full-size image and convolved with its kernel by ``pyolaf.fftpack.cufftconvsum`` (batches of 15,
``mode="same"``). The back projection is the exact transpose (flipped kernels, sampled on the
sub-grid) with the same routine — pyolaf's own ``LFM_backwardProject`` uses separately computed
backward patterns of the same cost. Writes the volume and the seconds per iteration.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from pyolaf.fftpack import cufftconvsum


def _padded(h: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    k = h.shape[-1]
    hp = np.zeros((k + 2 * c, k + 2 * c), np.float32)
    oy, ox = 2 * c - a, 2 * c - b
    hp[oy:oy + k, ox:ox + k] = h
    return hp


def main(src: str, dst: str) -> None:
    d = np.load(src)
    kernels, lf, iters = d["kernels"], d["lightfield"].astype(np.float32), int(d["iterations"])
    nd, n = kernels.shape[0], kernels.shape[1]
    c = n // 2
    fwd = {(z, a, b): _padded(kernels[z, a, b], a, b, c) for z in range(nd) for a in range(n) for b in range(n)}
    bwd = {k: v[::-1, ::-1].copy() for k, v in fwd.items()}
    shape = lf.shape
    step = 15

    def forward(vol: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        buf, fil = [], []
        for (z, a, b), h in fwd.items():
            t = np.zeros(shape, np.float32)
            t[a::n, b::n] = vol[z, a::n, b::n]
            buf.append(t)
            fil.append(h)
            if len(buf) == step:
                out += cufftconvsum(np.stack(buf), np.stack(fil), mode="same")
                buf, fil = [], []
        if buf:
            out += cufftconvsum(np.stack(buf), np.stack(fil), mode="same")
        return out

    def backward(img: np.ndarray) -> np.ndarray:
        vol = np.zeros((nd, *shape), np.float32)
        for (z, a, b), h in bwd.items():
            vol[z, a::n, b::n] = cufftconvsum(img[None], h[None], mode="same")[a::n, b::n]
        return vol

    sens = np.clip(backward(np.ones(shape, np.float32)), 1e-6, None)
    x = np.full((nd, *shape), max(float(lf.sum()), 1e-6) / float(sens.sum()), np.float32)
    times = []
    for _ in range(iters):
        t0 = time.process_time()
        x = x * backward(lf / np.clip(forward(x), 1e-6, None)) / sens
        times.append(time.process_time() - t0)
    np.savez(dst, volume=x, cpu_s_per_iteration=np.array(times))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
