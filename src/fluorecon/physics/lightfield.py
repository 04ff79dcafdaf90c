"""Light-field microscopy: the wave-optics forward model (Broxton et al. 2013) as periodic FFT kernels.

A microlens array (MLA) sits in the native image plane of a widefield microscope and the camera one
microlens focal length behind it. A point source at depth ``z`` produces, at the MLA, the objective's
Debye field (scalar, sine-condition apodised)

    U(r, z) ∝ ∫₀^α √cosθ · exp(i u sin²(θ/2) / (2 sin²(α/2))) · J₀(v sinθ / sinα) · sinθ dθ,
    v = k r sinα,  u = 4 k z sin²(α/2),  k = 2π n / λ,  sin α = NA / n,

(``r`` and ``z`` in object space, :func:`debye_field`), which every microlens multiplies by its
quadratic phase ``exp(−i k₀ |x − c|² / (2 f_ml))`` (square aperture of one pitch); the field then
propagates ``f_ml`` to the sensor (angular-spectrum transfer function) and the camera records
``|U|²`` binned to pixels. The computation runs ``osr`` samples per pixel and bins.

**Periodicity.** Moving a source by one lenslet moves its sensor pattern by exactly ``Nnum`` pixels,
so the operator is fully described by ``Nnum²`` shift-invariant kernels per depth, one per source
position ``(a, b)`` behind a lenslet (:func:`lightfield_kernels`). Splitting the volume into those
``Nnum²`` sub-grids and the light field into its ``Nnum²`` pixel phases (the "views"), the operator
becomes a convolution on the lenslet grid with an ``Nnum² × (depths·Nnum²)`` matrix of small
kernels: in Fourier space one small complex matrix–vector product per lenslet-grid frequency
(:class:`LightFieldOperator`). A forward or back projection costs ``depths·Nnum²`` tiny FFTs plus
one batched matrix product — no full-size FFT per kernel.

Conventions: the light field is *rectified* (``Nnum`` pixels per lenslet, lenslets aligned with the
pixel grid, lenslet centres at pixel ``Nnum // 2`` of every block); the volume ``(Z, Y, X)`` has
the light field's lateral grid (pixel = pitch / Nnum / M at the sample) and ``depths`` in µm
(0 = native object plane, negative towards the objective, as in the Prevedel/pyolaf files).

Examples
--------
>>> optics = LightFieldOptics(magnification=20, na=0.5, wavelength=0.52, medium_index=1.0,
...                           pitch=100.0, f_ml=2000.0, nnum=5, osr=1)
>>> op = LightFieldOperator(optics, depths=[-2.0, 0.0, 2.0], image_shape=(20, 20))
>>> vol = np.zeros((3, 20, 20), np.float32); vol[1, 12, 12] = 1.0
>>> lf = op.forward(vol)
>>> lf.shape, round(float(lf.sum()), 2)            # unit-sum kernels (a little light leaves the edge)
((20, 20), 1.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage, special

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera

__all__ = [
    "LightFieldForward",
    "LightFieldOperator",
    "LightFieldOptics",
    "check_rectified",
    "debye_field",
    "lightfield_kernels",
    "lightfield_views",
    "rectify",
    "simulate_lightfield",
    "views_to_lightfield",
]


@dataclass(frozen=True)
class LightFieldOptics:
    """The optics of a light-field microscope.

    Parameters
    ----------
    magnification : float
        Objective (+ tube lens) magnification onto the microlens array.
    na : float
        Objective numerical aperture.
    wavelength : float
        Emission wavelength in µm.
    medium_index : float
        Refractive index of the immersion / specimen medium.
    pitch : float
        Microlens pitch in µm (at the MLA, i.e. image space).
    f_ml : float
        Microlens focal length in µm (MLA–sensor distance).
    nnum : int
        Pixels per lenslet after rectification (odd).
    osr : int
        Wave-optics samples per pixel (odd; 3 is the usual oversampling).

    Examples
    --------
    >>> o = LightFieldOptics(40, 0.95, 0.52, 1.0, 150.0, 3000.0, 15)
    >>> o.pixel_size, o.lenslet_size
    (0.25, 3.75)
    """

    magnification: float
    na: float
    wavelength: float
    medium_index: float
    pitch: float
    f_ml: float
    nnum: int
    osr: int = 3

    def __post_init__(self) -> None:
        for name in ("magnification", "na", "wavelength", "medium_index", "pitch", "f_ml"):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise FluoreconError(f"light-field optics: {name} must be > 0, got {v}")
        if self.na >= self.medium_index:
            raise FluoreconError(f"NA {self.na} must be below the medium index {self.medium_index}",
                                 hint="check --na and --medium-index (air: 1.0, water: 1.33, oil: 1.518)")
        if int(self.nnum) != self.nnum or self.nnum < 3 or self.nnum % 2 == 0:
            raise FluoreconError(f"Nnum must be an odd integer ≥ 3, got {self.nnum}",
                                 hint="rectify the light field to an odd number of pixels per lenslet (e.g. 15)")
        if int(self.osr) != self.osr or self.osr < 1 or self.osr % 2 == 0:
            raise FluoreconError(f"osr must be an odd integer ≥ 1, got {self.osr}")

    @property
    def pixel_size(self) -> float:
        """Lateral voxel size at the sample (µm): pitch / Nnum / magnification."""
        return self.pitch / self.nnum / self.magnification

    @property
    def lenslet_size(self) -> float:
        """Microlens pitch at the sample (µm)."""
        return self.pitch / self.magnification

    @property
    def alpha(self) -> float:
        """Half-angle of the objective's acceptance cone (rad)."""
        return math.asin(self.na / self.medium_index)

    def radius_lenslets(self, depth: float) -> int:
        """Kernel half-width in lenslets for a source at ``depth`` (defocus cone + diffraction + 1)."""
        r = abs(depth) * math.tan(self.alpha) + 2.0 * self.wavelength / self.na
        return int(math.ceil(r / self.lenslet_size)) + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def debye_field(radius: np.ndarray, depth: float, optics: LightFieldOptics, n_theta: int | None = None) -> np.ndarray:
    """Scalar Debye field of a point source at ``depth`` µm, at object-space radii ``radius`` µm.

    Composite Simpson quadrature over the aperture angle (enough nodes for the fastest oscillation
    of ``J₀`` and of the defocus phase). Normalised so that the in-focus field at ``r = 0`` is 1.

    Examples
    --------
    >>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5)
    >>> u = debye_field(np.array([0.0, 0.61 * 0.52 / 0.5]), 0.0, o)   # centre and first Airy zero
    >>> round(float(abs(u[0])), 3), bool(abs(u[1]) < 0.02)
    (1.0, True)
    """
    r = np.asarray(radius, np.float64)
    k = 2 * np.pi * optics.medium_index / optics.wavelength
    a = optics.alpha
    s2 = np.sin(a / 2) ** 2
    v_max = k * float(np.max(r, initial=0.0)) * np.sin(a)
    u = 4 * k * depth * s2
    if n_theta is None:
        n_theta = int(min(8000, 64 + 4 * (v_max + abs(u) / 2)))
    n_theta += 1 - n_theta % 2                     # composite Simpson: an odd number of nodes
    th = np.linspace(0.0, a, n_theta)
    w = np.ones(n_theta)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w *= a / (n_theta - 1) / 3
    amp = np.sqrt(np.cos(th)) * np.sin(th) * w * np.exp(1j * u * np.sin(th / 2) ** 2 / (2 * s2))
    v = k * r.reshape(-1, 1) * np.sin(a)
    field = special.j0(v * np.sin(th) / np.sin(a)) @ amp
    norm = float(np.sum(np.sqrt(np.cos(th)) * np.sin(th) * w))
    return (field / norm).reshape(r.shape) * np.exp(-1j * u / (4 * s2))


