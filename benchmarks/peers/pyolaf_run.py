"""Peer runner: Richardson–Lucy whose projections are pyolaf's own ``LFM_forwardProject`` / ``LFM_backwardProject``.

Runs in a separate venv with ``pyolaf`` 0.2.1 (pip; on CPU its cupy fallback is numpy):

    /tmp/pyolaf-venv/bin/python benchmarks/peers/pyolaf_run.py IN.npz OUT.npz
    /tmp/pyolaf-venv/bin/python benchmarks/peers/pyolaf_run.py --project IN.npz OUT.npz

``IN.npz`` holds ``kernels`` (D, N, N, K, K) from ``fluorecon.physics.lightfield.lightfield_kernels`` and
``lightfield`` (Y, X); for RL also ``iterations`` (writes ``volume`` and ``cpu_s_per_iteration``), for
``--project`` also ``volume`` (D, Y, X) (writes ``forward`` = A·volume and ``backward`` = Aᵀ·lightfield).

The kernels are converted once (not timed) into pyolaf's own input format: forward patterns ``H`` and
backward patterns ``Ht`` as ``(N, N, D)`` object arrays of ``scipy.sparse.csr_matrix``, lenslet centres
``{"vox", "px"}`` and a ``Resolution`` dict, so that pyolaf's unmodified projection functions compute exactly
fluorecon's operator ``A`` (zero boundary) and its transpose. Every projection then runs inside pyolaf —
its index tables, pattern densification, scatter and batched ``cufftconvsum`` (``step`` = 15, pyolaf's
default), as pyolaf's own deconvolution examples call them once per iteration. Two deliberate differences
from a pyolaf-native run, both about *what* is computed, not how fast: ``Ht`` is the exact transpose of ``H``
(pyolaf's ``LFM_computeBackwardPatterns`` + ``normalizeHt`` normalise it per sensor pixel), so both RLs solve
the same problem; and the volume handed to ``LFM_forwardProject`` carries one zero row and column in front,
because pyolaf maps texture index ``t`` to image index ``t − 1`` and drops texture row/column 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from pyolaf.project import LFM_backwardProject, LFM_forwardProject
from scipy.sparse import csr_matrix

STEP = 15  # pyolaf's default batch of convolutions summed in one FFT call


class PyolafOperator:
    """fluorecon's light-field operator expressed in pyolaf's format and applied by pyolaf's functions.

    Parameters
    ----------
    kernels : ndarray (D, N, N, K, K)
        ``kernels[z, a, b]`` is the sensor pattern of a point at pixel ``(a, b)`` behind the centre
        lenslet (lenslet ``R``, ``K = (2R+1)·N``) of the window, as in ``lightfield_kernels``.
    shape : (int, int)
        Rectified light-field shape (multiples of ``N``).
    step : int
        Convolutions per ``cufftconvsum`` call.
    """

    def __init__(self, kernels: np.ndarray, shape: tuple[int, int], step: int = STEP):
        k = np.asarray(kernels, np.float32)
        if k.ndim != 5 or k.shape[1] != k.shape[2] or k.shape[3] != k.shape[4] or k.shape[3] % k.shape[1]:
            raise ValueError(f"kernels must be (D, N, N, K, K) with K a multiple of N, got {k.shape}")
        nd, n, kk = k.shape[0], k.shape[1], k.shape[3]
        if len(shape) != 2 or shape[0] % n or shape[1] % n or min(shape) <= 0:
            raise ValueError(f"light-field shape {shape} is not a positive multiple of Nnum={n}")
        self.nd, self.n, self.shape, self.step = nd, n, (int(shape[0]), int(shape[1])), int(step)
        rn = (kk // n - 1) // 2 * n                              # R·N: the window's centre lenslet starts here
        half = n // 2 + 1                                        # pyolaf's Nnum_half = ceil(N/2) for odd N
        ly, lx = self.shape[0] // n, self.shape[1] // n
        grid = np.stack(np.meshgrid(np.arange(ly) * n, np.arange(lx) * n, indexing="ij"), -1).astype(np.float64)
        # forward: texture row = vox + ceil(T/2) − half + a + 1 must be (padded) voxel row m·N + a + 1
        pad_shape = np.array([self.shape[0] + 1, self.shape[1] + 1])
        vox = grid + half - np.ceil(pad_shape / 2)
        # backward: sensor row = px + ceil(Y/2) − half + a must be m·N + a (texture index = sensor index)
        px = grid + half - np.ceil(np.array(self.shape) / 2)
        self.lens_centers = {"vox": vox, "px": px}
        self.resolution = {"TexNnum": np.array([n, n]), "TexNnum_half": np.array([half, half]),
                           "Nnum": np.array([n, n]), "Nnum_half": np.array([half, half]),
                           "texScaleFactor": np.array([1.0, 1.0]), "texMask": np.ones((n, n), np.int32),
                           "sensMask": np.ones((n, n), np.int32)}
        # H[a, b, z]: pyolaf convolves the scattered voxels with it in "same" mode (centre (S−1)//2), so the
        # kernel sits at offset (S−1)//2 − a − R·N; S = K + N − 1 is the smallest size holding every offset.
        s = kk + n - 1
        self.H = np.empty((n, n, nd), dtype=object)
        for a in range(n):
            for b in range(n):
                oy, ox = (s - 1) // 2 - a - rn, (s - 1) // 2 - b - rn
                for z in range(nd):
                    h = np.zeros((s, s), np.float32)
                    h[oy:oy + kk, ox:ox + kk] = k[z, a, b]
                    self.H[a, b, z] = csr_matrix(h)
        # Ht[a, b, z][δ + (S−1)//2] = A[p, p + δ] for a sensor pixel p at phase (a, b): the voxel p + δ has
        # phase (a + δ) mod N and sees p at kernel index −δ + its phase + R·N (zero outside the window).
        d = np.arange(-(rn + n - 1), rn + n)
        self.Ht = np.empty((n, n, nd), dtype=object)
        for a in range(n):
            pa = (a + d) % n
            ia = -d + pa + rn
            va = (ia >= 0) & (ia < kk)
            for b in range(n):
                pb = (b + d) % n
                ib = -d + pb + rn
                vb = (ib >= 0) & (ib < kk)
                mask = va[:, None] & vb[None, :]
                for z in range(nd):
                    ht = k[z][pa[:, None], pb[None, :], np.clip(ia, 0, kk - 1)[:, None],
                              np.clip(ib, 0, kk - 1)[None, :]]
                    self.Ht[a, b, z] = csr_matrix(np.where(mask, ht, 0).astype(np.float32))

    def forward(self, volume: np.ndarray) -> np.ndarray:
        """``A·volume`` by ``pyolaf.project.LFM_forwardProject``: (D, Y, X) → (Y, X)."""
        if volume.shape != (self.nd, *self.shape):
            raise ValueError(f"volume shape {volume.shape} does not match {(self.nd, *self.shape)}")
        real = np.zeros((self.shape[0] + 1, self.shape[1] + 1, self.nd), np.float32)
        real[1:, 1:] = np.moveaxis(volume, 0, -1)
        proj = LFM_forwardProject(self.H, real, self.lens_centers, self.resolution, np.array(real.shape[:2]),
                                  "full", step=self.step)
        return np.asarray(proj, np.float32)[: self.shape[0], : self.shape[1]]

    def backward(self, image: np.ndarray) -> np.ndarray:
        """``Aᵀ·image`` by ``pyolaf.project.LFM_backwardProject``: (Y, X) → (D, Y, X)."""
        if image.shape != self.shape:
            raise ValueError(f"light-field shape {image.shape} does not match {self.shape}")
        vol = LFM_backwardProject(self.Ht, np.asarray(image, np.float32), self.lens_centers, self.resolution,
                                  np.array(self.shape), "full", step=self.step)
        return np.ascontiguousarray(np.moveaxis(np.asarray(vol, np.float32), -1, 0))


def richardson_lucy(op: PyolafOperator, lf: np.ndarray, iters: int) -> tuple[np.ndarray, list[float]]:
    """RL with fluorecon's update (flat start at the data's total, sensitivity ``Aᵀ1``); CPU s per iteration."""
    sens = np.clip(op.backward(np.ones(op.shape, np.float32)), 1e-6, None)
    x = np.full((op.nd, *op.shape), max(float(lf.sum()), 1e-6) / float(sens.sum()), np.float32)
    times = []
    for _ in range(iters):
        t0 = time.process_time()
        x = x * op.backward(lf / np.clip(op.forward(x), 1e-6, None)) / sens
        times.append(time.process_time() - t0)
    return x, times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="input .npz (kernels, lightfield, iterations | volume)")
    ap.add_argument("dst", type=Path, help="output .npz")
    ap.add_argument("--project", action="store_true", help="one forward of `volume`, one back projection")
    args = ap.parse_args(argv)
    try:
        d = np.load(args.src)
        need = ("kernels", "lightfield", "volume" if args.project else "iterations")
        missing = [key for key in need if key not in d]
        if missing:
            raise ValueError(f"{args.src} lacks {', '.join(missing)}")
        lf = d["lightfield"].astype(np.float32)
        op = PyolafOperator(d["kernels"], lf.shape)
        if args.project:
            np.savez(args.dst, forward=op.forward(d["volume"].astype(np.float32)), backward=op.backward(lf))
            return
        iters = int(d["iterations"])
        if iters < 1:
            raise ValueError(f"iterations must be ≥ 1, got {iters}")
    except (OSError, ValueError) as e:
        print(f"pyolaf_run: {e}", file=sys.stderr)
        sys.exit(2)
    x, times = richardson_lucy(op, lf, iters)
    np.savez(args.dst, volume=x, cpu_s_per_iteration=np.array(times))


if __name__ == "__main__":
    main()
