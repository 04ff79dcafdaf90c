"""Export trained fluorecon models as bioimage.io model packages.

A bioimage.io package (a zip with ``rdf.yaml``) runs in the model zoo's consumers (bioimageio.core,
deepImageJ, ilastik, the BioImage Model Zoo website). The package holds

- the weights as TorchScript (self-contained) and, when the architecture is importable, as a PyTorch
  state dict with the architecture named by import path;
- ``rdf.yaml`` describing the input/output tensors (axes ``batch, channel, [z,] y, x``; sizes as
  multiples of the U-Net's down-sampling factor), the intensity normalisation as pre/post-processing,
  the test tensors (``test_input.npy`` → ``test_output.npy``) that consumers re-run to check the
  package, citations of the methods, a README and cover images.

Normalisation. A bundle whose normalizer stores fixed intensity bounds ``low``/``high`` (percentiles
of the training data) is exported as ``scale_linear`` pre-processing (``(x - low) / (high - low)``) and
its exact inverse as post-processing, so outputs are in the input's intensity units. Without fixed
bounds the pre-processing is per-image ``scale_range`` with the normalizer's percentiles and the output
stays in normalised units (said in the README).

The package also carries the fluorecon bundle itself (safetensors weights + ``bundle.json``, local paths
removed by :func:`scrub_paths`) as attachments; :func:`training_warnings` judges the bundle's training
history at export.

Reading (``fluorecon predict PACKAGE``): :func:`open_package` / :func:`load_package` read a package
(``.zip`` or folder) without unpickling and without importing code it names: our own packages through
the attached bundle (bit-identical predictions), foreign ones when their weights are a
``fluorecon.learn.nets.UNet`` state dict in ``.safetensors`` with linear normalisation; everything else
is refused with the formats it holds. Zip members are checked (names, links, sizes) and every file used
against the SHA-256 in ``rdf.yaml``.

Writing requires the optional extra ``pip install fluorecon[bioimageio]`` (``bioimageio.core``/``.spec``);
reading needs only PyYAML (in the same extra).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

import fluorecon
from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle, sha256_file, write_safetensors
from fluorecon.learn.predict import predict

__all__ = ["ExportSpec", "export_bundle", "export_model", "spec_from_bundle", "validate_package", "CITATIONS",
           "is_package", "load_package", "open_package", "scrub_paths", "training_warnings"]

# Method citations (text, doi, url). Keys are scheme / method names as written in bundle configs.
CITATIONS: dict[str, tuple[str, str | None, str | None]] = {
    "review": ("Belthangady C, Royer LA. Applications, promises, and pitfalls of deep learning for fluorescence "
               "image reconstruction. Nature Methods 16, 1215–1225 (2019).", "10.1038/s41592-019-0458-z", None),
    "unet": ("Ronneberger O, Fischer P, Brox T. U-Net: Convolutional networks for biomedical image "
             "segmentation. MICCAI 2015.", "10.1007/978-3-319-24574-4_28", None),
    "care": ("Weigert M et al. Content-aware image restoration: pushing the limits of fluorescence microscopy. "
             "Nature Methods 15, 1090–1097 (2018).", "10.1038/s41592-018-0216-7", None),
    "n2v": ("Krull A, Buchholz T-O, Jug F. Noise2Void — learning denoising from single noisy images. CVPR 2019.",
            "10.1109/CVPR.2019.00223", None),
    "n2s": ("Batson J, Royer L. Noise2Self: blind denoising by self-supervision. ICML 2019.", None,
            "https://arxiv.org/abs/1901.11365"),
    "n2n": ("Lehtinen J et al. Noise2Noise: learning image restoration without clean data. ICML 2018.", None,
            "https://arxiv.org/abs/1803.04189"),
}
_SCHEME_ALIASES = {
    "supervised": "care", "care": "care", "noise2noise": "n2n", "n2n": "n2n", "blindspot": "n2v",
    "blind-spot": "n2v", "n2v": "n2v", "noise2void": "n2v", "n2s": "n2s", "noise2self": "n2s",
    "self-supervised": "n2v", "self_supervised": "n2v",
}


@dataclasses.dataclass
class ExportSpec:
    """Everything needed to write a package, independent of where the model came from.

    Attributes
    ----------
    model : torch.nn.Module
        Maps a normalised ``(N, C, [Z,] Y, X)`` float32 tensor to the same layout.
    spatial_axes : str
        ``"YX"`` or ``"ZYX"``.
    test_input : np.ndarray
        A raw (un-normalised) test image with the spatial axes (and a leading channel axis when the model
        has several input channels).
    normalization : dict
        ``{"mode": "fixed", "low": float, "high": float}``, ``{"mode": "percentile", "min_percentile": 1,
        "max_percentile": 99.8}`` or ``{"mode": "none"}``.
    size_step : int
        Spatial sizes the model accepts are ``size_min + k * size_step`` (``2**depth`` for a U-Net).
    architecture : dict, optional
        ``{"import_from": "fluorecon.learn.nets", "callable": "UNet", "kwargs": {...}}`` to also export a
        state dict; None exports TorchScript only.
    bundle : Bundle, optional
        Attached to the package as safetensors + ``bundle.json`` (local paths removed, see
        :func:`scrub_paths`), so that ``fluorecon predict PACKAGE.zip`` runs it without unpickling.
    warnings : sequence of str
        Under-training warnings (:func:`training_warnings`), written into the README and ``rdf.yaml``.
    """

    model: Any
    spatial_axes: str
    test_input: np.ndarray
    normalization: dict
    size_step: int = 4
    size_min: int | None = None
    architecture: dict | None = None
    name: str = "fluorecon restoration model"
    description: str = "Fluorescence image restoration model trained with fluorecon."
    methods: Sequence[str] = ("unet",)
    voxel_size: Sequence[float] | None = None
    expected_output: np.ndarray | None = None
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    authors: Sequence[str] = ("fluorecon user",)
    tags: Sequence[str] = ()
    version: str = "0.1.0"
    bundle: Any = None
    warnings: Sequence[str] = ()


def _require_bioimageio():
    try:
        import bioimageio.core
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise FluoreconError("bioimage.io export needs the optional packages bioimageio.core and bioimageio.spec",
                             hint="pip install 'fluorecon[bioimageio]'") from None


def _valid_size(n: int, step: int, size_min: int) -> int:
    """Largest size ≤ n of the form size_min + k*step (at least size_min)."""
    if n < size_min:
        raise FluoreconError(f"test image is too small ({n} px) for this model (needs ≥ {size_min} px per axis)",
                             hint="use a larger test image")
    return size_min + ((n - size_min) // step) * step


def _centre_crop(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    sl = [slice(None)] * (a.ndim - len(shape))
    for n, s in zip(a.shape[-len(shape):], shape, strict=True):
        o = (n - s) // 2
        sl.append(slice(o, o + s))
    return a[tuple(sl)]


def _run_pipeline(spec: ExportSpec, x: np.ndarray) -> np.ndarray:
    """What a bioimage.io consumer computes: pre-processing → model → post-processing (float32)."""
    norm = spec.normalization
    spatial = tuple(range(2, x.ndim))
    if norm["mode"] == "fixed":
        lo, hi = float(norm["low"]), float(norm["high"])
        xin = (x - lo) / (hi - lo)
    elif norm["mode"] == "percentile":
        lo = np.percentile(x, norm["min_percentile"], axis=spatial, keepdims=True)
        hi = np.percentile(x, norm["max_percentile"], axis=spatial, keepdims=True)
        xin = (x - lo) / (hi - lo + 1e-6)
    else:
        xin = x
    with torch.no_grad():
        y = spec.model(torch.from_numpy(np.ascontiguousarray(xin, dtype=np.float32))).detach().cpu().numpy()
    if norm["mode"] == "fixed":
        y = y * (hi - lo) + lo
    return y.astype(np.float32)


def _cover(test_in: np.ndarray, test_out: np.ndarray, path: Path) -> None:
    from matplotlib.figure import Figure

    def view(a):
        a = a[0, 0]
        return a.max(axis=0) if a.ndim == 3 else a

    a, b = view(test_in), view(test_out)
    fig = Figure(figsize=(6, 3), dpi=100, layout="constrained")
    axs = fig.subplots(1, 2)
    for ax, img, t in zip(axs, (a, b), ("input", "output"), strict=True):
        lo, hi = np.percentile(img, [0.5, 99.8])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.set_title(t)
        ax.axis("off")
    fig.savefig(path, format="png")  # 2:1 aspect, as bioimage.io covers require


def _strip_debug_info(src: Path, dst: Path) -> None:
    """Copy a TorchScript archive without its ``*.debug_pkl`` records.

    Those records map the code to source lines and name the absolute path of every Python file the
    network was traced from (this machine's install folders); TorchScript loads and runs without them.
    """
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith(".debug_pkl"):
                zout.writestr(info, zin.read(info.filename))
    src.unlink()


def _readme(spec: ExportSpec, norm_text: str, citations: list[tuple[str, str | None, str | None]]) -> str:

    cites = "\n".join(f"- {t}" + (f" doi:{d}" if d else "") + (f" {u}" if u else "") for t, d, u in citations)
    training = "\n".join(f"- **{k}**: {json.dumps(v, default=str)}" for k, v in scrub_paths(dict(spec.training)).items()) or "- (not recorded)"
    if spec.warnings:
        training += ("\n\n**Warnings at export** (from the training history; see fluorecon's export documentation):\n\n"
                     + "\n".join(f"- {w}" for w in spec.warnings))
    return f"""# {spec.name}

{spec.description}

Exported by fluorecon {fluorecon.__version__}. Input axes: batch, channel, {", ".join(spec.spatial_axes.lower())}.

## Normalisation

{norm_text}

## Training

{training}

## Validation

The package contains a test input and the output fluorecon computed for it; bioimage.io consumers re-run
the model on the test input and compare. Before trusting the output on new data, check it with
fluorecon's trust layer (`fluorecon check`): re-apply the forward model and compare with the input,
look at the uncertainty maps, and compare the new data's statistics with the training data's
(`training_stats` in the fluorecon bundle). A restoration model can hallucinate plausible structure on
data unlike its training data (Belthangady & Royer 2019).

## Limitations

Trained for one kind of sample, microscope and noise level; results on other data are not guaranteed.

## Methods to cite

{cites}
"""


# A path-like run of characters that starts a string or follows a separator (space, =, quote, bracket,
# comma): "/abs/x.tif", "~/x", "C:\\x". URLs ("https://…") and DOIs ("10.1038/…") do not match.
_ABS_PATH = re.compile(r"""(?:^|(?<=[\s='"(\[,]))(?:[A-Za-z]:[\\/]|~(?=[\\/]|$)|/)[^\s'",;)\]]*""")


def scrub_paths(obj: Any) -> Any:
    """Replace every absolute or home-relative local path in ``obj`` (nested dicts/lists/strings) by its file name.

    Exported packages travel; the folders they were trained in must not (they name users, servers and
    projects). Dictionary keys are scrubbed too (e.g. the training-data hashes keyed by path).

    Examples
    --------
    >>> scrub_paths({"cmd": "fluorecon train /home/ada/data/x.tif -o=/srv/out --seed 1", "doi": "10.1038/s41592"})
    {'cmd': 'fluorecon train x.tif -o=out --seed 1', 'doi': '10.1038/s41592'}
    >>> scrub_paths({"C:/Users/ada/y.tif": "ab12", "url": "https://bioimage.io/x"})
    {'y.tif': 'ab12', 'url': 'https://bioimage.io/x'}
    """
    if isinstance(obj, str):
        def name(m: re.Match) -> str:
            text = m.group(0)
            base = PureWindowsPath(text).name if ("\\" in text or text[1:2] == ":") else PurePosixPath(text).name
            return base or "<path>"

        return _ABS_PATH.sub(name, obj)
    if isinstance(obj, Mapping):
        return {scrub_paths(str(k)): scrub_paths(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_paths(v) for v in obj]
    return obj


MIN_STEPS = 500
PLATEAU_DROP = 0.05


def training_warnings(provenance: Mapping[str, Any] | None) -> list[str]:
    """Plain-words warnings when a bundle's training history says it is probably under-trained.

    The criterion (documented in ``docs/howto`` and the export README), from ``bundle.json``'s provenance:

    1. **too few steps**: fewer than :data:`MIN_STEPS` (500) optimisation steps. A deliberately lenient
       floor: published CARE / Noise2Void models train for 10⁴–10⁵ steps; below 500 the network has
       barely left its initialisation (smoke tests, budget-cut runs).
    2. **loss still falling**: the median loss over the last quarter of the recorded curve is more than
       :data:`PLATEAU_DROP` (5 %) below the median over the quarter before. The validation curve is used
       when it has ≥ 4 points, else the training curve (≥ 8 points; single-batch losses, hence medians).
       A run stopped by early stopping has plateaued by definition.
    3. **no validation**: neither a validation curve nor a monitor curve was recorded, so over-fitting
       was never measured.
    4. no recorded history at all.

    Examples
    --------
    >>> training_warnings({"steps": 11, "loss_curve": [[1, 1.0], [10, 0.5]], "validation_curve": []})[0]
    'trained for only 11 steps (fewer than 500): the network has barely left its initialisation; train longer'
    >>> flat = [[10 * i, 1.0] for i in range(1, 201)]
    >>> training_warnings({"steps": 2000, "loss_curve": flat, "validation_curve": flat[::10]})
    []
    """
    prov = dict(provenance or {})
    steps = prov.get("steps")
    if not isinstance(steps, int | float) or isinstance(steps, bool):
        return ["the bundle records no training history (steps, loss curve): fluorecon cannot tell whether "
                "the model is trained enough"]
    out = []
    if steps < MIN_STEPS:
        out.append(f"trained for only {int(steps)} steps (fewer than {MIN_STEPS}): the network has barely left its "
                   "initialisation; train longer")
    val = [v for v in prov.get("validation_curve") or [] if isinstance(v, list | tuple) and len(v) == 2 and v[1] is not None]
    mon = (prov.get("monitor") or {}).get("curve") if isinstance(prov.get("monitor"), Mapping) else None
    if prov.get("stop_reason") != "early_stopping":
        curve, which = (val, "validation") if len(val) >= 4 else (prov.get("loss_curve") or [], "training")
        pts = [float(v[1]) for v in curve if isinstance(v, list | tuple) and len(v) == 2 and v[1] is not None
               and math.isfinite(float(v[1]))]
        if len(pts) >= (4 if which == "validation" else 8):
            q = len(pts) // 4
            before, last = float(np.median(pts[-2 * q:-q])), float(np.median(pts[-q:]))
            if before > 0 and (before - last) / before > PLATEAU_DROP:
                out.append(f"the {which} loss was still falling: {100 * (before - last) / before:.0f} % lower over the "
                           f"last quarter of training than over the quarter before; train longer")
    if not val and not mon:
        out.append("no validation loss was recorded (no held-out data, no monitor): over-fitting was never measured")
    return out


def export_model(spec: ExportSpec, out_zip: str | os.PathLike, *, weight_formats: Sequence[str] = ("torchscript", "pytorch_state_dict")) -> Path:
    """Write a bioimage.io model package (zip) for ``spec``.

    Parameters
    ----------
    spec : ExportSpec
        The model, its test image and metadata.
    out_zip : path-like
        The package to write (``.zip``), atomically.
    weight_formats : sequence of str
        ``"torchscript"`` and/or ``"pytorch_state_dict"`` (the latter only with ``spec.architecture``).

    Returns
    -------
    pathlib.Path
        The package path.

    Examples
    --------
    >>> import torch, numpy as np, tempfile, pathlib
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> spec = ExportSpec(model=net.eval(), spatial_axes="YX", test_input=np.random.rand(64, 64).astype("f4"),
    ...                   normalization={"mode": "fixed", "low": 0.0, "high": 1.0})
    >>> p = export_model(spec, pathlib.Path(tempfile.mkdtemp()) / "m.zip", weight_formats=["torchscript"])
    >>> p.exists()
    True
    """
    _require_bioimageio()
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as b

    spatial = spec.spatial_axes.upper()
    if spatial not in ("YX", "ZYX"):
        raise FluoreconError(f"spatial axes must be YX or ZYX, got {spatial!r}", hint="export 2D or 3D models")
    weight_formats = list(weight_formats)
    unknown = set(weight_formats) - {"torchscript", "pytorch_state_dict"}
    if unknown or not weight_formats:
        raise FluoreconError(f"unknown weight format(s) {sorted(unknown)}", hint="use torchscript and/or pytorch_state_dict")
    if "pytorch_state_dict" in weight_formats and spec.architecture is None:
        weight_formats.remove("pytorch_state_dict")
        if not weight_formats:
            raise FluoreconError("a state dict export needs the model's architecture", hint="export torchscript")
    ti = np.asarray(spec.test_input, dtype=np.float32)
    if ti.size == 0 or not np.all(np.isfinite(ti)):
        raise FluoreconError("the test input is empty or has NaN/Inf values", hint="use a finite test image")
    if ti.ndim == len(spatial):
        ti = ti[None]
    if ti.ndim != len(spatial) + 1:
        raise FluoreconError(f"test input has {ti.ndim} dims; expected {len(spatial)} spatial (+1 channel)",
                             hint=f"pass a {spatial} image")
    step = int(spec.size_step)
    size_min = int(spec.size_min or 2 * step)
    shape = [_valid_size(n, step, size_min) for n in ti.shape[1:]]
    test_in = _centre_crop(ti, shape)[None].astype(np.float32)  # (1, C, [Z,] Y, X)
    n_in = test_in.shape[1]
    spec.model.eval()
    test_out = _run_pipeline(spec, test_in)
    if spec.expected_output is not None:
        exp = np.asarray(spec.expected_output, dtype=np.float32)
        exp = _centre_crop(exp if exp.ndim == len(spatial) + 1 else exp[None], shape)[None]
        if exp.shape == test_out.shape:
            # Whole-image and tiled inference differ a little near tile edges: compare robustly.
            err = float(np.median(np.abs(exp - test_out)) / (np.std(exp) + 1e-12))
            if err > 0.05:
                raise FluoreconError(f"the exported pipeline does not reproduce the bundle's test output "
                                     f"(median relative error {err:.3f})",
                                     hint="the normaliser or the model of the bundle is inconsistent; re-save it")
    n_out = test_out.shape[1]
    norm = spec.normalization
    ax_ids = [a.lower() for a in spatial]
    units = None
    if spec.voxel_size is not None and len(spec.voxel_size) == len(spatial):
        units = [float(v) for v in spec.voxel_size]

    with tempfile.TemporaryDirectory(prefix="fluorecon-bioimageio-") as td:
        d = Path(td)
        np.save(d / "test_input.npy", test_in)
        np.save(d / "test_output.npy", test_out)
        _cover(test_in, test_out, d / "cover.png")
        attachments: list[Any] = []
        bundle_meta = None
        if spec.bundle is not None:
            # The bundle itself (safetensors + JSON, local paths removed) travels in the package, so that
            # fluorecon reads it back without unpickling and predicts exactly as from the bundle folder.
            src = spec.bundle
            clean = Bundle(src.members, src.normalizer, config=scrub_paths(src.config),
                           provenance=scrub_paths(src.provenance), training_stats=scrub_paths(src.training_stats),
                           forward=scrub_paths(src.forward), test_tensors=src.test_tensors)
            clean.save(d / "bundle")
            names = sorted(q.name for q in (d / "bundle").iterdir())
            clash = set(names) & {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy", "weights.pt",
                                   "weights_torchscript.pt"}
            if clash:
                raise FluoreconError(f"bundle file names {sorted(clash)} clash with the package's own files",
                                     hint="re-save the bundle with fluorecon")
            for n in names:
                shutil.move(str(d / "bundle" / n), str(d / n))
                attachments.append(b.FileDescr(source=d / n))
            bundle_meta = {"files": names, "schema_version": clean.schema_version}
        weights: dict[str, Any] = {}
        torch_version = b.Version(torch.__version__.split("+")[0])
        model_cpu = spec.model.to("cpu").eval()
        if "pytorch_state_dict" in weight_formats:
            sd = {k: v.detach().cpu().contiguous() for k, v in model_cpu.state_dict().items()}
            torch.save(sd, d / "weights.pt")
            arch = spec.architecture or {}
            weights["pytorch_state_dict"] = b.PytorchStateDictWeightsDescr(
                source=d / "weights.pt",
                architecture=b.ArchitectureFromLibraryDescr(import_from=arch["import_from"], callable=b.Identifier(arch["callable"]),
                                                            kwargs=dict(arch.get("kwargs", {}))),
                pytorch_version=torch_version,
            )
        if "torchscript" in weight_formats:
            with torch.no_grad():
                traced = torch.jit.trace(model_cpu, torch.from_numpy(np.ascontiguousarray(test_in)), check_trace=False)
            traced.save(str(d / "traced.pt"))
            _strip_debug_info(d / "traced.pt", d / "weights_torchscript.pt")
            parent = "pytorch_state_dict" if "pytorch_state_dict" in weights else None
            weights["torchscript"] = b.TorchscriptWeightsDescr(source=d / "weights_torchscript.pt",
                                                                pytorch_version=torch_version, parent=parent)

        def in_axes():
            axes: list[Any] = [b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier(f"c{i}") for i in range(n_in)])]
            for i, a in enumerate(ax_ids):
                kw = {"unit": "micrometer", "scale": units[i]} if units else {}
                axes.append(b.SpaceInputAxis(id=b.AxisId(a), size=b.ParameterizedSize(min=size_min, step=step), **kw))
            return axes

        def out_axes():
            axes: list[Any] = [b.BatchAxis(), b.ChannelAxis(channel_names=[b.Identifier(f"c{i}") for i in range(n_out)])]
            for i, a in enumerate(ax_ids):
                kw = {"unit": "micrometer", "scale": units[i]} if units else {}
                axes.append(b.SpaceOutputAxis(id=b.AxisId(a), size=b.SizeReference(tensor_id=b.TensorId("raw"),
                                                                                    axis_id=b.AxisId(a)), **kw))
            return axes

        pre: list[Any] = []
        post: list[Any] = []
        if norm["mode"] == "fixed":
            lo, hi = float(norm["low"]), float(norm["high"])
            if not hi > lo:
                raise FluoreconError(f"normaliser bounds low={lo} high={hi} are not increasing",
                                     hint="re-fit the normaliser on non-constant data")
            # bioimage.io refuses an identity scale_linear: bounds (0, 1) need no processing step at all.
            if (lo, hi) != (0.0, 1.0):
                pre.append(b.ScaleLinearDescr(kwargs=b.ScaleLinearKwargs(gain=1.0 / (hi - lo), offset=-lo / (hi - lo))))
                post.append(b.ScaleLinearDescr(kwargs=b.ScaleLinearKwargs(gain=hi - lo, offset=lo)))
            norm_text = (f"Pre-processing `scale_linear`: (x − {lo:.6g}) / ({hi:.6g} − {lo:.6g}); these bounds are "
                         f"{norm.get('description', 'the percentiles of the training data')}. Post-processing is the "
                         "exact inverse, so outputs are in the input's intensity units.")
        elif norm["mode"] == "percentile":
            pre.append(b.ScaleRangeDescr(kwargs=b.ScaleRangeKwargs(
                axes=[b.AxisId(a) for a in ax_ids], min_percentile=float(norm["min_percentile"]),
                max_percentile=float(norm["max_percentile"]), eps=1e-6)))
            norm_text = (f"Pre-processing `scale_range`: each image is normalised by its own {norm['min_percentile']} "
                         f"and {norm['max_percentile']} percentiles. Outputs are in these normalised units.")
        else:
            norm_text = "None: the model takes and returns raw intensities."
        pre.append(b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32")))
        post.append(b.EnsureDtypeDescr(kwargs=b.EnsureDtypeKwargs(dtype="float32")))

        keys = ["review"]
        for m in spec.methods:
            k = _SCHEME_ALIASES.get(str(m).lower(), str(m).lower())
            if k in CITATIONS and k not in keys:
                keys.append(k)
        if "unet" not in keys:
            keys.append("unet")
        citations = [CITATIONS[k] for k in keys]
        (d / "README.md").write_text(_readme(spec, norm_text, citations), encoding="utf-8")
        tags = list(dict.fromkeys(["fluorecon", "fluorescence-light-microscopy", "pytorch", "unet", "denoising",
                                   f"{len(spatial)}d", *spec.tags]))
        try:
            descr = b.ModelDescr(
                name=spec.name,
                description=spec.description[:1000],
                version=b.Version(spec.version),
                authors=[b.Author(name=a) for a in spec.authors],
                cite=[b.CiteEntry(text=t, doi=b.Doi(doi) if doi else None, url=url) for t, doi, url in citations],
                license=b.LicenseId("BSD-3-Clause"),
                documentation=b.FileDescr(source=d / "README.md"),
                covers=[b.FileDescr(source=d / "cover.png")],
                tags=tags,
                inputs=[b.InputTensorDescr(id=b.TensorId("raw"), axes=in_axes(), test_tensor=b.FileDescr(source=d / "test_input.npy"),
                                           preprocessing=pre, data=b.IntervalOrRatioDataDescr(type="float32"))],
                outputs=[b.OutputTensorDescr(id=b.TensorId("restored"), axes=out_axes(),
                                             test_tensor=b.FileDescr(source=d / "test_output.npy"), postprocessing=post,
                                             data=b.IntervalOrRatioDataDescr(type="float32"))],
                weights=b.WeightsDescr(**weights),
                attachments=attachments,
                config={"fluorecon": {"training": scrub_paths(json.loads(json.dumps(dict(spec.training), default=str))),
                                      "training_warnings": list(spec.warnings), "normalization": norm,
                                      **({"bundle": bundle_meta} if bundle_meta else {})}},
            )
        except Exception as e:  # pydantic ValidationError: name the fields
            raise FluoreconError(f"could not build a valid bioimage.io description: {e}",
                                 hint="check the bundle's metadata (name, sizes, normaliser)") from None
        out = Path(out_zip)
        if out.suffix.lower() != ".zip":
            raise FluoreconError(f"bioimage.io packages are .zip files, got {out.name}", hint="use e.g. model.zip")
        with atomic_path(out) as tmp:
            tmp.unlink(missing_ok=True)
            save_bioimageio_package(descr, output_path=tmp)
    return out


def validate_package(path: str | os.PathLike, *, devices: Sequence[str] = ("cpu",)) -> dict:
    """Run ``bioimageio.core.test_model`` on a package, offline; return a summary dict.

    The returned dict has ``status`` (``"passed"``/``"failed"``/...), and ``errors`` (messages).

    Examples
    --------
    >>> validate_package("model.zip")["status"]  # doctest: +SKIP
    'passed'
    """
    _require_bioimageio()
    from bioimageio.core import test_model

    summary = test_model(Path(path), devices=list(devices))
    errors = []
    for det in summary.details:
        for e in det.errors:
            errors.append(f"{det.name}: {e.msg}")
    return {"status": summary.status, "errors": errors, "details": [(d.name, d.status) for d in summary.details]}


# --------------------------------------------------------------------------------------------------
# From a fluorecon bundle
# --------------------------------------------------------------------------------------------------


def spec_from_bundle(bundle: Any, *, name: str | None = None, authors: Sequence[str] | None = None,
                     test_image: np.ndarray | None = None) -> ExportSpec:
    """Build an :class:`ExportSpec` from a ``fluorecon.learn.bundle.Bundle`` (or its directory).

    ``test_image`` (a raw image with the bundle's axes) replaces missing test tensors: its expected
    output is computed with ``fluorecon.learn.predict.predict``.
    """
    if isinstance(bundle, str | os.PathLike):
        p = Path(bundle)
        if not (p / "bundle.json").exists():
            raise FluoreconError(f"no model bundle at {p}", hint="give the folder written by `fluorecon train` (it holds bundle.json)")
        bundle = Bundle.load(p)  # refuses non-finite weights / normaliser values
    elif hasattr(bundle, "check_finite"):
        bundle.check_finite()
    tt = getattr(bundle, "test_tensors", None)
    config = dict(getattr(bundle, "config", None) or {})
    model = bundle.model
    net_cfg = model.config() if hasattr(model, "config") else {}
    dim = int(net_cfg.get("dim", 2))
    if test_image is not None:
        tin = np.asarray(test_image, np.float32)
        axes = str(config.get("axes", "YX"))
        if tin.ndim != len(axes):
            raise FluoreconError(f"test image has {tin.ndim} dimensions but the model's axes are {axes!r}",
                                 hint=f"pass a {axes} image")
        tout = predict(bundle, tin, axes, tile=None, device="cpu")
        tt_axes = axes
    elif tt:
        tin, tout = tt.get("input"), tt.get("expected", tt.get("output"))
        tt_axes = str(tt.get("axes", config.get("axes", "YX")))
        if tt.get("tta"):
            tout = None  # TTA predictions are not what a plain forward pass gives: recompute instead
    else:
        raise FluoreconError("this bundle has no test tensors, which a bioimage.io package needs",
                             hint="re-save it with test tensors, or pass a test image (fluorecon export ... --test-image FILE)")
    if tin is None:
        raise FluoreconError("the bundle's test tensors have no input", hint="re-save the bundle with test tensors")
    tin = np.asarray(tin, np.float32)
    tt_axes = tt_axes.upper()
    if any(a in "TC" for a in tt_axes) and not (tt_axes.count("C") == 1 and tt_axes[0] == "C"):
        raise FluoreconError(f"test tensors with axes {tt_axes!r} are not supported for export",
                             hint="export models of YX, ZYX or CYX/CZYX images")
    spatial = "".join(a for a in tt_axes if a in "ZYX")
    if dim == 2 and spatial == "ZYX":  # a 2D network applied plane by plane: export it as 2D
        mid = tin.shape[-3] // 2
        tin = tin[..., mid, :, :]
        tout = None if tout is None else np.asarray(tout)[..., mid, :, :]
        spatial = "YX"
    nz = getattr(bundle, "normalizer", None)
    lo, hi = getattr(nz, "lo", None), getattr(nz, "hi", None)
    if lo and hi and len(lo) == 1:
        norm = {"mode": "fixed", "low": float(lo[0]), "high": float(hi[0]),
                "description": f"the {nz.low:g} and {nz.high:g} percentiles of the training data"}
    elif lo and hi:
        raise FluoreconError("per-channel normalisation is not supported by the bioimage.io export yet",
                             hint="export a single-channel model")
    else:
        norm = {"mode": "none"}
    div = getattr(model, "divisor", None)
    step = int(max(div)) if div else 2 ** int(net_cfg.get("depth", 2))
    scheme = str(config.get("scheme", "unet"))
    prov = dict(getattr(bundle, "provenance", None) or {})
    arch = None
    if type(model).__module__.startswith("fluorecon."):
        arch = {"import_from": type(model).__module__, "callable": type(model).__name__, "kwargs": dict(net_cfg)}
    training = {"scheme": scheme, **{k: v for k, v in prov.items() if isinstance(v, str | int | float | bool)}}
    data = prov.get("data_sha256")
    if isinstance(data, Mapping) and data:  # training data travel as name + hash, never as a local path
        training["training_data"] = [{"name": k, "sha256": v} for k, v in scrub_paths(dict(data)).items()]
    training = scrub_paths(training)
    return ExportSpec(
        model=model, spatial_axes=spatial, test_input=tin, expected_output=None if tout is None else np.asarray(tout),
        normalization=norm, size_step=step, size_min=2 * step, architecture=arch,
        name=name or str(config.get("name", f"fluorecon {scheme} restoration model")),
        description=str(config.get("description", f"Fluorescence image restoration model ({scheme}, U-Net) "
                                                  f"trained with fluorecon.")),
        methods=[scheme, "unet"], voxel_size=config.get("voxel_size"), training=training,
        authors=tuple(authors or ("fluorecon user",)), bundle=bundle if isinstance(bundle, Bundle) else None,
        warnings=training_warnings(prov),
    )


def export_bundle(bundle: Any, out_zip: str | os.PathLike, *, name: str | None = None, authors: Sequence[str] | None = None,
                  weight_formats: Sequence[str] = ("torchscript", "pytorch_state_dict"), validate: bool = False,
                  test_image: np.ndarray | None = None) -> Path:
    """Export a fluorecon bundle (object or folder) as a bioimage.io package.

    Parameters
    ----------
    bundle : Bundle or path-like
        A trained model bundle with test tensors.
    out_zip : path-like
        The package (``.zip``) to write.
    validate : bool
        Also run bioimage.io's own test (offline) and fail if it does not pass.
    test_image : array, optional
        A raw image to use as test input when the bundle has no test tensors.

    Examples
    --------
    >>> export_bundle("runs/n2v-bundle", "n2v.zip")  # doctest: +SKIP
    """
    spec = spec_from_bundle(bundle, name=name, authors=authors, test_image=test_image)
    out = export_model(spec, out_zip, weight_formats=weight_formats)
    if validate:
        res = validate_package(out)
        if res["status"] not in ("passed", "valid-format"):
            shutil.move(str(out), str(out) + ".failed")
            raise FluoreconError(f"the exported package failed bioimage.io's test: {'; '.join(res['errors'][:3])}",
                                 hint=f"inspect {out}.failed")
    return out


# --------------------------------------------------------------------------------------------------
# Reading packages (``fluorecon predict PACKAGE.zip``): never unpickles, never runs code from a package
# --------------------------------------------------------------------------------------------------

MAX_PACKAGE_FILES = 2000
MAX_RDF_BYTES = 4 << 20
MAX_FILE_BYTES = 4 << 30
MAX_PACKAGE_BYTES = 8 << 30
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
SUPPORTED_TEXT = ("the fluorecon bundle that `fluorecon export` attaches (safetensors + bundle.json), or "
                  "pytorch_state_dict weights stored as a .safetensors file for the architecture "
                  "fluorecon.learn.nets.UNet, with linear (scale_linear / fixed zero_mean_unit_variance) "
                  "normalisation undone by the post-processing")
# Why the other bioimage.io weight formats are refused (shown to the user).
_UNSUPPORTED_WHY = {
    "pytorch_state_dict": "a torch.save file: reading it means unpickling",
    "torchscript": "TorchScript: loading it means unpickling and running code from the package",
    "onnx": "ONNX: fluorecon has no ONNX runtime",
    "keras_hdf5": "Keras: needs TensorFlow",
    "tensorflow_saved_model_bundle": "TensorFlow: needs TensorFlow",
    "tensorflow_js": "TensorFlow.js: needs TensorFlow",
}
_UNET_IMPORTS = {("fluorecon.learn.nets", "UNet")}


def _yaml():
    try:
        import yaml
    except ImportError:
        raise FluoreconError("reading bioimage.io packages needs PyYAML",
                             hint="pip install 'fluorecon[bioimageio]'") from None
    return yaml


def _check_member_name(name: str, where: str) -> str:
    """A package-relative file name: no absolute path, no ``..``, no drive, no backslash, no URL."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise FluoreconError(f"{where}: invalid file name {name!r}", hint="the package is corrupt")
    if "://" in name or name.startswith(("http:", "https:", "ftp:", "zenodo:", "doi:")):
        raise FluoreconError(f"{where} names the remote file {name!r}; fluorecon never downloads model files",
                             hint="use a package that contains its files (download it with bioimageio first)")
    p = PurePosixPath(name)
    if (name.startswith(("/", "~")) or "\\" in name or "\x00" in name or ".." in p.parts
            or (len(name) > 1 and name[1] == ":")):
        raise FluoreconError(f"{where} names {name!r}, a path outside the package",
                             hint="a bioimage.io package may only refer to its own files; the package is corrupt or hostile")
    return str(p)


class _PackageFiles:
    """Read-only access to the files of a package (a zip or a folder), with size limits.

    Every member name is checked before anything is read (no absolute names, no ``..``, no links,
    no encryption, no duplicates, sizes within :data:`MAX_FILE_BYTES` / :data:`MAX_PACKAGE_BYTES`).
    Nothing is extracted except what the caller copies, and the package itself is never written to.
    """

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._sizes: dict[str, int] = {}
        if path.is_dir():
            files = [q for q in path.rglob("*") if q.is_file() or q.is_symlink()]
            if len(files) > MAX_PACKAGE_FILES:
                raise FluoreconError(f"{path} holds {len(files)} files (limit {MAX_PACKAGE_FILES})",
                                     hint="give the folder of one bioimage.io package")
            root = path.resolve()
            for q in files:
                rel = q.relative_to(path).as_posix()
                if not q.resolve().is_relative_to(root):
                    raise FluoreconError(f"{q} links outside the package folder",
                                         hint="a package may only contain its own files (no links out)")
                self._sizes[rel] = q.stat().st_size
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise FluoreconError(f"{path} is not a readable zip file ({e})",
                                     hint="give a bioimage.io package (.zip) or the folder holding its rdf.yaml") from None
            infos = self._zip.infolist()
            if len(infos) > MAX_PACKAGE_FILES:
                raise FluoreconError(f"{path} holds {len(infos)} files (limit {MAX_PACKAGE_FILES})",
                                     hint="this is not a model package")
            for info in infos:
                if info.is_dir():
                    continue
                name = _check_member_name(info.filename, f"zip member of {path.name}")
                if name in self._sizes:
                    raise FluoreconError(f"{path} holds {name!r} twice", hint="the package is corrupt or hostile")
                if info.flag_bits & 0x1:
                    raise FluoreconError(f"{path}: {name} is encrypted", hint="use an unencrypted package")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise FluoreconError(f"{path}: {name} is a symbolic link", hint="the package is corrupt or hostile")
                self._sizes[name] = info.file_size
        total = sum(self._sizes.values())
        big = [n for n, s in self._sizes.items() if s > MAX_FILE_BYTES]
        if big or total > MAX_PACKAGE_BYTES:
            raise FluoreconError(f"{path} is too large to be read safely ({total / 2**30:.1f} GiB"
                                 + (f"; {big[0]} alone exceeds {MAX_FILE_BYTES / 2**30:.0f} GiB" if big else "") + ")",
                                 hint=f"fluorecon reads packages up to {MAX_PACKAGE_BYTES / 2**30:.0f} GiB")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def names(self) -> list[str]:
        return list(self._sizes)

    def _open(self, name: str):
        name = _check_member_name(name, str(self.path.name))
        if name not in self._sizes:
            raise FluoreconError(f"{self.path} names {name!r}, which it does not contain",
                                 hint="the package is incomplete or corrupt")
        if self._zip is not None:
            return self._zip.open(name), self._sizes[name]
        return open(self.path / name, "rb"), self._sizes[name]

    def read(self, name: str, limit: int) -> bytes:
        fh, size = self._open(name)
        if size > limit:
            fh.close()
            raise FluoreconError(f"{self.path}: {name} is {size} bytes (limit {limit})", hint="the package is corrupt")
        with fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise FluoreconError(f"{self.path}: {name} is larger than {limit} bytes", hint="the package is corrupt")
        return data

    def copy(self, name: str, dest: Path, sha256: str | None) -> None:
        """Copy ``name`` to ``dest``, checking its size against the listing and its sha256 (when given)."""
        fh, size = self._open(name)
        h = hashlib.sha256()
        n = 0
        with fh, open(dest, "wb") as out:
            while chunk := fh.read(1 << 20):
                n += len(chunk)
                if n > size:
                    raise FluoreconError(f"{self.path}: {name} is longer than its listed size",
                                         hint="the package is corrupt or hostile")
                h.update(chunk)
                out.write(chunk)
        if sha256 is not None and h.hexdigest() != str(sha256).lower():
            raise FluoreconError(f"{self.path}: {name} does not match the sha256 in rdf.yaml",
                                 hint="the package is corrupt or was modified; download it again")


def is_package(path: str | os.PathLike) -> bool:
    """True for a bioimage.io package: a ``.zip`` file, or a folder with ``rdf.yaml`` and no ``bundle.json``.

    Examples
    --------
    >>> is_package("model.zip"), is_package("runs/my-bundle")
    (True, False)
    """
    p = Path(path)
    if p.suffix.lower() == ".zip":
        return True
    return p.is_dir() and not (p / "bundle.json").exists() and any((p / n).is_file() for n in RDF_NAMES)


def _rdf_name(files: _PackageFiles) -> str:
    names = files.names()
    for n in RDF_NAMES:
        if n in names:
            return n
    alt = [n for n in names if "/" not in n and n.endswith(".bioimageio.yaml")]
    if len(alt) == 1:
        return alt[0]
    raise FluoreconError(f"{files.path} has no rdf.yaml: it is not a bioimage.io package",
                         hint="give a bioimage.io model package (.zip, or a folder holding rdf.yaml) or a fluorecon bundle folder")


def _weights_summary(weights: Mapping[str, Any]) -> str:
    parts = []
    for fmt, w in weights.items():
        src = w.get("source") if isinstance(w, Mapping) else None
        parts.append(f"{fmt} ({src})" if src else str(fmt))
    return ", ".join(parts) or "none"


def _unsupported(path: Path, weights: Mapping[str, Any], reason: str) -> FluoreconError:
    why = "; ".join(f"{fmt}: {_UNSUPPORTED_WHY[fmt]}" for fmt in weights if fmt in _UNSUPPORTED_WHY)
    return FluoreconError(
        f"{path.name} cannot be used by fluorecon: {reason}. Its weights: {_weights_summary(weights)}"
        + (f" ({why})" if why else "") + f". Supported: {SUPPORTED_TEXT}",
        hint="export the model with `fluorecon export`, or store a fluorecon UNet's state dict as .safetensors "
             "(safetensors.torch.save_file) and name it in rdf.yaml")


def _affine(steps: Any, where: str) -> tuple[float, float]:
    """Compose the processing steps into ``x * gain + offset``; refuse anything non-linear or per-channel."""
    gain, offset = 1.0, 0.0
    for st in steps or []:
        if not isinstance(st, Mapping):
            raise ValueError(f"{where}: invalid processing step {st!r}")
        name = st.get("id", st.get("name"))
        kw = st.get("kwargs") or {}
        if name == "ensure_dtype":
            if str(kw.get("dtype", "float32")) not in ("float32", "float64"):
                raise ValueError(f"{where}: ensure_dtype {kw.get('dtype')}")
            continue
        if name == "scale_linear":
            g, o = kw.get("gain", 1.0), kw.get("offset", 0.0)
        elif name in ("fixed_zero_mean_unit_variance", "zero_mean_unit_variance") and (
                name == "fixed_zero_mean_unit_variance" or kw.get("mode") == "fixed"):
            mean, std = kw.get("mean"), kw.get("std")
            if isinstance(mean, list) and len(mean) == 1:
                mean = mean[0]
            if isinstance(std, list) and len(std) == 1:
                std = std[0]
            if not isinstance(mean, int | float) or not isinstance(std, int | float) or std <= 0:
                raise ValueError(f"{where}: {name} needs scalar mean and a positive std")
            eps = float(kw.get("eps", 1e-6))
            g, o = 1.0 / (std + eps), -mean / (std + eps)
        else:
            raise ValueError(f"{where}: the processing step {name!r}")
        g = g[0] if isinstance(g, list) and len(g) == 1 else g
        o = o[0] if isinstance(o, list) and len(o) == 1 else o
        if not isinstance(g, int | float) or not isinstance(o, int | float) or not math.isfinite(g) or not math.isfinite(o) or g == 0:
            raise ValueError(f"{where}: {name} with per-channel or invalid gain/offset ({g!r}, {o!r})")
        gain, offset = gain * g, offset * g + o
    return gain, offset


def _axes(t: Mapping[str, Any], where: str) -> str:
    """Axes of a tensor description as letters (``b``, ``c``, ``z``, ``y``, ``x``)."""
    ax = t.get("axes")
    if isinstance(ax, str):  # format 0.4: "bcyx"
        letters = ax.lower()
    elif isinstance(ax, list):
        letters = ""
        for a in ax:
            if not isinstance(a, Mapping):
                raise ValueError(f"{where}: invalid axis {a!r}")
            kind, aid = a.get("type"), str(a.get("id", a.get("type")))
            if kind == "batch":
                letters += "b"
            elif kind == "channel":
                letters += "c"
            elif kind == "space" and aid in ("z", "y", "x"):
                letters += aid
            else:
                raise ValueError(f"{where}: the axis {aid!r} of type {kind!r}")
    else:
        raise ValueError(f"{where}: no axes")
    if letters.lstrip("b").lstrip("c") not in ("yx", "zyx") or letters not in (
            "yx", "zyx", "cyx", "czyx", "byx", "bzyx", "bcyx", "bczyx"):
        raise ValueError(f"{where}: axes {letters!r} (supported: batch, channel, then [z,] y, x)")
    return letters


def _test_tensor_name(t: Mapping[str, Any], key: str, rdf: Mapping[str, Any]) -> tuple[str | None, str | None]:
    tt = t.get("test_tensor")
    if isinstance(tt, Mapping):
        return tt.get("source"), tt.get("sha256")
    legacy = rdf.get(key)  # format 0.4: test_inputs / test_outputs lists
    if isinstance(legacy, list) and legacy:
        return str(legacy[0]), None
    return None, None


def _load_npy(files: _PackageFiles, name: str, sha: str | None, d: Path) -> np.ndarray:
    dest = d / "tensor.npy"
    files.copy(_check_member_name(name, "rdf.yaml test tensor"), dest, sha)
    try:
        return np.load(dest, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise FluoreconError(f"{files.path}: the test tensor {name} is not a plain .npy array ({e})",
                             hint="fluorecon never unpickles; the package is corrupt") from None


def _foreign_bundle(files: _PackageFiles, rdf: Mapping[str, Any], d: Path) -> Path:
    """Write a fluorecon bundle folder for a foreign package whose weights fluorecon can read safely."""
    weights = rdf.get("weights") or {}
    psd = weights.get("pytorch_state_dict")
    src = psd.get("source") if isinstance(psd, Mapping) else None
    if not isinstance(src, str) or not src.lower().endswith(".safetensors"):
        raise _unsupported(files.path, weights, "no weights in a format it can read without unpickling")
    arch = psd.get("architecture")
    kwargs = psd.get("kwargs") or {}
    if isinstance(arch, str):  # format 0.4: "package.module.Callable" or "package.module:Callable"
        mod, _, fn = arch.replace(":", ".").rpartition(".")
    elif isinstance(arch, Mapping):
        mod, fn = str(arch.get("import_from", arch.get("source", ""))), str(arch.get("callable", ""))
        kwargs = arch.get("kwargs") or {}
    else:
        mod, fn = "", ""
    if (mod, fn) not in _UNET_IMPORTS:
        raise _unsupported(files.path, weights, f"its architecture {mod}:{fn} is not one fluorecon builds "
                                                "(fluorecon never runs code named by a package)")
    if not isinstance(kwargs, Mapping):
        raise _unsupported(files.path, weights, "its architecture kwargs are not a mapping")
    sha = psd.get("sha256")
    if not sha:
        raise FluoreconError(f"{files.path}: rdf.yaml gives no sha256 for the weights {src}",
                             hint="fluorecon only loads weights whose hash the package states")
    ins, outs = rdf.get("inputs") or [], rdf.get("outputs") or []
    if len(ins) != 1 or len(outs) != 1:
        raise _unsupported(files.path, weights, f"it has {len(ins)} input and {len(outs)} output tensors (supported: one each)")
    try:
        in_axes, out_axes = _axes(ins[0], "input"), _axes(outs[0], "output")
        g_in, o_in = _affine(ins[0].get("preprocessing"), "preprocessing")
        g_out, o_out = _affine(outs[0].get("postprocessing"), "postprocessing")
    except ValueError as e:
        raise _unsupported(files.path, weights, f"its {e} is not supported") from None
    spatial = in_axes.lstrip("b").lstrip("c")
    if out_axes.lstrip("b").lstrip("c") != spatial:
        raise _unsupported(files.path, weights, f"its output axes {out_axes!r} differ from its input axes {in_axes!r}")
    dim = int(kwargs.get("dim", 2))
    if dim != len(spatial):
        raise _unsupported(files.path, weights, f"its {dim}D network does not match the input axes {in_axes!r}")
    # fluorecon's normaliser is (x - lo) / (hi - lo) on the way in and its exact inverse on the way out.
    lo, hi = -o_in / g_in, -o_in / g_in + 1.0 / g_in
    if not (math.isclose(g_out, hi - lo, rel_tol=1e-5) and math.isclose(o_out, lo, rel_tol=1e-5, abs_tol=1e-6 * abs(hi - lo))):
        raise _unsupported(files.path, weights, "its post-processing is not the inverse of its pre-processing "
                                                "(outputs would not be in the input's units)")
    lo, hi = (lo, hi) if g_in > 0 else (hi, lo)
    wname = _check_member_name(src, "rdf.yaml weights")
    files.copy(wname, d / "weights.safetensors", sha)
    doc: dict[str, Any] = {
        "schema_version": "1.0", "kind": "fluorecon-bundle", "model": dict(kwargs),
        "normalizer": {"kind": "percentile", "low": 0.0, "high": 100.0, "per_channel": False, "lo": [lo], "hi": [hi]},
        "config": {"axes": spatial.upper(), "scheme": "bioimageio", "name": str(rdf.get("name", files.path.name))},
        "provenance": {"source_package": files.path.name, "weights_sha256": str(sha)},
        "members": ["weights.safetensors"], "files": {"weights.safetensors": str(sha).lower()},
    }
    tin_name, tin_sha = _test_tensor_name(ins[0], "test_inputs", rdf)
    tout_name, tout_sha = _test_tensor_name(outs[0], "test_outputs", rdf)
    if tin_name and tout_name:
        tin, tout = _load_npy(files, tin_name, tin_sha, d), _load_npy(files, tout_name, tout_sha, d)
        (d / "tensor.npy").unlink()

        def squeeze(a: np.ndarray, letters: str) -> tuple[np.ndarray, str]:
            if a.ndim != len(letters):
                raise _unsupported(files.path, weights, f"its test tensor has shape {a.shape}, not axes {letters!r}")
            axes = letters
            if "b" in axes:
                if a.shape[0] != 1:
                    a = a[:1]
                a, axes = a[0], axes[1:]
            if axes.startswith("c") and a.shape[0] == 1:
                a, axes = a[0], axes[1:]
            return np.ascontiguousarray(a, np.float32), axes.upper()

        tin, tt_axes = squeeze(tin, in_axes)
        tout, _ = squeeze(tout, out_axes)
        write_safetensors({"input": torch.from_numpy(tin), "expected": torch.from_numpy(tout)}, d / "test_tensors.safetensors")
        doc["files"]["test_tensors.safetensors"] = sha256_file(d / "test_tensors.safetensors")
        doc["test_tensors"] = {"file": "test_tensors.safetensors", "axes": tt_axes, "atol": 1e-3}
    (d / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return d


def _own_bundle(files: _PackageFiles, rdf: Mapping[str, Any], meta: Mapping[str, Any], d: Path) -> Path:
    """Copy the fluorecon bundle attached by ``fluorecon export``, each file checked against rdf.yaml's sha256."""
    names = meta.get("files")
    if not isinstance(names, list) or "bundle.json" not in names or len(names) > 2 + 64 + 1:
        raise FluoreconError(f"{files.path}: config.fluorecon.bundle.files must list the bundle's files",
                             hint="the package is corrupt; export it again with `fluorecon export`")
    hashes = {}
    for a in rdf.get("attachments") or []:
        if isinstance(a, Mapping) and isinstance(a.get("source"), str):
            hashes[a["source"]] = a.get("sha256")
    for n in names:
        n = _check_member_name(n, "config.fluorecon.bundle")
        if "/" in n:
            raise FluoreconError(f"{files.path}: bundle file {n!r} is not a plain name", hint="the package is corrupt")
        if not hashes.get(n):
            raise FluoreconError(f"{files.path}: the bundle file {n} is not an attachment with a sha256 in rdf.yaml",
                                 hint="the package is corrupt; export it again with `fluorecon export`")
        files.copy(n, d / n, hashes[n])
    return d


@contextlib.contextmanager
def open_package(path: str | os.PathLike) -> Iterator[Path]:
    """Read a bioimage.io model package safely and yield a fluorecon bundle folder (temporary) for it.

    ``path`` is a ``.zip`` or a folder holding ``rdf.yaml``. A package written by ``fluorecon export``
    yields the exact bundle it was exported from (its attached safetensors weights, every file checked
    against the sha256 in ``rdf.yaml``): predictions from the package equal those from the bundle, bit
    for bit. A foreign package is accepted when its weights are ``pytorch_state_dict`` stored as
    ``.safetensors`` for ``fluorecon.learn.nets.UNet`` with linear normalisation undone by the
    post-processing; its test tensors are then recomputed and must match. Everything else (TorchScript,
    pickled ``.pt`` state dicts, ONNX, TensorFlow, architectures from other libraries) is refused with
    a :class:`FluoreconError` naming the package's weight formats and what is supported. Nothing is
    unpickled, no code named by the package is imported, and the package is never written to.

    Examples
    --------
    >>> with open_package("model.zip") as folder:  # doctest: +SKIP
    ...     bundle = Bundle.load(folder)
    """
    p = Path(path)
    if not p.exists():
        raise FluoreconError(f"model package {p} not found", hint="check the path")
    files = _PackageFiles(p)
    try:
        rdf_name = _rdf_name(files)
        try:
            rdf = _yaml().safe_load(files.read(rdf_name, MAX_RDF_BYTES))
        except Exception as e:  # yaml.YAMLError and decoding errors: the message names the line
            if isinstance(e, FluoreconError):
                raise
            raise FluoreconError(f"{p}: {rdf_name} is not valid YAML ({str(e).splitlines()[0]})",
                                 hint="the package is corrupt") from None
        if not isinstance(rdf, dict) or rdf.get("type") != "model":
            raise FluoreconError(f"{p}: {rdf_name} does not describe a model (type {rdf.get('type') if isinstance(rdf, dict) else None!r})",
                                 hint="give a bioimage.io *model* package")
        weights = rdf.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise FluoreconError(f"{p}: {rdf_name} lists no weights", hint="the package is corrupt")
        cfg = rdf.get("config") if isinstance(rdf.get("config"), dict) else {}
        meta = (cfg.get("fluorecon") or {}).get("bundle") if isinstance(cfg.get("fluorecon"), dict) else None
        with tempfile.TemporaryDirectory(prefix="fluorecon-package-") as td:
            d = Path(td)
            if isinstance(meta, dict):
                _own_bundle(files, rdf, meta, d)
                yield d
                return
            _foreign_bundle(files, rdf, d)
            if (d / "test_tensors.safetensors").exists():
                res = Bundle.load(d).verify(device="cpu")
                if not res["ok"]:
                    raise _unsupported(p, weights, f"fluorecon's reading of it does not reproduce its own test output "
                                                   f"(max error {res['max_abs_error']:.3g} > {res['atol']:.3g})")
            yield d
    finally:
        files.close()


def load_package(path: str | os.PathLike) -> Any:
    """Load a bioimage.io model package as a :class:`~fluorecon.learn.bundle.Bundle` (see :func:`open_package`).

    Examples
    --------
    >>> load_package("model.zip").axes  # doctest: +SKIP
    'YX'
    """
    with open_package(path) as d:
        return Bundle.load(d)
