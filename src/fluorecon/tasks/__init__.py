"""One module per reconstruction task, composing physics, classical/learned methods and trust.

- :mod:`fluorecon.tasks.denoise` — classical or learned denoising, output in the input's units.
- :mod:`fluorecon.tasks.deconvolve` — RL / Wiener / learned deconvolution with PSFs from any source.
- :mod:`fluorecon.tasks.isotropic` — self-supervised isotropic restoration of anisotropic stacks.
"""
