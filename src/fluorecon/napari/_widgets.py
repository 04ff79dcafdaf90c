"""Dock widgets: denoise, deconvolve, train/predict, trust maps.

Each widget reads a napari Image layer, calls one public fluorecon function in a worker thread (the UI
stays responsive; a progress bar and a Cancel button), and adds the result as a new layer that keeps
the input's ``scale``/``translate`` and is named for what it is (``"cells denoised (nlm)"``).

Cancel is cooperative: fluorecon's long functions call a ``progress`` callback, and the callback raises
when Cancel was pressed, so the computation stops at its next step. Bad input (a layer of the wrong
dimensionality, no layer, a missing bundle) is shown as a message in the viewer, never a traceback.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal

import napari
from fluorecon.errors import FluoreconError
from fluorecon.learn.single_image import SINGLE_IMAGE_SCHEMES
from fluorecon.tasks import denoise as denoise_task
from fluorecon.tasks.contract import Cancelled as _ContractCancelled
from fluorecon.tasks.deconvolve import METHODS as DECONV_METHODS

__all__ = ["DenoiseWidget", "DeconvolveWidget", "LearnWidget", "TrustWidget", "layer_image", "Cancelled"]


# Raised inside a worker's progress callback when the user pressed Cancel: the package's one
# cancellation exception, so that any task stops at its next progress report.
Cancelled = _ContractCancelled


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (Qt queues cross-thread signals)."""

    progress = Signal(float, str)
    loss = Signal(int, float)


def prefer_our_reader() -> None:
    """Make fluorecon the default reader of ``*.ome.zarr`` (napari's built-in reader drops the voxel sizes).

    napari asks which plugin should open a file type that several plugins accept; this records fluorecon
    in napari's ``extension2reader`` preference unless the user already chose a reader for OME-Zarr. It is
    called when any fluorecon widget opens (napari loads plugins lazily, so not at start-up).
    """
    try:
        from napari.settings import get_settings

        prefs = get_settings().plugins.extension2reader
        for pattern in ("*.ome.zarr", "*.ome.zarr" + os.sep):  # napari matches folders with a trailing separator
            if pattern not in prefs:
                prefs[pattern] = "fluorecon"
                get_settings().plugins.extension2reader = dict(prefs)
    except Exception:  # settings unavailable (old napari, read-only profile): napari asks the user instead
        pass


def _default(params_cls: Any, name: str) -> Any:
    """The default of a task parameter, so that the GUI and the CLI start from the same values."""
    return params_cls.model_fields[name].default


def layer_image(layer: Any, what: str = "image") -> tuple[np.ndarray, str, tuple[float, ...]]:
    """Return ``(data, axes, voxel_size)`` of a 2D/3D single-channel Image layer, or raise.

    Raises
    ------
    FluoreconError
        No layer, an RGB layer, or a layer that is not 2D or 3D.
    """
    if layer is None:
        raise FluoreconError(f"no {what} layer selected", hint="open an image (File > Open) and pick it in the widget")
    if getattr(layer, "rgb", False):
        raise FluoreconError(f"layer '{layer.name}' is RGB", hint="split the channels (right-click > Split RGB) and pick one")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise FluoreconError(
            f"layer '{layer.name}' has {data.ndim} dimensions {tuple(data.shape)}; this widget needs a 2D (YX) or 3D (ZYX) "
            "single-channel image",
            hint="split channels / pick one time point first (e.g. Layers > Split Stack), or use the fluorecon CLI with --axes",
        )
    axes = "YX" if data.ndim == 2 else "ZYX"
    scale = tuple(float(s) for s in layer.scale[-data.ndim:])
    return data.astype(np.float32, copy=False), axes, scale


def _progress_for(fn: Callable[..., Any], cb: Callable[..., None]) -> Any:
    """``progress=`` argument for ``fn``: our callback where it accepts one; False where it only takes a
    bool (then Cancel takes effect when the step returns)."""
    import inspect

    try:
        p = inspect.signature(fn).parameters.get("progress")
    except (TypeError, ValueError):
        return cb
    if p is not None and (isinstance(p.default, bool) or p.annotation in (bool, "bool")):
        return False
    return cb


