"""Time pySTED acquisitions (one 2D frame with bleaching) for benchmarks/smart_microscope.py.

Runs in the peer's own venv: ``python3 -m venv /tmp/venv-pysted && /tmp/venv-pysted/bin/pip install pysted``,
then ``/tmp/venv-pysted/bin/python benchmarks/peers/pysted_step.py SIZE REPEATS``; prints JSON
``{"seconds_per_step": ..., "size": ...}``. Parameters follow pySTED's README example (EGFP, 20 nm pixels,
10 µs dwell), with bleaching on: the same kind of step as our environment's (acquire + bleach).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from pysted import base


def main(size: int, repeats: int) -> None:
    egfp = {"lambda_": 535e-9, "qy": 0.6, "sigma_abs": {488: 0.08e-21, 575: 0.02e-21},
            "sigma_ste": {560: 1.2e-20, 575: 6.0e-21, 580: 5.0e-21}, "tau": 3e-09, "tau_vib": 1.0e-12,
            "tau_tri": 1.2e-6, "k0": 0, "k1": 1.3e-15, "b": 1.4, "triplet_dynamics_frac": 0}
    rng = np.random.default_rng(0)
    molecules = (rng.random((size, size)) < 0.02).astype(int) * 20
    microscope = base.Microscope(base.GaussianBeam(488e-9), base.DonutBeam(575e-9, zero_residual=0),
                                 base.Detector(noise=True, background=0), base.Objective(), base.Fluorescence(**egfp))
    datamap = base.Datamap(molecules, 20e-9)
    i_ex, _, _ = microscope.cache(datamap.pixelsize)
    datamap.set_roi(i_ex, "max")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        microscope.get_signal_and_bleach(datamap, datamap.pixelsize, 10e-6, 2e-6, 2.5e-3, bleach=True, update=True)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds_per_step": float(np.median(times)), "size": size, "repeats": repeats}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
