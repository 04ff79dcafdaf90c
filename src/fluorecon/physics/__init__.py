"""The forward model f: what the microscope does to the true image.

Submodules: ``psf`` (point-spread functions and OTFs), ``sampling`` (FFT blur, subsampling, axial
degradation), ``camera`` (shot/read/EM noise, gain, offset, quantisation, saturation),
``phantoms`` (seeded synthetic specimens), ``forward`` (the composed, differentiable ``Forward``)
and ``noise_model`` (Poisson–Gaussian fits from data). Import the submodules directly, e.g.
``from fluorecon.physics.forward import Forward``.
"""
