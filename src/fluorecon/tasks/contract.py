"""The task contract: what every reconstruction task offers, so that every front end can use it.

A *task* (denoise, deconvolve, localize, ...) is a small class registered with
:func:`fluorecon.tasks.registry.register`. It declares

- ``Params``: a pydantic model (:class:`TaskParams`) of its parameters, in physical units, with
  ranges, defaults and help text. The CLI options, the napari widget and the JSON provenance are all
  derived from it;
- ``inputs`` / ``outputs``: what it reads (:class:`InputSpec`: the primary image and optional extra
  images such as a PSF) and what it produces (:class:`OutputSpec`: images, tables, transforms);
- ``run(inputs, params, progress=None) -> Result``: the computation. ``inputs`` maps input names to
  :class:`fluorecon.io.ImageData`; ``progress`` is the one progress signature of the package,
  ``progress(fraction, message)`` — raising inside it (e.g. :class:`Cancelled`) cancels the run;
- optionally ``plan(sample, params, workdir=None) -> dict`` and ``apply_block(block, resolved) -> array`` (+
  ``block_halo(resolved)``) for out-of-core runs: global decisions are made once by the task itself
  and replayed on every block.

:class:`Result` carries the outputs, the parameters actually used (resolved ``auto`` values, stop
reasons), provenance, warnings and — the point of the architecture — the **forward model** that maps
the main output back to the recording, so that :mod:`fluorecon.trust` can check any task's result
without task-specific code.

Examples
--------
A complete (toy) task: scale an image by a factor. Real tasks live in ``fluorecon/tasks/<name>.py``.

>>> import numpy as np
>>> from fluorecon.io import ImageData
>>> class ScaleParams(TaskParams):
...     factor: float = param(2.0, "Multiply intensities by this.", gt=0)
>>> class ScaleTask(Task):
...     name = "scale-demo"
...     title = "Scale"
...     summary = "Multiply an image by a constant."
...     Params = ScaleParams
...     def run(self, inputs, params, progress=None):
...         img = inputs["image"]
...         report = as_progress(progress)
...         report(1.0, "done")
...         return Result(outputs={"image": img.data * params.factor}, axes={"image": img.axes},
...                       params_used=params.to_json())
>>> res = ScaleTask()(np.ones((4, 4), np.float32), factor=3)
>>> float(res.image[0, 0]), res.params_used
(3.0, {'factor': 3.0})
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import ImageData
from fluorecon.utils import array_hash, to_json

__all__ = [
    "Cancelled",
    "ForwardModel",
    "IdentityForward",
    "InputSpec",
    "OutputSpec",
    "Progress",
    "ProgressFn",
    "Result",
    "Table",
    "Task",
    "TaskParams",
    "array_hash",
    "as_image_data",
    "as_progress",
    "noise_variance",
    "param",
    "to_json",
]

ProgressFn = Callable[[float, str], Any]


class Cancelled(FluoreconError):
    """Raised by a progress callback to stop a running task (napari's Cancel, Ctrl-C handlers)."""

    def __init__(self, message: str = "cancelled by the user"):
        super().__init__(message)


# --------------------------------------------------------------------------------------------- progress
class Progress:
    """The package's one progress reporter: ``progress(fraction, message)``, nestable, cancellable.

    Wraps a user callback ``fn(fraction, message)`` (or nothing). :meth:`span` gives a child reporter
    mapping its own ``[0, 1]`` onto a sub-range of the parent, so that a task can hand a reporter to
    each stage (calibration, training, prediction) without them knowing about each other. The
    callback may raise (e.g. :class:`Cancelled`) to stop the computation: call the reporter at least
    once per iteration or training step.

    Examples
    --------
    >>> seen = []
    >>> p = Progress(lambda f, m: seen.append((round(f, 2), m)))
    >>> train = p.span(0.0, 0.8)
    >>> train(0.5, "training")
    >>> p.span(0.8, 1.0)(1.0, "predicting")
    >>> seen
    [(0.4, 'training'), (1.0, 'predicting')]
    """

    def __init__(self, callback: ProgressFn | None = None, lo: float = 0.0, hi: float = 1.0):
        self.callback = callback
        self.lo = float(lo)
        self.hi = float(hi)

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.callback is None:
            return
        f = min(max(float(fraction), 0.0), 1.0)
        self.callback(self.lo + f * (self.hi - self.lo), message)

    def span(self, lo: float, hi: float) -> Progress:
        """A child reporter for the sub-range ``[lo, hi]`` of this one."""
        a = self.lo + lo * (self.hi - self.lo)
        b = self.lo + hi * (self.hi - self.lo)
        return Progress(self.callback, a, b)

    def steps(self, total: int, message: str = "") -> Callable[..., None]:
        """An adapter for code that reports ``(done, total)`` counts: ``cb(done, total=None)``."""

        def cb(done: int, n: int | None = None, *_: Any) -> None:
            self(done / max(int(n or total), 1), message)

        return cb

    @property
    def active(self) -> bool:
        return self.callback is not None


def as_progress(progress: ProgressFn | Progress | bool | None) -> Progress:
    """Normalise what a caller passed as ``progress`` into a :class:`Progress`.

    ``None``/``False`` report nothing, ``True`` too (front ends draw their own bars from callbacks),
    a callable is ``fn(fraction, message)``.

    Examples
    --------
    >>> as_progress(None).active, as_progress(lambda f, m: None).active
    (False, True)
    """
    if isinstance(progress, Progress):
        return progress
    if progress is None or isinstance(progress, bool):
        return Progress(None)
    if not callable(progress):
        raise FluoreconError(f"progress must be a callable progress(fraction, message), got {type(progress).__name__}")
    return Progress(progress)


# ---------------------------------------------------------------------------------------------- params
class TaskParams(BaseModel):
    """Base of every task's ``Params``: validated once, at the boundary, in physical units.

    Declare fields with :func:`param` so that the CLI and napari can show help, units and ranges.
    Unknown keys are refused (a typo must not be ignored silently).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_json(self) -> dict[str, Any]:
        """The parameters as JSON-compatible values (provenance, reports, re-runs)."""
        return self.model_dump(mode="json")

    @model_validator(mode="after")
    def _check_choices(self) -> TaskParams:
        # ``param(..., choices=...)`` is enforced here, so that no task needs its own validator for it.
        for name, f in type(self).model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            choices = extra.get("choices")
            value = getattr(self, name)
            if choices and isinstance(value, str):
                v = check_choice(value, tuple(choices), name)
                if v != value:
                    self.__dict__[name] = v
        return self


def param(default: Any, help: str, *, unit: str | None = None, cli: str | None = None, advanced: bool = False,
          choices: tuple[str, ...] | None = None, widget: bool = True, **constraints: Any) -> Any:
    """Declare a task parameter: a pydantic ``Field`` with help text, unit and front-end hints.

    Parameters
    ----------
    default : any
        Default value (``...`` for required).
    help : str
        One sentence for ``--help`` and the napari tooltip (units in words when ``unit`` is None).
    unit : str, optional
        Physical unit shown beside the value (``"µm"``, ``"nm"``, ``"ADU"``, ``"e-"``, ``"s"``).
    cli : str, optional
        CLI option name when it differs from ``--field-name``.
    advanced : bool
        Hidden in the napari widget's basic view.
    choices : tuple of str, optional
        Allowed values of a string parameter (validated; shown as a drop-down / in ``--help``).
    widget : bool
        False to keep the parameter out of the napari widget (e.g. ``device`` is set globally).
    **constraints
        Pydantic constraints: ``gt``, ``ge``, ``lt``, ``le``, ``min_length``, ``max_length``.

    Examples
    --------
    >>> class P(TaskParams):
    ...     na: float = param(1.4, "Numerical aperture.", gt=0, le=1.7)
    >>> P(na=1.2).na
    1.2
    """
    extra: dict[str, Any] = {"advanced": advanced, "widget": widget}
    if unit:
        extra["unit"] = unit
    if cli:
        extra["cli"] = cli
    if choices:
        extra["choices"] = list(choices)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def check_choice(value: str, choices: tuple[str, ...] | list[str], name: str) -> str:
    """Validate a string against allowed values (use in a pydantic ``field_validator``)."""
    v = str(value).lower()
    if v not in choices:
        raise ValueError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")
    return v


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class InputSpec:
    """An input of a task.

    ``kind`` says what a front end hands to :meth:`Task.run` under ``name``:

    - ``"image"``: an :class:`fluorecon.io.ImageData` (read with :func:`fluorecon.io.read_image`);
    - ``"images"``: a list of ``ImageData`` (several files, e.g. tiles to stitch);
    - ``"table"``: a :class:`Table` (read with :func:`fluorecon.io_tables.read_table`, e.g. a
      localization CSV);
    - ``"json"``: a dict (a transform, a saved profile);
    - ``"path"``: the :class:`pathlib.Path` itself (a Fiji ``TileConfiguration.txt``, a model folder).

    The first input is the *primary* one: the CLI's positional argument and the recording the forward
    model predicts. Others become options (``--psf FILE``, or ``cli``) or extra positional arguments
    when ``positional``.
    """

    name: str
    help: str
    kind: str = "image"
    required: bool = True
    positional: bool = False
    cli: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    """An output of a task: ``kind`` is ``"image"``, ``"table"``, ``"transform"`` or ``"field"``."""

    name: str
    help: str
    kind: str = "image"


# ----------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A column table (localizations, tile positions, ...) with units per column.

    Examples
    --------
    >>> t = Table({"x [nm]": np.array([1.0, 2.0]), "y [nm]": np.array([3.0, 4.0])})
    >>> len(t), t.names
    (2, ['x [nm]', 'y [nm]'])
    """

    columns: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {k: len(np.asarray(v)) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise FluoreconError(f"table columns have different lengths: {lengths}")
        self.columns = {k: np.asarray(v) for k, v in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]


# ------------------------------------------------------------------------------------------------ forward
@runtime_checkable
class ForwardModel(Protocol):
    """What the trust layer needs: the recording predicted from a result, and its noise variance.

    ``expected(y)`` maps the task's main output ``y`` to the noiseless recording (same shape and units
    as the primary input); ``variance(expected)`` gives the recording's noise variance (may raise
    when no noise model is known); ``to_dict()`` describes it (JSON). :class:`fluorecon.physics.forward.Forward`
    is one.
    """

    def expected(self, y: Any) -> Any: ...

    def variance(self, expected: Any) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


def noise_variance(noise: Any, expected: Any) -> Any:
    """``noise.variance(expected)``, or the error verify expects when a forward model carries no noise model.

    Examples
    --------
    >>> noise_variance(None, 1.0)
    Traceback (most recent call last):
    ...
    fluorecon.errors.FluoreconError: no noise model is attached to this forward model. Fix: give the camera gain/offset/read noise, or let verify estimate them
    """
    if noise is None:
        raise FluoreconError("no noise model is attached to this forward model",
                             hint="give the camera gain/offset/read noise, or let verify estimate them")
    return noise.variance(expected)


class IdentityForward:
    """The forward model of a denoiser: the recording is the result plus noise.

    Examples
    --------
    >>> f = IdentityForward()
    >>> f.expected(np.ones(3)).tolist(), f.to_dict()["kind"]
    ([1.0, 1.0, 1.0], 'identity')
    """

    def __init__(self, noise: Any = None):
        self.noise = noise  # a NoiseModel / Camera-like object with variance(mean), or None

    def expected(self, y: Any) -> Any:
        return y

    def variance(self, expected: Any) -> Any:
        return noise_variance(self.noise, expected)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "identity"}
        if self.noise is not None and hasattr(self.noise, "to_dict"):
            d["noise"] = self.noise.to_dict()
        return d


# ------------------------------------------------------------------------------------------------- result
@dataclass
class Result:
    """What a task returns.

    Attributes
    ----------
    outputs : dict
        Name → numpy array, :class:`Table` or JSON-able dict (transforms); ``main`` names the primary one.
    axes, voxel_size : dict
        Per array output: its axes string and voxel size (µm, spatial axes) — the input's when omitted.
    params_used : dict
        The parameters actually used: ``auto`` values resolved, iteration counts, stop reasons (JSON).
    forward : ForwardModel or None
        Maps ``outputs[main]`` back to the recording (the primary input) for :mod:`fluorecon.trust`.
    provenance : dict
        Task name, version, seconds, input hashes, machine (filled by :meth:`Task.__call__`).
    warnings : list of str
        Things the user must know (did not converge, fell back, low confidence).
    extras : dict
        Non-JSON by-products (a trained model bundle, an uncertainty map, per-stage info).
    """

    outputs: dict[str, Any]
    main: str = "image"
    axes: dict[str, str] = field(default_factory=dict)
    voxel_size: dict[str, tuple[float, ...] | None] = field(default_factory=dict)
    params_used: dict[str, Any] = field(default_factory=dict)
    forward: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Any:
        """The main output."""
        return self.outputs[self.main]

    def to_dict(self) -> dict[str, Any]:
        """A JSON summary (no arrays): output shapes, parameters used, warnings, provenance."""
        outs: dict[str, Any] = {}
        for k, v in self.outputs.items():
            if isinstance(v, np.ndarray):
                outs[k] = {"kind": "image", "shape": list(v.shape), "dtype": str(v.dtype), "axes": self.axes.get(k),
                           "voxel_size": self.voxel_size.get(k)}
            elif isinstance(v, Table):
                outs[k] = {"kind": "table", "rows": len(v), "columns": v.names}
            else:
                outs[k] = {"kind": "json"}
        fwd = None
        if self.forward is not None and hasattr(self.forward, "to_dict"):
            try:
                fwd = self.forward.to_dict()
            except Exception:  # a forward model that cannot describe itself still checks results
                fwd = {"kind": type(self.forward).__name__}
        return to_json({"outputs": outs, "main": self.main, "params_used": self.params_used, "warnings": self.warnings,
                        "provenance": self.provenance, "forward": fwd})


# --------------------------------------------------------------------------------------------------- task
def as_image_data(data: Any, axes: str | None = None, voxel_size: Any = None, name: str = "image") -> ImageData:
    """Wrap an array (or pass an :class:`ImageData` through) with validated axes; float32 data.

    Explicit ``axes``/``voxel_size`` override those of an ``ImageData``.

    Examples
    --------
    >>> img = as_image_data(np.zeros((3, 8, 8)), voxel_size=(0.3, 0.1, 0.1))
    >>> img.axes, img.voxel_size, img.data.dtype
    ('ZYX', (0.3, 0.1, 0.1), dtype('float32'))
    """
    from fluorecon.validation import as_image

    meta: dict[str, Any] = {}
    if isinstance(data, ImageData):
        axes = axes or data.axes
        file_vs = data.voxel_size
        if voxel_size is not None and file_vs is not None:
            given = np.atleast_1d(np.asarray(voxel_size, float))[-len(file_vs):]
            if given.size == len(file_vs) and not np.allclose(given, np.asarray(file_vs, float), rtol=0.01):
                # metadata first, an explicit value overrides it, and a disagreement is reported (issue 14)
                warnings.warn(f"{name}: voxel size {tuple(float(v) for v in given)} µm given explicitly overrides "
                              f"the file's {tuple(round(float(v), 6) for v in file_vs)} µm", FluoreconWarning,
                              stacklevel=2)
        voxel_size = voxel_size if voxel_size is not None else file_vs
        meta = dict(data.metadata)
        if file_vs is not None:
            meta.setdefault("file_voxel_size", list(file_vs))
        data = data.data
    arr, ax = as_image(data, axes, name=name)
    vs = None
    if voxel_size is not None:
        vs = tuple(float(v) for v in np.atleast_1d(voxel_size))
        n_sp = sum(a in "ZYX" for a in ax)
        if len(vs) > n_sp:
            vs = vs[-n_sp:]
        if len(vs) != n_sp or any(v <= 0 or not np.isfinite(v) for v in vs):
            raise FluoreconError(f"{name}: voxel size {tuple(voxel_size)} does not fit its {n_sp} spatial axes ({ax})",
                                 hint=f"give {n_sp} positive sizes in µm")
    return ImageData(arr, ax, vs, meta)


class Task:
    """Base class of a reconstruction task (see the module docstring for the contract).

    Subclasses set the class attributes and implement :meth:`run`; out-of-core tasks also implement
    :meth:`plan` and :meth:`apply_block` (and :meth:`block_halo`).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[TaskParams]] = TaskParams
    inputs: ClassVar[tuple[InputSpec, ...]] = (InputSpec("image", "The recording to reconstruct."),)
    outputs: ClassVar[tuple[OutputSpec, ...]] = (OutputSpec("image", "The reconstruction."),)
    #: trust checks that apply: "verify" (forward-model consistency), "uncertainty", "shift"
    trust: ClassVar[tuple[str, ...]] = ("verify",)
    #: axes the primary input may have (spatial axes trail), for messages and the napari widget
    accepts: ClassVar[tuple[str, ...]] = ("YX", "ZYX")
    #: CLI examples shown in --help
    examples: ClassVar[tuple[str, ...]] = ()
    #: module docs page (docs/<page>.md)
    doc: ClassVar[str] = ""
    #: output file suffix used by batch runs when none is given
    default_suffix: ClassVar[str] = ".tif"
    #: batch runs name outputs ``<input stem><output_tag><suffix>``; None: ``_<name>``
    output_tag: ClassVar[str | None] = None
    #: ``result.extras["bundle"]`` may hold a trained model: the CLI offers ``--save-model DIR``
    saves_model: ClassVar[bool] = False

    # --- the contract -----------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, ImageData], params: TaskParams, progress: ProgressFn | None = None) -> Result:
        raise NotImplementedError

    def plan(self, sample: ImageData, params: TaskParams, workdir: Any = None) -> dict[str, Any]:
        """Global decisions on a representative sample, JSON-able (out-of-core tasks override).

        ``workdir`` (a folder beside the output, or None) holds artefacts too large for JSON, such as
        a model trained once on the sample; the resolved dict refers to them by path.
        """
        raise NotImplementedError

    def apply_block(self, block: np.ndarray, resolved: Mapping[str, Any]) -> np.ndarray:
        """Apply the planned computation to one spatial block (pure; picklable via the task name)."""
        raise NotImplementedError

    def block_halo(self, resolved: Mapping[str, Any]) -> tuple[int, ...] | int:
        """Margin (input pixels per spatial axis) each block needs around it."""
        return 0

    def block_options(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """Extra settings of the blockwise run: ``z_factor`` (output planes per input Z step, for
        tasks that refine Z), ``memory_factor`` (working memory in multiples of a block),
        ``block_shape`` (preferred spatial block). Default: none."""
        return {}

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A tiny example run, **required for every task**: the registry tests run each front end on it.

        Returns ``{"inputs": {input name: ImageData | Table | dict | Path}, "params": {field: value}}``:
        inputs small enough to run in about a second on a CPU (e.g. a 32×32 simulated image) and
        parameters that keep it fast (classical methods, ``steps=2`` for training).
        """
        raise NotImplementedError(f"task {cls.name!r} declares no example() input")

    # --- derived ----------------------------------------------------------------------------------
    @classmethod
    def supports_out_of_core(cls) -> bool:
        return cls.plan is not Task.plan and cls.apply_block is not Task.apply_block

    def params(self, **values: Any) -> TaskParams:
        """Validate ``values`` into this task's ``Params`` (one clear error naming bad fields)."""
        return self.Params(**values)

    def describe(self) -> dict[str, Any]:
        """What ``fluorecon tasks --json`` prints for this task."""
        schema = self.Params.model_json_schema()
        return to_json({
            "name": self.name, "title": self.title, "summary": self.summary,
            "inputs": [{"name": i.name, "kind": i.kind, "required": i.required, "help": i.help} for i in self.inputs],
            "outputs": [{"name": o.name, "kind": o.kind, "help": o.help} for o in self.outputs],
            "out_of_core": self.supports_out_of_core(), "trust": list(self.trust), "accepts": list(self.accepts),
            "params": schema.get("properties", {}), "required": schema.get("required", []), "doc": self.doc,
            "examples": list(self.examples),
        })

    def __call__(self, data: Any = None, *, axes: str | None = None, voxel_size: Any = None,
                 progress: ProgressFn | None = None, inputs: Mapping[str, Any] | None = None,
                 **params: Any) -> Result:
        """Run the task from Python: ``task(image, axes="ZYX", voxel_size=..., **params)``.

        Extra images (e.g. ``psf``) go in ``inputs={"psf": array_or_ImageData}``. Fills the provenance.
        """
        named: dict[str, ImageData] = {}
        primary = self.inputs[0].name
        if data is not None:
            named[primary] = as_image_data(data, axes, voxel_size, name=primary)
        for k, v in (inputs or {}).items():
            if v is None:
                continue
            if k not in {i.name for i in self.inputs}:
                raise FluoreconError(f"task {self.name!r} has no input {k!r}",
                                     hint=f"its inputs are {', '.join(i.name for i in self.inputs)}")
            if isinstance(v, ImageData | np.ndarray) or hasattr(v, "__array__"):
                named[k] = v if isinstance(v, ImageData) else ImageData(np.asarray(v), "", None)
            else:
                named[k] = v
        missing = [i.name for i in self.inputs if i.required and i.name not in named]
        if missing:
            raise FluoreconError(f"task {self.name!r} needs input(s) {', '.join(missing)}")
        p = params.pop("params", None) or self.params(**params)
        return execute(self, named, p, progress)


def execute(task: Task, inputs: Mapping[str, Any], params: TaskParams, progress: ProgressFn | None = None) -> Result:
    """Run ``task`` and fill the result's provenance (what every front end calls)."""
    t0 = time.perf_counter()
    res = task.run(inputs, params, progress)
    if not isinstance(res, Result):
        raise TypeError(f"task {task.name!r} returned {type(res).__name__}, not a Result")
    prim = inputs.get(task.inputs[0].name)
    for k, v in res.outputs.items():
        if isinstance(v, np.ndarray) and prim is not None and isinstance(prim, ImageData):
            res.axes.setdefault(k, prim.axes)
            res.voxel_size.setdefault(k, prim.voxel_size)
    from fluorecon import __version__

    prov = {"task": task.name, "fluorecon": __version__, "seconds": round(time.perf_counter() - t0, 3),
            "params": params.to_json(), "python": platform.python_version(), "machine": platform.machine()}
    hashes = {}
    for k, v in inputs.items():
        if isinstance(v, ImageData):
            hashes[k] = array_hash(np.asarray(v.data))
    prov["inputs_sha256"] = hashes
    prov.update(res.provenance)
    res.provenance = prov
    return res
