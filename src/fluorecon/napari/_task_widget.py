"""One napari widget for every registered task, generated from the task's contract.

:class:`TasksWidget` holds a task chooser (every task of :func:`fluorecon.tasks.registry.all_tasks`
is reachable, new ones appear without editing the plugin manifest) and a :class:`TaskWidget` for the
chosen task: layer pickers for its image inputs (the layer's ``scale`` is the voxel size), file
pickers for tables/JSON/paths, one control per field of ``task.Params`` (``param(..., widget=False)``
fields are hidden, e.g. ``device``), Run / Cancel and a progress bar fed by the task's
``progress(fraction, message)``. Cancel makes that callback raise
:class:`fluorecon.tasks.contract.Cancelled`, which stops the task at its next progress report (one
iteration or training step). Image outputs become Image layers with the output's voxel size as
``scale``; tables with x/y columns become Points layers.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, Select, SpinBox, create_widget
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

import napari
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData, read_image
from fluorecon.io_tables import read_table
from fluorecon.napari._sim_overlay import add_sim_overlay
from fluorecon.napari._widgets import _TaskWidget
from fluorecon.tasks.contract import Result, Table, Task, as_image_data, execute
from fluorecon.tasks.registry import all_tasks, get

__all__ = ["TaskWidget", "TasksWidget", "field_widget", "layer_input"]


def layer_input(layer: Any, name: str = "image", axes: str | None = None) -> ImageData:
    """An Image layer as task input: its data (float32), ``axes`` (default: from its dimensionality),
    ``scale`` of the spatial axes as voxel size.

    Raises
    ------
    FluoreconError
        No layer, an RGB layer, or more than 4 dimensions.
    """
    if layer is None:
        raise FluoreconError(f"no {name} layer selected", hint="open an image (File > Open) and pick it in the widget")
    if getattr(layer, "rgb", False):
        raise FluoreconError(f"layer '{layer.name}' is RGB", hint="split the channels (right-click > Split RGB)")
    data = np.asarray(layer.data[0] if getattr(layer, "multiscale", False) else layer.data, np.float32)
    if data.ndim > 4:
        raise FluoreconError(f"layer '{layer.name}' has {data.ndim} dimensions", hint="pick one time point / channel")
    if axes is None or len(axes) != data.ndim:
        axes = {2: "YX", 3: "ZYX", 4: "CZYX"}.get(data.ndim, "YX")
    nsp = sum(a in "ZYX" for a in axes)
    vs = tuple(float(s) for s in layer.scale[-nsp:])
    return as_image_data(data, axes, vs, name=f"layer '{layer.name}'")


def _kind(annotation: Any) -> tuple[str, bool]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return _kind(kinds[0])[0], len(kinds) < len(args)
        return "text", len(kinds) < len(args)
    if annotation is bool:
        return "bool", False
    if annotation is int:
        return "int", False
    if origin in (tuple, list):
        return "list", False
    return "text", False


def field_widget(name: str, field: Any) -> tuple[Any, Callable[[Any], Any]]:
    """A magicgui control for one ``Params`` field and the converter of its value.

    Bools are check boxes, plain ints spin boxes, ``choices`` drop-downs; everything else is a text
    field whose text pydantic validates (empty → None), so that no precision is lost.
    """
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    default = None if field.default is PydanticUndefined else field.default
    kind, optional = _kind(field.annotation)
    tip = (field.description or "") + (f" Unit: {extra['unit']}." if extra.get("unit") else "")
    label = name.replace("_", " ") + (f" ({extra['unit']})" if extra.get("unit") else "")
    ident: Callable[[Any], Any] = lambda v: v  # noqa: E731
    if extra.get("choices"):
        choices = list(extra["choices"]) + ([None] if optional else [])
        w = ComboBox(name=name, label=label, choices=choices, value=default, tooltip=tip)
        return w, ident
    if kind == "bool":
        return CheckBox(name=name, label=label, value=bool(default), tooltip=tip), ident
    if kind == "int" and not optional and default is not None:
        return SpinBox(name=name, label=label, value=int(default), min=-(2**31) + 1, max=2**31 - 1, tooltip=tip), ident
    text = "" if default is None else ",".join(str(v) for v in default) if isinstance(default, list | tuple) else str(default)
    w = LineEdit(name=name, label=label, value=text, tooltip=tip)

    def conv(v: Any) -> Any:
        s = str(v).strip()
        if s == "":
            return None
        if kind == "list":
            return [float(q) if re.search(r"[.eE]", q) else int(q) for q in re.split(r"[,\s]+", s) if q]
        return s

    return w, conv


#: Image inputs that give a measured PSF, and the fields that apply only without / only with one.
PSF_INPUTS = ("psf", "beads")
PSF_MODEL_FIELDS = ("psf_model", "na", "wavelength", "refractive_index", "psf_shape")
PSF_MEASURED_FIELDS = ("psf_voxel_size",)


class TaskWidget(_TaskWidget):
    """The widget of one registered task (see the module docstring)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, task: str | Task = "denoise"):
        self.task = get(task) if isinstance(task, str) else task
        self._viewer_ref = napari_viewer  # set before the container exists (the layer list needs it)
        self.title = self.task.title or self.task.name
        self.input_ws: dict[str, Any] = {}
        primary = self.task.inputs[0]
        # Axes of the primary layer (napari layers carry none): the task's accepted layouts.
        self.axes_w = ComboBox(name="axes", label="axes", choices=list(self.task.accepts),
                               value=self.task.accepts[0], tooltip="Axes of the input layer(s)")
        controls: list[Any] = [self.axes_w]
        self.layers_w = None
        if primary.kind == "images":
            self.layers_w = Select(label=primary.name, name=f"in_{primary.name}", tooltip=primary.help,
                                   choices=self._image_layers)
            napari_viewer.layers.events.inserted.connect(self.layers_w.reset_choices)
            napari_viewer.layers.events.removed.connect(self.layers_w.reset_choices)
            controls.append(self.layers_w)
        for spec in self.task.inputs[1:]:
            if spec.kind == "image":
                w = create_widget(annotation=napari.layers.Image | None, label=spec.name.replace("_", " "),
                                  name=f"in_{spec.name}", options={"tooltip": spec.help})
            else:
                w = FileEdit(label=spec.name, name=f"in_{spec.name}", mode="d" if spec.kind == "path" else "r",
                             tooltip=spec.help)
            self.input_ws[spec.name] = w
            controls.append(w)
        self.param_ws: dict[str, tuple[Any, Callable[[Any], Any]]] = {}
        for name, field in self.task.Params.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if not extra.get("widget", True):
                continue
            w, conv = field_widget(name, field)
            self.param_ws[name] = (w, conv)
            controls.append(w)
        super().__init__(napari_viewer, controls, layer_label=self.task.inputs[0].name)
        self._like: Any = None
        if self.layers_w is not None:
            self.layer_w.visible = False
        self.layer_w.changed.connect(self._guess_axes)
        for name in PSF_INPUTS:
            if name in self.input_ws:
                self.input_ws[name].changed.connect(self.update_visibility)
        self.update_visibility()

    def update_visibility(self, *_: Any) -> None:
        """Show only the fields that apply: the PSF-model fields (NA, λ, immersion index, model) while no
        measured PSF (or bead image) is chosen, ``psf_voxel_size`` only when one is."""
        measured = any(self.input_ws[n].value not in (None, "", ".") for n in PSF_INPUTS if n in self.input_ws)
        for name, (w, _) in self.param_ws.items():
            if name in PSF_MODEL_FIELDS or "psf model" in (self.task.Params.model_fields[name].description or "").lower():
                w.visible = not measured
            elif name in PSF_MEASURED_FIELDS and "psf" in self.input_ws:
                w.visible = measured

    # --- inputs and parameters ------------------------------------------------------------------------
    def set_params(self, **values: Any) -> None:
        """Set controls from Python values (tests, scripts)."""
        for k, v in values.items():
            w, _ = self.param_ws[k]
            w.value = v if not isinstance(w, LineEdit) else ("" if v is None else
                                                              ",".join(map(str, v)) if isinstance(v, list | tuple)
                                                              else str(v))

    def params(self) -> Any:
        values = {k: conv(w.value) for k, (w, conv) in self.param_ws.items()}
        try:
            return self.task.Params(**values)
        except ValidationError as e:
            parts = [f"{'.'.join(map(str, err.get('loc', ())))}: {str(err.get('msg', '')).removeprefix('Value error, ')}"
                     for err in e.errors()]
            raise FluoreconError("invalid parameter(s): " + "; ".join(parts)) from None

    def _image_layers(self, *_: Any) -> list[tuple[str, Any]]:
        viewer = self.__dict__.get("viewer") or self._viewer_ref
        return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, napari.layers.Image)]

    def _guess_axes(self, layer: Any = None) -> None:
        """Pick the first accepted axes that fit the chosen layer's dimensionality."""
        layer = layer if layer is not None else self.layer_w.value
        if layer is None:
            return
        fits = [a for a in self.task.accepts if len(a) == np.ndim(layer.data)]
        if fits and len(self.axes_w.value) != np.ndim(layer.data):
            self.axes_w.value = fits[0]

    def inputs(self) -> dict[str, Any]:
        primary = self.task.inputs[0]
        axes = self.axes_w.value
        if self.layers_w is not None:
            layers = list(self.layers_w.value or [])
            if not layers:
                raise FluoreconError(f"no {primary.name} layers selected", hint="select several Image layers")
            self._like = layers[0]
            named: dict[str, Any] = {primary.name: [layer_input(lay, primary.name, axes) for lay in layers]}
        else:
            self._like = self.layer_w.value
            named = {primary.name: layer_input(self._like, primary.name, axes)}
        for spec in self.task.inputs[1:]:
            v = self.input_ws[spec.name].value
            if spec.kind == "image":
                if v is not None:
                    named[spec.name] = layer_input(v, spec.name)
            elif v is not None and str(v) not in ("", "."):
                named[spec.name] = Path(v) if spec.kind == "path" else _read_file(spec.kind, Path(v))
            if spec.required and spec.name not in named:
                raise FluoreconError(f"{self.task.name} needs its {spec.name} input", hint=spec.help)
        return named

    def prepare(self) -> None:
        self._params = self.params()
        self._inputs = self.inputs()

    def compute(self, progress: Callable[..., None]) -> Result:
        return execute(self.task, self._inputs, self._params, progress)

    # --- outputs ----------------------------------------------------------------------------------------
    def done(self, result: Result) -> None:
        like = self._like
        base = like.name if like is not None else self.task.name
        for name, value in result.outputs.items():
            label = f"{base} {self.task.name}" + ("" if name == result.main else f" {name}")
            if isinstance(value, np.ndarray):
                vs = result.voxel_size.get(name)
                scale = tuple(vs) if vs is not None and len(vs) == value.ndim else None
                layer = self._add_or_update(np.asarray(value), label, like)
                if scale is not None:
                    layer.scale = scale
                layer.metadata["fluorecon"] = result.to_dict()
            elif isinstance(value, Table):
                pts = _table_points(value, like)
                if pts is not None:
                    self.viewer.add_points(pts, name=label, size=3, face_color="yellow",
                                           metadata={"fluorecon": result.to_dict()})
        if self.task.name == "sim" and like is not None:
            add_sim_overlay(self.viewer, np.asarray(like.data), result.params_used, order=self._params.order,
                            scale=tuple(like.scale))
        for w in result.warnings:
            napari.utils.notifications.show_warning(w)
        self.status.value = f"{self.title}: done"


