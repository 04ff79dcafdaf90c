"""Run pyfairsim (parameter estimation + reconstruction) on raw 2D-SIM frames; for benchmarks/sim.py.

Runs in the peer's own virtual environment (see benchmarks/README.md)::

    python3 -m venv /tmp/venv-fairsim && /tmp/venv-fairsim/bin/pip install pyfairsim
    /tmp/venv-fairsim/bin/python benchmarks/peers/pyfairsim_run.py IN.npz OUT.npz

IN.npz: ``raw`` (A·P, N, N) frames angle-major phase fastest, ``pixel_nm``, ``na``, ``wavelength_nm``,
``angles``, ``phases``, ``wiener``. OUT.npz: ``image`` (2N, 2N), ``seconds`` (estimation + reconstruction, wall), ``cpu_seconds`` (its process CPU time),
``k`` (A, 2) estimated order-1 shift vectors in FFT pixels (x, y as pyfairsim reports them), ``phases``.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
from pyfairsim.sim_algorithm.SIM_Parameters import Parameters
from pyfairsim.sim_algorithm.SIM_Utils import estimate_parameters, run_reconstruction
from pyfairsim.utils.tif import fft_images


def main(inp: str, out: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    d = np.load(inp)
    raw = d["raw"].astype(np.float64)
    n_dirs, n_ph = int(d["angles"]), int(d["phases"])
    n = raw.shape[-1]
    settings = {
        "directions": [{"number_bands": 2, "number_phases": n_ph, "px": -1, "py": -1,
                        "phases": list(2 * np.pi * np.arange(n_ph) / n_ph), "modulations": [1.0, 1.0],
                        "angle_intensity_factor": 1.0, "phase_intensity_factors": [1.0] * n_ph}
                       for _ in range(n_dirs)],
        "microscope_parameters": {"pixel_size": float(d["pixel_nm"]), "na": float(d["na"]),
                                  "wavelength": float(d["wavelength_nm"])},
        "sim_parameters": {"otf_correction": 1.0, "otf_type": "NONE", "otf_before_shift": True,
                           "attenuation_strength": 0.99, "attenuation_fwhm": 1.2, "use_attenuation": True,
                           "fit_band": 1, "fit_exclude": 0.6, "otf_file_location": None},
        "filter_parameters": {"wiener_filter_parameter": float(d["wiener"]), "apodization_cutoff": 2.0,
                              "apodization_bend": 0.9},
        "image_parameters": {"image_shape": [n, n], "ordering": "paz", "z_slice": 0, "background": 0.0,
                             "tile_size": n},
    }
    params = Parameters.from_dict(settings)
    t0 = time.perf_counter()
    c0 = time.process_time()
    fft = fft_images(list(raw), n_dirs, n_ph, 0.0)
    estimate_parameters(params, fft, False)
    result = run_reconstruction(params, fft)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    k = np.array([[dr.px, dr.py] for dr in params.directions])
    ph = np.array([dr.get_phases() for dr in params.directions])
    np.savez(out, image=np.real(result[0]).astype(np.float32), seconds=seconds, cpu_seconds=cpu_seconds, k=k, phases=ph)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