def _progress_callback(cancel: threading.Event, relay: _Relay) -> Callable[..., None]:
    """A ``progress`` callable accepting the shapes fluorecon functions use: ``(fraction)``,
    ``(fraction, message)``, ``(done, total)`` or a dict; raises :class:`Cancelled` after Cancel."""

    def cb(*args: Any, **kw: Any) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled by the user")
        frac: float | None = kw.get("fraction")
        msg = str(kw.get("message", ""))
        if args:
            a0 = args[0]
            if isinstance(a0, dict):
                frac = a0.get("fraction", frac)
                msg = str(a0.get("message", a0.get("stage", msg)))
            elif len(args) >= 2 and isinstance(args[1], int | float) and not isinstance(args[1], bool) and args[1] > 1:
                frac = float(a0) / float(args[1])
            elif isinstance(a0, int | float):
                frac = float(a0)
                if len(args) > 1:
                    msg = str(args[1])
            elif isinstance(a0, str):
                msg = a0
        relay.progress.emit(-1.0 if frac is None else float(min(max(frac, 0.0), 1.0)), msg)

    return cb


class _TaskWidget(Container):
    """Layer picker + task-specific controls + Run / Cancel + progress bar + status line."""

    title = "fluorecon"

    def __init__(self, napari_viewer: napari.viewer.Viewer, controls: list, *, layer_label: str = "image"):
        self.viewer = napari_viewer
        self.layer_w = create_widget(annotation=napari.layers.Image, label=layer_label)
        self.run_btn = PushButton(text="Run")
        self.cancel_btn = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="progress", visible=True)
        self.status = Label(value="")
        super().__init__(widgets=[self.layer_w, *controls, self.run_btn, self.cancel_btn, self.progress, self.status],
                         labels=True)
        self._cancel = threading.Event()
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self.worker = None
        self.last_error: str | None = None
        self.last_result: Any = None
        # Long messages wrap instead of widening the dock (the canvas keeps its room).
        self.status.native.setWordWrap(True)
        self.native.setMaximumWidth(460)
        self.run_btn.changed.connect(self.run)
        self.cancel_btn.changed.connect(self.cancel)
        self.reset_choices()
        prefer_our_reader()

    # --- helpers the subclasses use ------------------------------------------------------------------
    def _error(self, msg: str) -> None:
        self.last_error = msg
        self.status.value = f"error: {msg}"
        show_error(msg)

    def _on_progress(self, frac: float, msg: str) -> None:
        if frac >= 0:
            self.progress.value = int(round(frac * 1000))
        if msg:
            self.status.value = msg

    def _add_or_update(self, data: np.ndarray, name: str, like: Any, **kw: Any):
        scale = tuple(like.scale[-data.ndim:]) if like is not None else None
        translate = tuple(like.translate[-data.ndim:]) if like is not None else None
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            if scale is not None:
                layer.scale = scale
            layer.metadata.update(kw.get("metadata", {}))
            return layer
        return self.viewer.add_image(data, name=name, scale=scale, translate=translate, **kw)

    # --- running -------------------------------------------------------------------------------------
    def compute(self, progress: Callable[..., None]) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self) -> None:
        """Validate inputs in the GUI thread (raise FluoreconError for a message)."""

    def done(self, result: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def run(self, *_: Any) -> Any:
        """Start the task in a worker thread; returns the worker (None if the inputs are invalid)."""
        if self.worker is not None:
            show_info("fluorecon is already running; press Cancel to stop it")
            return None
        self.last_error = None
        try:
            self.prepare()
        except FluoreconError as e:
            self._error(str(e))
            return None
        self._cancel.clear()
        progress = _progress_callback(self._cancel, self._relay)
        worker = create_worker(self._guarded, progress, _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_btn.enabled = False
        self.cancel_btn.enabled = True
        self.progress.value = 0
        self.status.value = f"{self.title}: running…"
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        """Ask the running task to stop at its next progress report."""
        self._cancel.set()
        self.status.value = "cancelling…"
        if self.worker is not None:
            self.worker.quit()

    def _guarded(self, progress: Callable[..., None]) -> tuple[str, Any]:
        """Runs in the worker thread. Never raises: napari would show an exception as a traceback dialog."""
        try:
            return "ok", self.compute(progress)
        except Cancelled:
            return "cancelled", None
        except FluoreconError as e:
            return "error", str(e)
        except Exception as e:  # a bug or a library failure: one line for the user, details in the tooltip
            return "crash", (f"{type(e).__name__}: {e}", "".join(traceback.format_exception(e))[-4000:])

    def _on_returned(self, outcome: tuple[str, Any]) -> None:
        kind, payload = outcome
        if kind == "cancelled" or self._cancel.is_set():
            self.status.value = "cancelled"
            self.last_error = "cancelled"
            return
        if kind == "error":
            self._error(payload)
            return
        if kind == "crash":
            self._error(payload[0])
            self.status.tooltip = payload[1]
            return
        try:
            self.done(payload)
            self.last_result = payload
            self.progress.value = 1000
        except FluoreconError as e:
            self._error(str(e))

    def _on_finished(self) -> None:
        if self._cancel.is_set():  # after quit() the worker does not emit `returned`
            self.status.value = "cancelled"
            self.last_error = "cancelled"
        self.worker = None
        self.run_btn.enabled = True
        self.cancel_btn.enabled = False


# ------------------------------------------------------------------------------------------------------
# Denoise
# ------------------------------------------------------------------------------------------------------


def _denoise_methods() -> list[str]:
    methods = [*denoise_task.CLASSICAL, *denoise_task.learned_methods()]
    return ["auto", *[m for m in dict.fromkeys(methods) if m != "auto"]]


class DenoiseWidget(_TaskWidget):
    """Denoise an image: ``auto`` tunes a classical denoiser on the image itself (J-invariance) or
    trains a short self-supervised network, within the time budget."""

    title = "denoise"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.method = ComboBox(choices=_denoise_methods(), value="auto", label="method")
        self.budget = FloatSpinBox(value=30.0, min=1.0, max=3600.0, step=5.0, label="time budget (s)")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        super().__init__(napari_viewer, [self.method, self.budget, self.seed])

    def prepare(self) -> None:
        self._layer = self.layer_w.value
        self._data, self._axes, self._scale = layer_image(self._layer)

    def compute(self, progress):
        from fluorecon.tasks.denoise import denoise

        return denoise(self._data, self._axes, method=self.method.value, budget_s=float(self.budget.value),
                       seed=int(self.seed.value), device="auto", progress=_progress_for(denoise, progress))

    def done(self, result) -> None:
        out, info = result
        used = (info or {}).get("method", self.method.value)
        self._add_or_update(np.asarray(out, dtype=np.float32), f"{self._layer.name} denoised ({used})", self._layer,
                            metadata={"fluorecon": {"task": "denoise", **_jsonable(info)}},
                            contrast_limits=self._layer.contrast_limits)
        self.status.value = f"done: {used}"


# ------------------------------------------------------------------------------------------------------
# Deconvolve
# ------------------------------------------------------------------------------------------------------


def _deconvolve_methods() -> list[str]:
    return [m for m in DECONV_METHODS if m != "learned"]  # "learned" needs training pairs: use the CLI


class DeconvolveWidget(_TaskWidget):
    """Deconvolve with a PSF taken from another layer (a measured bead) or computed from the optics."""

    title = "deconvolve"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        from fluorecon.tasks.deconvolve import DeconvolveParams as P

        it = _default(P, "iterations")
        self.psf_source = ComboBox(choices=["widefield model", "gaussian model", "layer"], value="widefield model",
                                   label="PSF from")
        self.psf_layer = create_widget(annotation=napari.layers.Image | None, label="PSF layer")
        self.na = FloatSpinBox(value=_default(P, "na"), min=0.05, max=1.7, step=0.05, label="NA")
        self.wavelength = FloatSpinBox(value=_default(P, "wavelength"), min=0.2, max=2.0, step=0.01,
                                       label="emission λ (µm)")
        self.ri = FloatSpinBox(value=_default(P, "refractive_index"), min=1.0, max=2.0, step=0.01,
                               label="immersion index")
        self.pixel_xy = FloatSpinBox(value=1.0, min=0.001, max=100.0, step=0.005, label="pixel size XY (µm)")
        self.pixel_z = FloatSpinBox(value=1.0, min=0.001, max=100.0, step=0.05, label="Z step (µm)")
        self.method = ComboBox(choices=_deconvolve_methods(), value=_default(P, "method"), label="method")
        self.iterations = SpinBox(value=it if isinstance(it, int) else 20, min=1, max=1000, label="iterations")
        self.background = ComboBox(choices=["auto", "0"], value=str(_default(P, "background")), label="background")
        super().__init__(napari_viewer, [self.psf_source, self.psf_layer, self.na, self.wavelength, self.ri,
                                         self.pixel_xy, self.pixel_z, self.method, self.iterations, self.background])
        for w, dec in ((self.ri, 3), (self.wavelength, 3), (self.pixel_xy, 4), (self.pixel_z, 4)):
            w.native.setDecimals(dec)  # Qt's default 2 decimals would round 1.518 to 1.52, 0.065 µm to 0.07
        self.ri.value = _default(P, "refractive_index")
        self.wavelength.value = _default(P, "wavelength")
        self.psf_source.changed.connect(self._update_visibility)
        self.layer_w.changed.connect(self._from_layer)
        self._from_layer()
        self._update_visibility()

    def _from_layer(self, *_: Any) -> None:
        """Pixel sizes from the layer's scale (µm, as the fluorecon reader sets them from the file)."""
        layer = self.layer_w.value
        if layer is None or getattr(layer, "rgb", False):
            return
        scale = [float(s) for s in layer.scale]
        self.pixel_xy.value = scale[-1]
        self.pixel_z.value = scale[-3] if len(scale) >= 3 else 1.0
        self._update_visibility()

    def _update_visibility(self, *_: Any) -> None:
        """Show only the fields that apply: optics for a PSF model, the PSF layer otherwise; Z step for stacks."""
        model = self.psf_source.value != "layer"
        for w in (self.na, self.wavelength, self.ri):
            w.visible = model
        self.psf_layer.visible = not model
        layer = self.layer_w.value
        ndim = 0 if layer is None else np.ndim(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)
        self.pixel_xy.visible = model
        self.pixel_z.visible = model and ndim == 3

    def prepare(self) -> None:
        self._layer = self.layer_w.value
        self._data, self._axes, self._scale = layer_image(self._layer)
        src = self.psf_source.value
        self._psf_scale = None
        if src == "layer":
            psf_layer = self.psf_layer.value
            if psf_layer is None:
                raise FluoreconError("PSF from 'layer' was chosen but no PSF layer is selected",
                                     hint="open the measured PSF as a layer and pick it, or choose a PSF model")
            psf = np.asarray(psf_layer.data, dtype=np.float32)
            if psf.ndim > self._data.ndim:
                raise FluoreconError(f"PSF layer '{psf_layer.name}' is {psf.ndim}D but the image is {self._data.ndim}D",
                                     hint="use a PSF with at most the image's dimensions")
            self._psf, self._psf_desc = psf, f"layer {psf_layer.name}"
            pscale = tuple(float(v) for v in psf_layer.scale[-psf.ndim:])
            if any(v != 1.0 for v in pscale):  # the PSF's own sampling (resampled onto the image's grid)
                self._psf_scale = pscale
        else:
            if self.na.value >= self.ri.value:
                raise FluoreconError(f"NA {self.na.value} must be smaller than the immersion index {self.ri.value}",
                                     hint="check the objective's numerical aperture")
            vs = (float(self.pixel_xy.value),) * 2
            if self._data.ndim == 3:
                vs = (float(self.pixel_z.value), *vs)
            if all(v == 1.0 for v in vs):
                raise FluoreconError(
                    "the image's voxel size is unknown (scale 1): a PSF model needs the pixel size in µm",
                    hint="set 'pixel size XY' (and 'Z step'), or open the file with the fluorecon reader, which "
                         "keeps the voxel size of OME/ImageJ TIFF and OME-Zarr files")
            self._scale = vs
            self._psf = None
            self._psf_desc = f"{src.split()[0]} NA {self.na.value} λ {self.wavelength.value} µm"

    def compute(self, progress):
        from fluorecon.tasks.deconvolve import deconvolve

        progress(0.0, "deconvolving…")
        kw: dict[str, Any] = {"psf": self._psf}
        if self._psf is None:  # the task builds the model PSF on the image's grid (voxel size = layer scale)
            kw = {"psf_model": "gaussian" if self.psf_source.value.startswith("gaussian") else "widefield",
                  "na": float(self.na.value), "wavelength": float(self.wavelength.value),
                  "refractive_index": float(self.ri.value)}
        else:
            kw["psf_voxel_size"] = self._psf_scale
        bg = self.background.value
        return deconvolve(self._data, self._axes, method=self.method.value, iterations=int(self.iterations.value),
                          voxel_size=self._scale, background=bg if bg == "auto" else float(bg), device="auto",
                          progress=_progress_for(deconvolve, progress), **kw)

    def _trust_forward(self) -> Any:
        """The forward model the Trust widget checks this deconvolution with: the same PSF on the layer's grid."""
        from fluorecon.physics.forward import Forward
        from fluorecon.tasks.deconvolve import make_psf_for_image

        try:
            if self._psf is not None:
                p, _ = make_psf_for_image(self._data.shape, psf=self._psf, psf_voxel_size=self._psf_scale,
                                          voxel_size=self._scale if self._psf_scale else None)
            else:
                p, _ = make_psf_for_image(self._data.shape, psf_model="gaussian" if self.psf_source.value.startswith(
                    "gaussian") else "widefield", na=float(self.na.value), wavelength=float(self.wavelength.value),
                    refractive_index=float(self.ri.value), voxel_size=self._scale)
            return Forward(psf=p)
        except FluoreconError:
            return None

    def done(self, result) -> None:
        out, info = result
        m = (info or {}).get("method", self.method.value)
        it = (info or {}).get("iterations", self.iterations.value)
        name = f"{self._layer.name} deconvolved ({m}, {it} it)" if m.startswith("rl") else f"{self._layer.name} deconvolved ({m})"
        self._add_or_update(np.asarray(out, dtype=np.float32), name, self._layer,
                            metadata={"fluorecon": {"task": "deconvolve", "psf": self._psf_desc, **_jsonable(info)},
                                      "fluorecon_forward": self._trust_forward()})
        self.status.value = f"done: {name}"


# ------------------------------------------------------------------------------------------------------
# Train / predict
# ------------------------------------------------------------------------------------------------------


class LossCurve:
    """A live training-loss plot (matplotlib canvas in the dock), updated from the GUI thread."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 1.8), dpi=90, layout="constrained")
        self.ax = self.figure.subplots()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(140)
        self.steps: list[int] = []
        self.losses: list[float] = []
        (self.line,) = self.ax.plot([], [], lw=1.0)
        self._style()

    def _style(self) -> None:
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_ylabel("training loss", fontsize=8)
        self.ax.tick_params(labelsize=7)
        self.ax.grid(alpha=0.3)

    def clear(self) -> None:
        self.steps.clear()
        self.losses.clear()
        self.line.set_data([], [])
        self.canvas.draw_idle()

    def add(self, step: int, loss: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.line.set_data(self.steps, self.losses)
        self.ax.relim()
        self.ax.autoscale_view()
        self.canvas.draw_idle()


def _schemes() -> list[str]:
    return list(SINGLE_IMAGE_SCHEMES)


class LearnWidget(_TaskWidget):
    """Train a self-supervised denoiser on the image itself (live loss curve), or predict with a saved
    model bundle; export the trained model as a bioimage.io package."""

    title = "train / predict"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.mode = ComboBox(choices=["train on this image (self-supervised)", "predict with a bundle"],
                             value="train on this image (self-supervised)", label="mode")
        self.scheme = ComboBox(choices=_schemes(), value="auto", label="scheme")
        self.bundle = FileEdit(mode="d", label="bundle folder", value="")
        self.save_to = FileEdit(mode="d", label="save bundle to (optional)", value="")
        self.budget = FloatSpinBox(value=120.0, min=2.0, max=36000.0, step=10.0, label="training budget (s)")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        self.export_to = FileEdit(mode="w", label="bioimage.io package", value="", filter="*.zip")
        self.export_btn = PushButton(text="Export to bioimage.io", enabled=False)
        super().__init__(napari_viewer, [self.mode, self.scheme, self.bundle, self.save_to, self.budget, self.seed])
        self.loss_curve = LossCurve()
        self.native.layout().insertWidget(self.native.layout().count() - 1, self.loss_curve.canvas)
        self.extend([self.export_to, self.export_btn])
        self.bundle_obj: Any = None
        self._relay.loss.connect(self.loss_curve.add)
        self.mode.changed.connect(self._update_visibility)
        self.export_btn.changed.connect(self.export)
        self._update_visibility()

    def _update_visibility(self, *_: Any) -> None:
        train = not self.mode.value.startswith("predict")
        for w in (self.scheme, self.save_to, self.budget, self.seed):
            w.visible = train
        self.loss_curve.canvas.setVisible(train)
        self.bundle.visible = not train

    def export(self, *_: Any) -> Any:
        """Write the trained (or loaded) model as a bioimage.io package (``.zip``); returns its path."""
        try:
            if self.bundle_obj is None:
                raise FluoreconError("no model to export yet", hint="train on an image or predict with a bundle first")
            dest = Path(str(self.export_to.value))
            if str(self.export_to.value) in ("", "."):
                raise FluoreconError("choose where to write the package", hint="e.g. my_model.zip")
            if dest.suffix.lower() != ".zip":
                dest = dest.with_suffix(".zip")
            from fluorecon.bioimageio import export_bundle, training_warnings

            out = export_bundle(self.bundle_obj, dest, name=f"fluorecon {self._layer.name}")
            for w in training_warnings(self.bundle_obj.provenance):  # the CLI's under-training warnings
                show_warning(f"exported model: {w}")
        except FluoreconError as e:
            self._error(str(e))
            return None
        except ImportError as e:
            self._error(f"bioimage.io export needs the extra: pip install 'fluorecon[bioimageio]' ({e})")
            return None
        self.status.value = f"exported {out}"
        show_info(f"bioimage.io package written: {out}")
        return out

    def prepare(self) -> None:
        self._layer = self.layer_w.value
        self._data, self._axes, self._scale = layer_image(self._layer)
        self._predict = self.mode.value.startswith("predict")
        self.loss_curve.clear()
        if self._predict:
            p = Path(str(self.bundle.value))
            if not str(self.bundle.value) or not (p / "bundle.json").exists():
                raise FluoreconError(f"no model bundle at '{self.bundle.value}'",
                                     hint="pick the folder written by `fluorecon train` (it contains bundle.json)")
            self._bundle_path = p

    def compute(self, progress):
        if self._predict:
            from fluorecon.learn.bundle import Bundle
            from fluorecon.learn.predict import predict

            progress(0.0, "loading bundle…")
            bundle = Bundle.load(self._bundle_path)
            progress(0.1, "predicting…")
            out = predict(bundle, self._data, self._axes, tile="auto", device="auto")
            return out, {"bundle": str(self._bundle_path)}, bundle
        import time

        from fluorecon.learn.single_image import denoise_single_image

        budget = float(self.budget.value)
        progress(0.0, f"training for {budget:.0f} s…")
        t0 = time.perf_counter()
        relay = self._relay

        def step_cb(step: int, loss: float) -> None:
            # every training step: Cancel stops training within one step; progress and the loss curve update
            elapsed = time.perf_counter() - t0
            progress(min(0.95, 0.95 * elapsed / budget), f"training: step {step}, loss {loss:.4g}, {elapsed:.0f} s")
            relay.loss.emit(int(step), float(loss))

        res = denoise_single_image(self._data, self._axes, scheme=self.scheme.value, budget_s=budget,
                                   seed=int(self.seed.value), device="auto", callback=step_cb,
                                   progress=_progress_for(denoise_single_image, progress))
        progress(1.0, "trained")
        out, info, bundle = _unpack_single_image(res)
        if bundle is not None and str(self.save_to.value) not in ("", "."):
            bundle.save(Path(str(self.save_to.value)))
            info["saved_to"] = str(self.save_to.value)
        return out, info, bundle

    def done(self, result) -> None:
        out, info, bundle = result
        self.bundle_obj = bundle
        self.export_btn.enabled = bundle is not None
        if self._predict:
            name = f"{self._layer.name} restored ({self._bundle_path.name})"
        else:
            name = f"{self._layer.name} denoised (self-supervised)"
        self._add_or_update(np.asarray(out, dtype=np.float32), name, self._layer,
                            metadata={"fluorecon": {"task": "predict" if self._predict else "train", **_jsonable(info)},
                                      "fluorecon_bundle": bundle})
        self.status.value = f"done: {name}"


def _unpack_single_image(res: Any) -> tuple[np.ndarray, dict, Any]:
    """``denoise_single_image`` may return (out, info), (out, info, bundle) or an object with fields."""
    if isinstance(res, tuple):
        out = res[0]
        info = dict(res[1]) if len(res) > 1 and isinstance(res[1], dict) else {}
        bundle = next((r for r in res[1:] if hasattr(r, "save") and hasattr(r, "model")), None)
        if bundle is None:
            bundle = info.pop("bundle", None)
        return out, info, bundle
    out = getattr(res, "prediction", getattr(res, "output", None))
    return out, dict(getattr(res, "info", {}) or {}), getattr(res, "bundle", None)


# ------------------------------------------------------------------------------------------------------
# Trust
# ------------------------------------------------------------------------------------------------------


class TrustWidget(_TaskWidget):
    """Add the trust layer's maps (uncertainty, forward-model consistency) of a restoration as layers."""

    title = "trust"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.prediction_w = create_widget(annotation=napari.layers.Image, label="restoration")
        self.use_uncertainty = CheckBox(value=True, label="uncertainty")
        self.use_consistency = CheckBox(value=True, label="consistency")
        self.use_shift = CheckBox(value=True, label="distribution shift")
        self.warnings_label = Label(value="")
        super().__init__(napari_viewer, [self.prediction_w, self.use_uncertainty, self.use_consistency,
                                         self.use_shift, self.warnings_label], layer_label="recording")
        self.warnings_label.native.setWordWrap(True)

    def prepare(self) -> None:
        self._layer = self.layer_w.value
        self._data, self._axes, self._scale = layer_image(self._layer, "recording")
        self._pred_layer = self.prediction_w.value
        self._pred, _, _ = layer_image(self._pred_layer, "restoration")
        if self._pred_layer is self._layer:
            raise FluoreconError("the recording and the restoration are the same layer",
                                 hint="pick the restored layer as 'restoration'")
        if self._pred.shape != self._data.shape:
            raise FluoreconError(f"restoration {self._pred.shape} and recording {self._data.shape} differ in shape",
                                 hint="pick the restoration made from this recording")
        self._bundle = self._pred_layer.metadata.get("fluorecon_bundle")
        # the restoration's forward model (a deconvolution stores its PSF on the layer's grid; a task Result
        # carries one), so that deconvolutions are checked with the blur, not the identity
        result = self._pred_layer.metadata.get("fluorecon_result")
        self._forward = self._pred_layer.metadata.get("fluorecon_forward") or getattr(result, "forward", None)

    def compute(self, progress):
        from fluorecon.trust.summary import assess

        progress(0.05, "checking…")
        shift = bool(self.use_shift.value) and bool(getattr(self._bundle, "training_stats", None))
        if self.use_shift.value and not shift:
            progress(0.05, "distribution shift skipped: no model bundle with training statistics")
        return assess(self._data, self._axes, bundle=self._bundle, prediction=self._pred, forward=self._forward,
                      uncertainty=bool(self.use_uncertainty.value), consistency=bool(self.use_consistency.value),
                      shift=shift)

    def done(self, summary) -> None:
        cmaps = {"uncertainty": "magma", "consistency": "inferno", "consistency_z": "RdBu_r", "verify_z": "RdBu_r"}
        for key, m in summary.maps.items():
            m = np.asarray(m, dtype=np.float32)
            if m.shape != self._pred.shape:
                continue
            kw: dict[str, Any] = {"colormap": cmaps.get(key, "viridis"), "blending": "additive", "visible": key not in ("consistency_z", "verify_z")}
            if key in ("consistency_z", "verify_z"):
                v = float(np.nanpercentile(np.abs(m), 99.5)) or 1.0
                kw["contrast_limits"] = (-v, v)
            self._add_or_update(m, f"{self._pred_layer.name} {key.replace('_', ' ')}", self._pred_layer, **kw)
        warns = list(summary.warnings)
        self.warnings_label.value = "\n".join(f"⚠ {w}" for w in warns) if warns else "no warnings"
        for w in warns:
            show_warning(w)
        self.status.value = f"done: {len(summary.maps)} maps, {len(warns)} warnings"


def _jsonable(info: Any) -> dict:
    from fluorecon.cli.common import to_jsonable

    if not isinstance(info, dict):
        return {}
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray) and v.size > 16:
            continue
        try:
            out[str(k)] = to_jsonable(v)
        except Exception:
            out[str(k)] = str(v)
    return out