def _source_pattern(optics: LightFieldOptics, radial: tuple[np.ndarray, np.ndarray], a: int, b: int, kl: int,
                    pad: int) -> np.ndarray:
    """Sensor intensity (``kl·N`` pixels square) of a source at pixel ``(a, b)`` behind the centre lenslet."""
    n, osr = optics.nnum, optics.osr
    c = n // 2
    dpx = optics.pitch / n                      # pixel in image space (µm)
    npx = (kl + 2 * pad) * n                    # window incl. propagation guard
    # sample coordinates in pixel units, pixel i centred on integer i; window pixel 0 = lenslet -pad-R
    rl = (kl - 1) // 2
    pix = (np.arange(npx * osr) - osr // 2) / osr - pad * n   # pixel coordinate of each sample
    src_y = rl * n + a
    src_x = rl * n + b
    yy = pix[:, None] - src_y
    xx = pix[None, :] - src_x
    r_obj = np.hypot(yy, xx) * dpx / optics.magnification
    rr, table = radial
    field = np.interp(r_obj, rr, table.real) + 1j * np.interp(r_obj, rr, table.imag)
    # microlens phase: local coordinate from the nearest lenslet centre (centres at pixel m·N + c)
    ly = (pix - c) - np.round((pix - c) / n) * n
    lam = optics.wavelength
    k0 = 2 * np.pi / lam
    phase_y = np.exp(-1j * k0 * (ly * dpx) ** 2 / (2 * optics.f_ml))
    field = field * phase_y[:, None] * phase_y[None, :]
    # angular-spectrum propagation over f_ml (image space is air)
    d = dpx / osr
    f = np.fft.fftfreq(npx * osr, d)
    fz2 = 1.0 / lam**2 - f[:, None] ** 2 - f[None, :] ** 2
    h = np.where(fz2 > 0, np.exp(2j * np.pi * optics.f_ml * np.sqrt(np.clip(fz2, 0, None))), 0)
    field = np.fft.ifft2(np.fft.fft2(field) * h)
    inten = np.abs(field) ** 2
    inten = inten.reshape(npx, osr, npx, osr).sum(axis=(1, 3))
    return inten[pad * n: (pad + kl) * n, pad * n: (pad + kl) * n]


def lightfield_kernels(optics: LightFieldOptics, depths: Any, radius_lenslets: int | None = None,
                       progress: Any = None) -> np.ndarray:
    """The ``Nnum²`` sensor patterns per depth: array ``(D, N, N, K, K)``, ``K = (2R+1)·N``.

    ``kernels[z, a, b]`` is the (unit-sum) light field of a point at pixel ``(a, b)`` behind the
    centre lenslet of the window (lenslet ``R``) at ``depths[z]`` µm. Computed for one quadrant of
    source positions and mirrored (the window is symmetric about the lenslet centre).

    Examples
    --------
    >>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
    >>> h = lightfield_kernels(o, [0.0], radius_lenslets=1)
    >>> h.shape, np.allclose(h[0, 0, 1], h[0, 4, 1][::-1])
    ((1, 5, 5, 15, 15), True)
    """
    d = np.atleast_1d(np.asarray(depths, np.float64))
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise FluoreconError(f"depths must be a non-empty list of finite numbers (µm), got {depths!r}")
    n = optics.nnum
    rl = int(radius_lenslets) if radius_lenslets is not None else max(optics.radius_lenslets(z) for z in d)
    kl = 2 * rl + 1
    pad = 1
    out = np.zeros((d.size, n, n, kl * n, kl * n), np.float32)
    c = n // 2
    rmax = math.sqrt(2) * (kl / 2 + pad + 1) * optics.lenslet_size + optics.pixel_size
    rr = np.linspace(0, rmax, int(rmax / (optics.pixel_size / optics.osr / 4)) + 2)
    total = d.size * (c + 1) ** 2
    done = 0
    for iz, z in enumerate(d):
        table = debye_field(rr, float(z), optics)
        for a in range(c + 1):
            for b in range(c + 1):
                h = _source_pattern(optics, (rr, table), a, b, kl, pad)
                h = (h / h.sum()).astype(np.float32)
                out[iz, a, b] = h
                out[iz, n - 1 - a, b] = h[::-1, :]
                out[iz, a, n - 1 - b] = h[:, ::-1]
                out[iz, n - 1 - a, n - 1 - b] = h[::-1, ::-1]
                done += 1
                if progress is not None:
                    progress(done / total, f"light-field PSF: depth {z:g} µm")
    return out


def check_rectified(shape: tuple[int, ...], nnum: int) -> tuple[int, int]:
    """Lenslets ``(Ly, Lx)`` of a rectified light field; a clear error when the size does not fit.

    Examples
    --------
    >>> check_rectified((30, 45), 15)
    (2, 3)
    """
    if len(shape) != 2:
        raise FluoreconError(f"a light field is one 2D image (YX), got shape {tuple(shape)}",
                             hint="give one rectified light-field frame")
    ly, lx = shape[0] // nnum, shape[1] // nnum
    if shape[0] % nnum or shape[1] % nnum or ly < 1 or lx < 1:
        raise FluoreconError(f"the light field's size {shape[0]}×{shape[1]} is not a multiple of Nnum={nnum}",
                             hint="rectify it first (lenslet centre and pitch in raw pixels) or check --nnum")
    return ly, lx


def lightfield_views(lf: np.ndarray, nnum: int) -> np.ndarray:
    """Rearrange a rectified light field ``(Ly·N, Lx·N)`` into its ``N²`` views ``(N, N, Ly, Lx)``.

    Examples
    --------
    >>> v = lightfield_views(np.arange(36.0).reshape(6, 6), 3)
    >>> v.shape, v[0, 0].tolist()
    ((3, 3, 2, 2), [[0.0, 3.0], [18.0, 21.0]])
    """
    arr = np.asarray(lf)
    ly, lx = check_rectified(arr.shape[-2:], nnum)
    lead = arr.ndim - 2
    perm = (*range(lead), lead + 1, lead + 3, lead, lead + 2)
    return arr.reshape(*arr.shape[:-2], ly, nnum, lx, nnum).transpose(perm)


def views_to_lightfield(views: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lightfield_views`.

    Examples
    --------
    >>> lf = np.arange(36.0).reshape(6, 6)
    >>> bool(np.array_equal(views_to_lightfield(lightfield_views(lf, 3)), lf))
    True
    """
    v = np.asarray(views)
    n, ly, lx = v.shape[-3], v.shape[-2], v.shape[-1]
    lead = v.ndim - 4
    perm = (*range(lead), lead + 2, lead, lead + 3, lead + 1)
    return v.transpose(perm).reshape(*v.shape[:-4], ly * n, lx * n)


def rectify(raw: np.ndarray, center: tuple[float, float], lenslet_px: float | tuple[float, float], nnum: int,
            n_lenslets: tuple[int, int] | None = None) -> np.ndarray:
    """Resample a raw light field onto the lenslet grid: ``nnum`` pixels per lenslet, centres aligned.

    Parameters
    ----------
    raw : array (Y, X)
        The camera frame.
    center : (float, float)
        Position (row, column, raw pixels) of the centre of the first (top-left) whole lenslet.
    lenslet_px : float or (float, float)
        Lenslet pitch in raw pixels (per axis).
    nnum : int
        Pixels per lenslet of the result (odd).
    n_lenslets : (int, int), optional
        Lenslets to keep; default all whole lenslets inside the frame.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((40, 40))
    >>> rectify(raw, (3.0, 3.0), 5.0, 5).shape            # integer pitch, aligned: a plain crop
    (35, 35)
    >>> bool(np.allclose(rectify(raw, (3.0, 3.0), 5.0, 5), raw[1:36, 1:36]))
    True
    """
    img = np.asarray(raw, np.float64)
    if img.ndim != 2:
        raise FluoreconError(f"rectify needs one 2D frame, got shape {img.shape}")
    p = np.broadcast_to(np.asarray(lenslet_px, np.float64), (2,))
    if np.any(p <= 1):
        raise FluoreconError(f"lenslet pitch must exceed 1 raw pixel, got {tuple(p)}")
    cy, cx = float(center[0]), float(center[1])
    # the first lenslet (its centre given) must lie whole inside the image; count those that follow
    avail = [math.floor((s - 0.5 - (cc + pp / 2)) / pp) + 1 for s, cc, pp in zip(img.shape, (cy, cx), p, strict=True)]
    inside = all(cc - pp / 2 >= -0.5 - 1e-9 for cc, pp in zip((cy, cx), p, strict=True))
    if not inside or min(avail) < 1:
        raise FluoreconError(f"the lenslet grid (first centre {tuple(center)}, pitch {tuple(p)} px) lies outside the "
                             f"{img.shape[0]}×{img.shape[1]} image",
                             hint="give the centre of the top-left whole lenslet (row, column) and the pitch in raw pixels")
    if n_lenslets is not None:
        if n_lenslets[0] > avail[0] or n_lenslets[1] > avail[1]:
            raise FluoreconError(f"{tuple(n_lenslets)} lenslets from {tuple(center)} run outside the image "
                                 f"({avail[0]}×{avail[1]} fit)", hint="fewer lenslets, or check the centre and pitch")
        avail = list(n_lenslets)
    c = nnum // 2
    coords = []
    for ax in range(2):
        j = np.arange(avail[ax] * nnum)
        lens = j // nnum
        coords.append((cy, cx)[ax] + lens * p[ax] + (j % nnum - c) * p[ax] / nnum)
    yy, xx = np.meshgrid(coords[0], coords[1], indexing="ij")
    return ndimage.map_coordinates(img, [yy, xx], order=1, mode="nearest").astype(np.float32)


class LightFieldOperator:
    """The light-field measurement operator ``A``: volume ``(D, Ly·N, Lx·N)`` → light field ``(Ly·N, Lx·N)``.

    Built from :func:`lightfield_kernels` (or given ``kernels``), for one light-field size. The
    kernels are stored as their lenslet-grid spectra, a ``(F, N², D·N²)`` complex matrix (F the
    half-spectrum size of the padded lenslet grid): a projection is ``D·N²`` small FFTs, one
    batched matrix product and ``N²`` inverse FFTs. :meth:`adjoint` is the exact transpose
    (dot-product test). Light leaving the field of view is lost (zero boundary).

    Parameters
    ----------
    optics : LightFieldOptics
    depths : sequence of float
        Depths in µm; the volume's Z order.
    image_shape : (int, int)
        Rectified light-field shape (multiples of Nnum).
    kernels : array (D, N, N, K, K), optional
        Precomputed kernels (default: computed).
    max_memory_gb : float
        Refuse operators whose spectra would need more memory than this.
    device : str

    Examples
    --------
    >>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
    >>> op = LightFieldOperator(o, [-1.0, 1.0], (10, 15))
    >>> x = np.random.default_rng(0).random((2, 10, 15)); y = np.random.default_rng(1).random((10, 15))
    >>> bool(np.isclose(np.sum(op.forward(x) * y), np.sum(x * op.adjoint(y)), rtol=1e-4))
    True
    """

    def __init__(self, optics: LightFieldOptics, depths: Any, image_shape: tuple[int, int], *,
                 kernels: np.ndarray | None = None, max_memory_gb: float = 4.0, device: str = "cpu",
                 progress: Any = None):
        self.optics = optics
        self.depths = [float(z) for z in np.atleast_1d(np.asarray(depths, np.float64))]
        n = optics.nnum
        self.nnum = n
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.lenslets = check_rectified(self.image_shape, n)
        if kernels is None:
            rl = max(optics.radius_lenslets(z) for z in self.depths)
            kl = 2 * rl + 1
            self._check_memory(kl, max_memory_gb)
            kernels = lightfield_kernels(optics, self.depths, rl, progress=progress)
        kernels = np.asarray(kernels, np.float32)
        if kernels.ndim != 5 or kernels.shape[1:3] != (n, n) or kernels.shape[3] % n or kernels.shape[0] != len(
                self.depths) or (kernels.shape[3] // n) % 2 == 0 or kernels.shape[3] != kernels.shape[4]:
            raise FluoreconError(f"kernels of shape {kernels.shape} do not fit {len(self.depths)} depths and Nnum={n}",
                                 hint="expected (D, N, N, (2R+1)·N, (2R+1)·N) from lightfield_kernels")
        self.kernels = kernels
        kl = kernels.shape[3] // n
        self.radius = (kl - 1) // 2
        self._check_memory(kl, max_memory_gb)
        self.device = torch.device(device)
        ly, lx = self.lenslets
        self.fft_shape = (max(ly + self.radius, kl), max(lx + self.radius, kl))
        d = len(self.depths)
        # polyphase: g[z, a1, a2, r1, r2, q1, q2] = h[z, a1, a2, q1·N + r1, q2·N + r2]
        g = torch.from_numpy(kernels).reshape(d, n, n, kl, n, kl, n).permute(0, 1, 2, 4, 6, 3, 5)
        g = g.reshape(d * n * n, n * n, kl, kl)
        fy, fx = self.fft_shape
        nf = fy * (fx // 2 + 1)
        # (F, N² out, D·N² in), filled one source class at a time to keep the peak memory low
        mat = torch.empty((nf, n * n, g.shape[0]), dtype=torch.complex64)
        for i in range(g.shape[0]):
            buf = torch.zeros(n * n, fy, fx)
            buf[:, :kl, :kl] = g[i]
            buf = torch.roll(buf, (-self.radius, -self.radius), dims=(1, 2))
            mat[:, :, i] = torch.fft.rfft2(buf).reshape(n * n, nf).T
        self._mat = mat.to(self.device)
        self._ones_adj: torch.Tensor | None = None

    def _check_memory(self, kl: int, max_memory_gb: float) -> None:
        ly, lx = self.lenslets
        n, d = self.nnum, len(self.depths)
        r = (kl - 1) // 2
        f = max(ly + r, kl) * (max(lx + r, kl) // 2 + 1)
        need = f * n**4 * d * 8 / 1e9
        if need > max_memory_gb:
            raise FluoreconError(
                f"the light-field operator for {d} depths, Nnum={n} and {ly}×{lx} lenslets needs {need:.1f} GB "
                f"(limit {max_memory_gb:g} GB)",
                hint="use fewer depths or a smaller depth range, crop the light field, or raise the memory limit")

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return (len(self.depths), *self.image_shape)

    def _as_tensor(self, x: Any) -> tuple[torch.Tensor, bool]:
        is_np = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, np.float32) if is_np else x, dtype=torch.float32, device=self.device)
        return t, is_np

    def forward(self, volume: Any) -> Any:
        """Project a volume ``(D, Y, X)`` to the light field ``(Y, X)`` (numpy or torch in, same out)."""
        v, is_np = self._as_tensor(volume)
        if tuple(v.shape) != self.volume_shape:
            raise FluoreconError(f"volume shape {tuple(v.shape)} does not match the operator's {self.volume_shape}",
                                 hint="one plane per depth, on the light field's lateral grid")
        n, d = self.nnum, len(self.depths)
        ly, lx = self.lenslets
        fy, fx = self.fft_shape
        cls = v.reshape(d, ly, n, lx, n).permute(0, 2, 4, 1, 3).reshape(d * n * n, ly, lx)
        vh = torch.fft.rfft2(cls, s=(fy, fx)).reshape(d * n * n, -1).T.unsqueeze(-1)   # (F, DN², 1)
        oh = torch.matmul(self._mat, vh).squeeze(-1).T.reshape(n * n, fy, fx // 2 + 1)
        o = torch.fft.irfft2(oh, s=(fy, fx))[:, :ly, :lx]
        lf = o.reshape(n, n, ly, lx).permute(2, 0, 3, 1).reshape(ly * n, lx * n)
        return lf.cpu().numpy() if is_np else lf

    def adjoint(self, lightfield: Any) -> Any:
        """Back-project a light field ``(Y, X)`` to a volume ``(D, Y, X)`` (the exact transpose of :meth:`forward`)."""
        y, is_np = self._as_tensor(lightfield)
        if tuple(y.shape) != self.image_shape:
            raise FluoreconError(f"light field shape {tuple(y.shape)} does not match the operator's {self.image_shape}")
        n, d = self.nnum, len(self.depths)
        ly, lx = self.lenslets
        fy, fx = self.fft_shape
        ph = y.reshape(ly, n, lx, n).permute(1, 3, 0, 2).reshape(n * n, ly, lx)
        yh = torch.fft.rfft2(ph, s=(fy, fx)).reshape(n * n, -1).T.unsqueeze(-1)        # (F, N², 1)
        vh = torch.matmul(self._mat.conj().transpose(1, 2), yh).squeeze(-1).T.reshape(d * n * n, fy, fx // 2 + 1)
        v = torch.fft.irfft2(vh, s=(fy, fx))[:, :ly, :lx]
        vol = v.reshape(d, n, n, ly, lx).permute(0, 3, 1, 4, 2).reshape(d, ly * n, lx * n)
        return vol.cpu().numpy() if is_np else vol

    __call__ = forward

    def sensitivity(self) -> torch.Tensor:
        """``Aᵀ1``: how much of each voxel's light lands on the sensor (RL's normaliser)."""
        if self._ones_adj is None:
            self._ones_adj = self.adjoint(torch.ones(self.image_shape, device=self.device))
        return self._ones_adj

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lightfield", "optics": self.optics.to_dict(), "depths": self.depths,
                "image_shape": list(self.image_shape), "radius_lenslets": self.radius}


class LightFieldForward:
    """Forward model of a light-field reconstruction: ``expected(volume) = offset + background + A volume``.

    ``variance`` uses the camera's Poisson–Gaussian model (``gain`` ADU/e-, ``read_noise`` e-);
    without a gain it raises :class:`FluoreconError` (``verify`` then estimates the noise).

    Examples
    --------
    >>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
    >>> f = LightFieldForward(LightFieldOperator(o, [0.0], (10, 10)), offset=100.0, gain=2.0)
    >>> e = f.expected(np.ones((1, 10, 10), np.float32))
    >>> e.shape, float(f.variance(np.full((2, 2), 110.0))[0, 0])
    ((10, 10), 20.0)
    """

    def __init__(self, operator: LightFieldOperator, offset: float = 0.0, background: float = 0.0,
                 gain: float | None = None, read_noise: float = 0.0):
        self.operator = operator
        self.offset, self.background = float(offset), float(background)
        self.gain, self.read_noise = gain, float(read_noise)

    def expected(self, y: Any) -> Any:
        return self.operator.forward(y) + (self.offset + self.background)

    def variance(self, expected: Any) -> Any:
        if self.gain is None:
            raise FluoreconError("no noise model is attached to this light-field forward model",
                                 hint="give the camera gain (and read noise), or let verify estimate them")
        sig = expected - self.offset
        sig = sig.clamp(min=0) if isinstance(sig, torch.Tensor) else np.clip(sig, 0, None)
        return self.gain * sig + (self.gain * self.read_noise) ** 2

    def to_dict(self) -> dict[str, Any]:
        return {**self.operator.to_dict(), "kind": "lightfield", "offset": self.offset,
                "background": self.background, "gain": self.gain, "read_noise": self.read_noise}


def simulate_lightfield(volume: np.ndarray, operator: LightFieldOperator, camera: Camera | None = None,
                        seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a recorded light field of ``volume``: ``(recording, noiseless light field)``.

    The noiseless light field is ``A volume``; the camera (default: 100 photons at intensity 1,
    gain 1, no offset) turns it into ADU with shot and read noise.

    Examples
    --------
    >>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
    >>> op = LightFieldOperator(o, [0.0], (10, 10))
    >>> x, clean = simulate_lightfield(np.ones((1, 10, 10), np.float32), op, seed=0)
    >>> x.shape, x.dtype
    ((10, 10), dtype('float32'))
    """
    clean = np.asarray(operator.forward(np.asarray(volume, np.float32)), np.float32)
    cam = camera or Camera(photons=100.0, gain=1.0, offset=0.0, read_noise=0.0)
    return cam.simulate(np.clip(clean, 0, None), seed=seed).astype(np.float32), clean
