"""Deconvolution: Richardson–Lucy, Wiener, stopping rules and block processing (re-exports).

The implementation lives in :mod:`fluorecon.classical.rl` (Richardson–Lucy and its variants),
:mod:`fluorecon.classical.stopping` (ground-truth-free stopping rules),
:mod:`fluorecon.classical.wiener` (Wiener/Tikhonov) and :mod:`fluorecon.classical.blocks` (block
processing); the blur operator is :class:`fluorecon.physics.sampling.BlurOperator`. This module
keeps the historical import path.

Examples
--------
>>> from fluorecon.physics.psf import gaussian_psf
>>> img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
>>> richardson_lucy(img, gaussian_psf((7, 7), 1.5), iterations=5).shape
(32, 32)
"""

from __future__ import annotations

import numpy as np

from fluorecon.classical._common import (
    _EPS_SKIMAGE,
    PADDINGS,
    _as_image,
    _check_iterations,
    _device,
    _prep_psf,
    _torch_dtype,
    _warn,
    estimate_background,
)
from fluorecon.classical.blocks import (
    _block_slices,
    deconvolve_block,
    required_margin,
    richardson_lucy_blocks,
)
from fluorecon.classical.rl import (
    _rl_single,
    _tv_factor,
    richardson_lucy,
    select_iterations,
    wiener_butterworth_otf,
)
from fluorecon.classical.stopping import STOPS, _estimate_gain, _expected_deviance
from fluorecon.classical.wiener import _gcv_balance, _laplacian_otf, estimate_noise_std, wiener
from fluorecon.physics.sampling import BlurOperator as _Blur

__all__ = [
    "PADDINGS",
    "STOPS",
    "deconvolve_block",
    "estimate_background",
    "estimate_noise_std",
    "required_margin",
    "richardson_lucy",
    "richardson_lucy_blocks",
    "select_iterations",
    "wiener",
    "wiener_butterworth_otf",
]

# private names kept importable for existing callers (benchmarks, scale/)
_PRIVATE = (_EPS_SKIMAGE, _as_image, _check_iterations, _device, _prep_psf, _torch_dtype, _warn, _block_slices,
            _rl_single, _tv_factor, _estimate_gain, _expected_deviance, _gcv_balance, _laplacian_otf, _Blur, np)
