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

Requires the optional extra ``pip install fluorecon[bioimageio]`` (``bioimageio.core``/``.spec``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fluorecon
from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError

__all__ = ["ExportSpec", "export_bundle", "export_model", "spec_from_bundle", "validate_package", "CITATIONS"]

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
    import torch

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


def _readme(spec: ExportSpec, norm_text: str, citations: list[tuple[str, str | None, str | None]]) -> str:

    cites = "\n".join(f"- {t}" + (f" doi:{d}" if d else "") + (f" {u}" if u else "") for t, d, u in citations)
    training = "\n".join(f"- **{k}**: {json.dumps(v, default=str)}" for k, v in spec.training.items()) or "- (not recorded)"
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
    import torch
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
            traced.save(str(d / "weights_torchscript.pt"))
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
                config={"fluorecon": {"training": json.loads(json.dumps(dict(spec.training), default=str)),
                                      "normalization": norm}},
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
        from fluorecon.learn.bundle import Bundle

        bundle = Bundle.load(p)  # refuses non-finite weights / normaliser values
    elif hasattr(bundle, "check_finite"):
        bundle.check_finite()
    tt = getattr(bundle, "test_tensors", None)
    config = dict(getattr(bundle, "config", None) or {})
    model = bundle.model
    net_cfg = model.config() if hasattr(model, "config") else {}
    dim = int(net_cfg.get("dim", 2))
    if test_image is not None:
        from fluorecon.learn.predict import predict

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
    return ExportSpec(
        model=model, spatial_axes=spatial, test_input=tin, expected_output=None if tout is None else np.asarray(tout),
        normalization=norm, size_step=step, size_min=2 * step, architecture=arch,
        name=name or str(config.get("name", f"fluorecon {scheme} restoration model")),
        description=str(config.get("description", f"Fluorescence image restoration model ({scheme}, U-Net) "
                                                  f"trained with fluorecon.")),
        methods=[scheme, "unet"], voxel_size=config.get("voxel_size"), training=training,
        authors=tuple(authors or ("fluorecon user",)),
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
