"""The composed forward model f: blur → sampling → camera.

``Forward`` maps a true (normalised) image y to what the microscope records, x = f(y). It is
used to simulate training pairs, and by the trust layer to check a reconstruction against the
observation (``expected(reconstruction)`` vs. the data, in units of the noise ``variance``).

``expected`` is noiseless and differentiable: torch in → torch out (gradients flow through the FFT
blur, block-mean sampling and the affine camera mean), NumPy in → NumPy out; leading axes are batch
axes. ``to_dict``/``from_dict`` give a JSON-serialisable description that bundles store: an analytic
PSF is stored as its parameters, a measured one as a nested list (or base64 ``float32`` when large).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.psf import make_psf
from fluorecon.physics.sampling import PADDINGS, fft_convolve, subsample
from fluorecon.validation import check_psf

__all__ = ["Forward"]

SCHEMA = 1
_LIST_LIMIT = 4096  # PSFs with more voxels are stored as base64 float32 instead of a nested list


class Forward:
    """Forward model of the microscope: ``x = camera(subsample(psf ⊛ y))``.

    Parameters
    ----------
    psf : array-like or dict, optional
        PSF array (unit sum after normalisation, centred at ``shape // 2``) or a PSF description
        for :func:`fluorecon.physics.psf.make_psf` such as ``{"kind": "gaussian", "shape": [15, 15],
        "sigma": 2.0}``. None: no blur.
    subsample : int or tuple of int, optional
        Integer block-mean factors for the trailing axes (detector pixels integrate). None: none.
    camera : Camera or dict, optional
        Noise model; None: ``expected`` returns the blurred/sampled signal and ``simulate`` adds no noise.
    padding : {"reflect", "constant", "periodic"}
        Boundary handling of the blur.

    Examples
    --------
    >>> fwd = Forward(psf={"kind": "gaussian", "shape": [9, 9], "sigma": 1.5}, camera=Camera(photons=50))
    >>> y = np.zeros((32, 32), np.float32); y[16, 16] = 1
    >>> x, y_ref = fwd.simulate(y, seed=0)
    >>> x.shape, float(fwd.expected(y).max()) > 100
    ((32, 32), True)
    >>> Forward.from_dict(fwd.to_dict()).to_dict() == fwd.to_dict()
    True
    """

    def __init__(self, psf: Any = None, subsample: int | Sequence[int] | None = None,
                 camera: Camera | dict | None = None, padding: str = "reflect"):
        self.psf_spec: dict[str, Any] | None = None
        if psf is None:
            self.psf = None
        elif isinstance(psf, dict):
            self.psf_spec = dict(psf)
            arr = make_psf(self.psf_spec)
            self.psf = check_psf(arr, arr.ndim)
        else:
            arr = np.asarray(psf.detach().cpu() if hasattr(psf, "detach") else psf)
            self.psf = check_psf(arr, max(arr.ndim, 1))
        if subsample is not None:
            f = np.atleast_1d(np.asarray(subsample)).ravel()
            if f.size == 0 or f.size > 3 or (f < 1).any() or not np.all(np.mod(f, 1) == 0):
                raise FluoreconError(f"subsample {subsample!r} must be 1–3 positive integers",
                                     hint="e.g. subsample=2 or (1, 2, 2)")
            subsample = int(f[0]) if f.size == 1 else tuple(int(v) for v in f)
            if subsample == 1:
                subsample = None
        self.subsample = subsample
        if isinstance(camera, dict):
            camera = Camera(**camera)
        if camera is not None and not isinstance(camera, Camera):
            raise FluoreconError(f"camera must be a fluorecon Camera or a dict, got {type(camera).__name__}",
                                 hint="e.g. Camera(photons=100, gain=2, offset=100, read_noise=1.5)")
        self.camera = camera
        if padding not in PADDINGS:
            raise FluoreconError(f"unknown padding {padding!r}", hint=f"use one of {', '.join(PADDINGS)}")
        self.padding = padding
        self._psf_cache: dict[tuple, Any] = {}

    # ------------------------------------------------------------------------------------------
    def _psf_like(self, t):
        key = (t.dtype, t.device)
        if key not in self._psf_cache:
            import torch

            self._psf_cache[key] = torch.as_tensor(self.psf, dtype=t.dtype, device=t.device)
        return self._psf_cache[key]

    def _check_input(self, y: Any):
        import torch

        if isinstance(y, torch.Tensor):
            t = y if y.is_floating_point() else y.to(torch.float32)
            is_np = False
        else:
            from fluorecon.validation import to_numpy

            arr = to_numpy(y, "image")
            if arr.dtype.kind not in "biuf":
                raise FluoreconError(f"image must be numeric, got dtype {arr.dtype}", hint="pass a float array")
            if arr.size == 0:
                raise FluoreconError("image is empty", hint="pass a non-empty image")
            if not np.isfinite(arr).all():
                raise FluoreconError("image contains NaN or Inf", hint="replace them first (np.nan_to_num)")
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32))
            is_np = True
        if self.psf is not None and t.ndim < self.psf.ndim:
            raise FluoreconError(f"image has {t.ndim} dimensions but the forward model's PSF has {self.psf.ndim}",
                                 hint="use a PSF with as many dimensions as the image's spatial axes")
        return t, is_np

    def signal(self, y: Any):
        """Blur and sample ``y`` (no camera): the noiseless signal at the detector, in y's units.

        Examples
        --------
        >>> Forward(subsample=2).signal(np.ones((4, 4))).shape
        (2, 2)
        """
        t, is_np = self._check_input(y)
        out = t
        if self.psf is not None:
            k = self._psf_like(t)
            spatial = tuple(t.shape[-self.psf.ndim:])
            if self.padding == "periodic" and any(p > n for p, n in zip(self.psf.shape, spatial, strict=True)):
                import torch

                k = torch.as_tensor(check_psf(self.psf, t.ndim, t.shape), dtype=t.dtype, device=t.device)
            out = fft_convolve(out, k, padding=self.padding)
        if self.subsample is not None:
            out = subsample(out, self.subsample, method="mean")
        if is_np:
            return out.detach().cpu().numpy()
        return out

    def expected(self, y: Any):
        """Noiseless expected recording ``E[x | y]`` (ADU when there is a camera). Differentiable.

        Examples
        --------
        >>> import torch
        >>> fwd = Forward(psf={"kind": "gaussian", "shape": [5, 5], "sigma": 1.0}, camera=Camera(photons=10))
        >>> y = torch.rand(1, 1, 8, 8, requires_grad=True)
        >>> fwd.expected(y).sum().backward(); y.grad.shape
        torch.Size([1, 1, 8, 8])
        """
        s = self.signal(y)
        if self.camera is None:
            return s
        return self.camera.expected(s)

    __call__ = expected

    def simulate(self, y: Any, seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Simulate one noisy recording of ``y``: returns ``(x, y_ref)`` as ``float32`` NumPy arrays.

        ``x`` is the camera output (ADU) of the blurred, sampled ``y``; ``y_ref`` is the ground truth
        ``y`` itself (at its original sampling — the target of a restoration). Without a camera, ``x``
        is the noiseless signal.
        """
        t, _ = self._check_input(y)
        s = self.signal(t.detach()).cpu().numpy()
        s = np.clip(s, 0, None)  # FFT round-off can make dark pixels −1e-8
        x = self.camera.simulate(s, seed=seed) if self.camera is not None else s.astype(np.float32)
        return x.astype(np.float32), t.detach().cpu().numpy().astype(np.float32)

    def variance(self, expected: Any):
        """Noise variance of a recording with mean ``expected`` (ADU²), from the camera model.

        Raises
        ------
        FluoreconError
            If the model has no camera (a noiseless model has no noise variance).
        """
        if self.camera is None:
            raise FluoreconError("this forward model has no camera, so it has no noise model",
                                 hint="build it with Forward(..., camera=Camera(...)) or fit one with "
                                      "fluorecon.physics.noise_model")
        return self.camera.variance(expected)

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (see :meth:`from_dict`)."""
        psf: dict[str, Any] | None
        if self.psf is None:
            psf = None
        elif self.psf_spec is not None:
            psf = {"spec": _jsonable(self.psf_spec)}
        elif self.psf.size <= _LIST_LIMIT:
            psf = {"shape": list(self.psf.shape), "values": self.psf.astype(float).tolist()}
        else:
            psf = {"shape": list(self.psf.shape), "dtype": "float32<",
                   "base64": base64.b64encode(self.psf.astype("<f4").tobytes()).decode("ascii")}
        sub = self.subsample
        return {
            "schema": SCHEMA,
            "psf": psf,
            "subsample": list(sub) if isinstance(sub, tuple) else sub,
            "camera": self.camera.to_dict() if self.camera is not None else None,
            "padding": self.padding,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Forward:
        """Rebuild a ``Forward`` from :meth:`to_dict` output."""
        if not isinstance(d, dict):
            raise FluoreconError("forward-model description must be a dict", hint="pass the output of Forward.to_dict()")
        if int(d.get("schema", 1)) > SCHEMA:
            raise FluoreconError(f"forward-model schema {d.get('schema')} is newer than this fluorecon ({SCHEMA})",
                                 hint="upgrade fluorecon")
        p = d.get("psf")
        psf: Any
        if p is None:
            psf = None
        elif "spec" in p:
            psf = dict(p["spec"])
        elif "values" in p:
            psf = np.asarray(p["values"], dtype=np.float32).reshape(p["shape"])
        elif "base64" in p:
            psf = np.frombuffer(base64.b64decode(p["base64"]), dtype="<f4").reshape(p["shape"]).astype(np.float32)
        else:
            raise FluoreconError("forward-model PSF entry not understood", hint="expected 'spec', 'values' or 'base64'")
        sub = d.get("subsample")
        return cls(psf=psf, subsample=tuple(sub) if isinstance(sub, list) else sub, camera=d.get("camera"),
                   padding=d.get("padding", "reflect"))

    def __repr__(self) -> str:
        psf = None if self.psf is None else (self.psf_spec.get("kind") if self.psf_spec else f"array{self.psf.shape}")
        return f"Forward(psf={psf}, subsample={self.subsample}, camera={self.camera!r})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
