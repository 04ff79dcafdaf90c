"""The pseudo-inverse g, handcrafted: self-calibrated denoisers and deconvolution.

- :mod:`fluorecon.classical.denoise` — NLM, TV, wavelet, BM3D, tuned by J-invariant self-calibration.
- :mod:`fluorecon.classical.vst` — generalised Anscombe transform and its exact unbiased inverse.
- :mod:`fluorecon.classical.deconvolve` — Richardson–Lucy (accelerated, TV, Wiener–Butterworth), Wiener.
"""