def _read_file(kind: str, path: Path) -> Any:
    if kind == "json":
        return json.loads(path.read_text())
    if kind == "table":
        return read_table(path, required=())
    return as_image_data(read_image(path), name=str(path))


def _col(table: Table, axis: str) -> tuple[np.ndarray, str] | None:
    """The column ``x`` / ``x [nm]`` / ``x_px`` of a table and its unit."""
    for n in table.names:
        m = re.fullmatch(rf"{axis}(?:\s*\[(.+)\]|_(\w+))?", n.strip().lower())
        if m:
            return np.asarray(table[n], float), (m.group(1) or m.group(2) or "")
    return None


def _table_points(table: Table, like: Any) -> np.ndarray | None:
    """World coordinates (µm, or pixels × the layer's scale) of a table with x/y columns, as (y, x)."""
    x, y = _col(table, "x"), _col(table, "y")
    if x is None or y is None:
        return None
    pts = []
    scale = tuple(like.scale[-2:]) if like is not None else (1.0, 1.0)
    for (vals, unit), s in ((y, scale[0]), (x, scale[1])):
        f = {"nm": 1e-3, "µm": 1.0, "um": 1.0}.get(unit, s)
        pts.append(vals * f)
    return np.stack(pts, axis=1)


class TasksWidget(Container):
    """Every registered task in one dock widget: a task chooser above the chosen task's widget."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, task: str | None = None):
        self.viewer = napari_viewer
        names = [t.name for t in all_tasks()]
        self.chooser = ComboBox(label="task", choices=names, value=task or ("denoise" if "denoise" in names else names[0]))
        self.task_widget = TaskWidget(napari_viewer, self.chooser.value)
        super().__init__(widgets=[self.chooser, self.task_widget], labels=False)
        self.chooser.changed.connect(self._switch)

    def _switch(self, name: str) -> None:
        old = self.task_widget
        self.task_widget = TaskWidget(self.viewer, name)
        self.remove(old)
        self.append(self.task_widget)
