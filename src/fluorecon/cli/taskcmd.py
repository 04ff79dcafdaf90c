"""Generated CLI commands: one ``fluorecon <task>`` verb per registered task, built from its contract.

:func:`register_task` reads a :class:`~fluorecon.tasks.contract.Task` and builds a typer command:

- one option per field of ``task.Params`` (``--field-name``, or ``param(..., cli="--name")``; a bool
  becomes ``--x/--no-x``; help = description + unit + choices; defaults shown). The values go to
  ``task.Params`` unchanged, so validation (ranges, choices, cross-field rules) lives in one place and
  a bad value exits with code 2 naming the option;
- ``task.inputs``: the primary input is the positional argument (several files, folders and globs run
  as a batch; kind ``"images"`` takes them all in one run); other inputs are ``--name FILE`` options
  (or positional when ``InputSpec.positional``), read once: images with :func:`fluorecon.io.read_image`,
  tables with :func:`fluorecon.io_tables.read_table`, JSON with :mod:`json`, paths passed as is;
- the shared options of :mod:`fluorecon.cli.options`: ``-o/--output``, ``--axes``, ``--voxel-size``
  (overrides the file's metadata), ``--json``, ``--quiet``, ``--overwrite``, ``--report``,
  ``--check`` (forward-model consistency of the result, :mod:`fluorecon.trust.verify`),
  ``--scheduler`` (with a ``.zarr`` output: out of core, for tasks with ``plan``/``apply_block``),
  and ``--save-model DIR`` for tasks whose ``saves_model`` is set.

Outputs: the main output goes to ``-o``; every other output to ``<stem>_<name><suffix>`` beside it
(images: the suffix of ``-o``; tables: ``.csv``; transforms: ``.json``). ``--json`` prints
``Result.to_dict()`` with each output's ``path``.

Examples
--------
>>> import typer
>>> from fluorecon.tasks.registry import get
>>> app = typer.Typer()
>>> register_task(app, get("denoise"))
>>> [c.name for c in app.registered_commands]
['denoise']
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import typer
from pydantic import ValidationError
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fluorecon import report as report_mod
from fluorecon._atomic import atomic_path, check_output
from fluorecon.cli.common import (
    EXIT_OK,
    echo_warnings,
    expand_inputs,
    handle_errors,
    plan_outputs,
    run_batch,
)
from fluorecon.cli.options import parse_voxel_size
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData, read_image, write_image
from fluorecon.io_tables import read_table, write_table
from fluorecon.scale.bridge import wants_out_of_core
from fluorecon.scale.taskop import run_task_out_of_core
from fluorecon.tasks.contract import (
    InputSpec,
    Result,
    Table,
    Task,
    TaskParams,
    as_image_data,
    execute,
    to_json,
)
from fluorecon.trust.verify import verify

__all__ = ["SHARED_OPTIONS", "build_params", "register_broken_task", "register_task", "sibling_path",
           "write_outputs"]

#: CLI names of the options every generated command has (a task field may not reuse them).
SHARED_OPTIONS = ("-o", "--output", "--axes", "--voxel-size", "--json", "--quiet", "-q", "--overwrite", "--report",
                  "--check", "--scheduler", "--save-model")

_IMAGE_EXTS = (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff", ".npy", ".png", ".zarr", ".jpg", ".jpeg",
               ".csv", ".json")


# ------------------------------------------------------------------------------------------ options
def _option_name(name: str, field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("cli") or "--" + name.replace("_", "-"))


def _help(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    text = field.description or ""
    # no square brackets: typer's rich help would read them as markup
    if extra.get("unit"):
        text += f" Unit: {extra['unit']}."
    if extra.get("choices"):
        text += f" Choices: {' | '.join(extra['choices'])}."
    return text


def _classify(annotation: Any) -> tuple[str, bool]:
    """Map a field's type to a CLI kind (``bool|int|float|str|list``) and whether None is allowed."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        optional = len(kinds) < len(args)
        if len(kinds) == 1:
            return _classify(kinds[0])[0], optional
        return "str", optional  # e.g. int | Literal["auto"]: the string goes to pydantic as is
    if origin is Literal:
        return "str", False
    if origin in (tuple, list) or annotation in (tuple, list):
        return "list", False
    if annotation in (bool, int, float, str):
        return annotation.__name__, False
    return "str", False


def _field_parameter(name: str, field: Any) -> tuple[inspect.Parameter, Callable[[Any], Any]]:
    """A typer parameter for one ``Params`` field and the converter of its CLI value."""
    opt = _option_name(name, field)
    kind, optional = _classify(field.annotation)
    default = None if field.default is PydanticUndefined else field.default
    required = field.default is PydanticUndefined and field.default_factory is None
    if field.default_factory is not None:
        default = field.default_factory()
    conv: Callable[[Any], Any] = lambda v: v  # noqa: E731
    if kind == "bool":
        decl = typer.Option(f"{opt}/--no-{opt[2:]}", help=_help(field))
        ann: Any = bool
    else:
        base: Any = {"int": int, "float": float, "str": str, "list": str}[kind]
        meta = "A,B,..." if kind == "list" else None
        decl = typer.Option(opt, help=_help(field), metavar=meta, show_default=not isinstance(default, list | tuple))
        ann = base | None if (optional or kind == "list" or default is None) else base
        if kind == "list":
            conv = _parse_list
            if isinstance(default, list | tuple):
                default = ",".join(str(v) for v in default)
        elif kind == "str" and default is not None and not isinstance(default, str):
            default = str(default)
    p = inspect.Parameter(f"p_{name}", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[ann, decl],
                          default=inspect.Parameter.empty if required else default)
    return p, conv


def _parse_list(value: Any) -> Any:
    """``"0.3,0.1,0.1"`` / ``"32 128 128"`` → a list of numbers (strings kept when not numeric)."""
    if value is None or not isinstance(value, str):
        return value
    parts = [q for q in re.split(r"[,\sx]+", value.strip()) if q]
    out: list[Any] = []
    for q in parts:
        try:
            out.append(int(q))
        except ValueError:
            try:
                out.append(float(q))
            except ValueError:
                out.append(q)
    return out


def _input_parameter(spec: InputSpec, primary: bool) -> inspect.Parameter:
    pname = f"in_{spec.name}"
    if primary:
        help_ = spec.help + " Several files, a folder or a glob run as a batch." if spec.kind != "images" else spec.help
        return inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            list[str], typer.Argument(help=help_, metavar=spec.name.upper(), show_default=False)])
    if spec.positional:
        decl = typer.Argument(help=spec.help, metavar=spec.name.upper(), show_default=False)
        ann: Any = str if spec.required else str | None
        return inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[ann, decl],
                                 default=inspect.Parameter.empty if spec.required else None)
    decl = typer.Option(spec.cli or "--" + spec.name.replace("_", "-"), help=spec.help + ("" if spec.required
                        else " (optional)"), metavar="FILE" if spec.kind != "path" else "PATH")
    return inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str | None, decl],
                             default=None)


def _shared_parameters(task: Task) -> list[inspect.Parameter]:
    K = inspect.Parameter.KEYWORD_ONLY
    specs: list[tuple[str, Any, Any]] = [
        ("o_output", Path | None, typer.Option("-o", "--output", help="Output file (or folder for several inputs); "
                                               "a .zarr output runs out of core where the task supports it.")),
        ("o_axes", str | None, typer.Option("--axes", help="Axes of the input, e.g. YX, ZYX, CYX, TZYX "
                                            "(default: from metadata or shape).")),
        ("o_voxel_size", str | None, typer.Option("--voxel-size", metavar="Z Y X", help="Voxel size in µm: Z Y X "
                                                  "(3 values) or Y X (2 values); overrides the file's metadata.")),
        ("o_report", bool, typer.Option("--report", help="Also write an HTML report next to the output.")),
        ("o_check", bool, typer.Option("--check", help="Check the result against the recording with the task's "
                                       "forward model (one-line trust summary; details in --json).")),
        ("o_scheduler", str | None, typer.Option("--scheduler", help="Out of core: threads | processes | "
                                                 "distributed | ADDRESS of a dask scheduler (output: .ome.zarr).")),
    ]
    if task.saves_model:
        specs.append(("o_save_model", Path | None, typer.Option("--save-model", help="Also save the trained "
                                                                "network as a bundle folder (learned methods).")))
    specs += [
        ("o_overwrite", bool, typer.Option("--overwrite", help="Replace an existing output.")),
        ("o_json", bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")),
        ("o_quiet", bool, typer.Option("--quiet", "-q", help="No progress bars or informational output.")),
    ]
    out = []
    for name, ann, decl in specs:
        default = False if ann is bool else None
        out.append(inspect.Parameter(name, K, annotation=Annotated[ann, decl], default=default))
    return out


# ------------------------------------------------------------------------------------------- params
def build_params(task: Task, values: Mapping[str, Any]) -> TaskParams:
    """Validate CLI values into ``task.Params``; errors name the CLI options (exit code 2).

    Examples
    --------
    >>> from fluorecon.tasks.registry import get
    >>> build_params(get("denoise"), {"method": "tv"}).method
    'tv'
    >>> build_params(get("denoise"), {"budget_s": 0})
    Traceback (most recent call last):
    ...
    fluorecon.errors.FluoreconError: invalid option(s): --budget: Input should be greater than 0
    """
    try:
        return task.Params(**values)
    except ValidationError as e:
        fields = task.Params.model_fields
        parts = []
        for err in e.errors():
            loc = [str(x) for x in err.get("loc", ())]
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            where = _option_name(loc[0], fields[loc[0]]) if loc and loc[0] in fields else ".".join(loc)
            parts.append(f"{where}: {msg}" if where else msg)
        raise FluoreconError("invalid option(s): " + "; ".join(dict.fromkeys(parts))) from None


# ------------------------------------------------------------------------------------------- inputs
def _read_other(spec: InputSpec, value: str) -> Any:
    path = Path(value)
    if spec.kind == "path":
        return path
    if not path.exists():
        raise FluoreconError(f"{spec.name} file not found: {path}",
                             hint=f"check {spec.cli or '--' + spec.name.replace('_', '-')}")
    if spec.kind == "image":
        return as_image_data(read_image(path), name=str(path))
    if spec.kind == "images":
        return [as_image_data(read_image(p), name=str(p)) for p in expand_inputs(value)]
    if spec.kind == "table":
        return _read_table(path)
    if spec.kind == "json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise FluoreconError(f"{path} is not valid JSON ({e})", hint=f"give the {spec.name} as a JSON file") from None
    raise FluoreconError(f"unknown input kind {spec.kind!r} of {spec.name!r}")


def _read_table(path: Path) -> Any:
    return read_table(path, required=())


def _read_primary(spec: InputSpec, path: Path, axes: str | None, voxel_size: tuple[float, ...] | None) -> Any:
    if spec.kind in ("image", "images"):
        img = read_image(path, axes=axes)
        return as_image_data(img, voxel_size=voxel_size, name=str(path))
    return _read_other(spec, str(path))


# ------------------------------------------------------------------------------------------ outputs
def _stem(path: Path) -> tuple[str, str]:
    name = path.name
    for ext in _IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[len(name) - len(ext):]
    return path.stem, path.suffix


def sibling_path(main: Path, name: str, kind: str) -> Path:
    """Where a secondary output goes: ``<stem>_<name><suffix>`` beside the main output.

    Examples
    --------
    >>> sibling_path(Path("out/a.ome.tif"), "uncertainty", "image").as_posix()
    'out/a_uncertainty.ome.tif'
    >>> sibling_path(Path("a.tif"), "locs", "table").name, sibling_path(Path("a.tif"), "shift", "transform").name
    ('a_locs.csv', 'a_shift.json')
    """
    stem, suffix = _stem(Path(main))
    if kind == "table":
        suffix = ".csv"
    elif kind in ("transform", "json"):
        suffix = ".json"
    elif suffix.lower() in (".csv", ".json", ""):
        suffix = ".tif"
    return Path(main).with_name(f"{stem}_{name}{suffix}")


def _output_kind(value: Any) -> str:
    if isinstance(value, Table):
        return "table"
    if isinstance(value, np.ndarray):
        return "image"
    return "transform"


def _planned_siblings(task: Task, out: Path) -> dict[str, Path]:
    return {o.name: sibling_path(out, o.name, "table" if o.kind == "table" else "transform" if o.kind == "transform"
                                 else "image") for o in task.outputs[1:]}


def write_outputs(result: Result, out: Path, *, task: str = "", params: Mapping[str, Any] | None = None,
                  overwrite: bool = False) -> dict[str, str]:
    """Write every output of ``result``: the main one to ``out``, the others beside it; returns name → path.

    Image outputs carry ``{"fluorecon": {"command": task, "params": params}}`` as metadata; existing
    tables are replaced only with ``overwrite`` (check every path first: :func:`check_output`).
    """
    written: dict[str, str] = {}
    for name, value in result.outputs.items():
        if value is None:
            continue
        kind = _output_kind(value)
        path = Path(out) if name == result.main else sibling_path(out, name, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            meta = {"fluorecon": {"command": task, "params": to_json(params or {})}}
            write_image(path, np.asarray(value), axes=result.axes.get(name), voxel_size=result.voxel_size.get(name),
                        metadata=meta)
        elif kind == "table":
            write_table(path, value, overwrite=overwrite)
        else:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(to_json(value), indent=2, sort_keys=True))
        written[name] = str(path)
    return written


# ---------------------------------------------------------------------------------------- progress
class _Bar:
    """A rich progress bar on stderr fed by ``progress(fraction, message)``."""

    def __init__(self, label: str, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
                                 transient=True)
        self.label = label
        self.tid: Any = None

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        self.tid = self.progress.add_task(self.label, total=1.0)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, fraction: float, message: str = "") -> None:
        desc = f"{self.label}: {message}" if message else self.label
        self.progress.update(self.tid, completed=float(fraction), description=desc[:70])


# ------------------------------------------------------------------------------------------- checks
def _verify(recording: ImageData, result: Result) -> dict[str, Any]:
    """``--check``: the result against its recording through the task's forward model (one line + details).

    Never an error: the result is already written, so a check that cannot run says why (``flagged`` None).
    """
    rec = recording[0] if isinstance(recording, list) else recording
    try:
        if result.forward is None:
            raise FluoreconError("this task gives no forward model")
        # any output the forward model takes (another grid, a table) is checked on the recording's grid
        v = verify(rec.data, result.image, forward=result.forward, axes=rec.axes)
    except Exception as e:  # a failed check must not turn a written result into an error
        reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        return {"summary": f"check: not possible ({reason})", "flagged": None, "details": None}
    n = len(v.regions)
    line = (f"check: {n} region(s) not supported by the recording (see --json or --report)" if n
            else f"check: {v.summary()}" if v.flagged else "check: no region contradicts the recording")
    return {"summary": line, "flagged": bool(v.flagged), "details": to_json(v.to_dict())}


# -------------------------------------------------------------------------------------------- command
def register_task(app: typer.Typer, task: Task) -> None:
    """Add the generated ``fluorecon <task.name>`` command to ``app`` (see the module docstring)."""
    params: list[inspect.Parameter] = []
    convs: dict[str, Callable[[Any], Any]] = {}
    primary, *others = task.inputs
    params.append(_input_parameter(primary, True))
    params += [_input_parameter(s, False) for s in others if s.positional]
    used = set(SHARED_OPTIONS)
    for s in others:
        if not s.positional:
            opt = s.cli or "--" + s.name.replace("_", "-")
            if opt in used:
                raise TypeError(f"task {task.name!r}: input option {opt} clashes with another option")
            used.add(opt)
            params.append(_input_parameter(s, False))
    for name, field in task.Params.model_fields.items():
        opt = _option_name(name, field)
        if opt in used:
            raise TypeError(f"task {task.name!r}: parameter {name!r} (option {opt}) clashes with another option")
        used.add(opt)
        p, conv = _field_parameter(name, field)
        params.append(p)
        convs[name] = conv
    params += _shared_parameters(task)

    def command(**kw: Any) -> None:
        _invoke(task, kw, convs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{task.name.replace('-', '_')}_cmd"
    command.__doc__ = f"{task.title or task.name}: {task.summary}".strip()
    epilog = None
    if task.examples:
        epilog = "Examples:\n\n" + "\n\n".join(f"  {e}" for e in task.examples)
    app.command(task.name, help=command.__doc__, epilog=epilog)(command)


#: accepted file name endings of a main output that is not an image, and the batch default
_NON_IMAGE_SUFFIXES = {"table": ((".csv", ".txt", ".parquet"), ".csv"), "transform": ((".json",), ".json")}


def _plan(task: Task, files: list[Path], output: Path, *, overwrite: bool, tag: str, scheduler: str | None
          ) -> dict[Path, Path]:
    """Output path per input, checked before anything runs (images: :func:`plan_outputs`)."""
    kind = task.outputs[0].kind
    if kind not in _NON_IMAGE_SUFFIXES:
        return plan_outputs(files, output, overwrite=overwrite, suffix=task.default_suffix, tag=tag,
                            scheduler=scheduler)
    suffixes, default = _NON_IMAGE_SUFFIXES[kind]
    if scheduler is not None:
        raise FluoreconError(f"{task.name} writes a {kind}, not an image: it does not run out of core",
                             hint="drop --scheduler")
    if len(files) > 1 and output.exists() and not output.is_dir():
        raise FluoreconError(f"several inputs need an output folder, but {output} is a file",
                             hint="give -o a folder (created if missing)")
    plan = {}
    for f in files:
        out = output if len(files) == 1 else Path(output) / f"{_stem(f)[0]}{tag}{default}"
        if out.resolve() in {g.resolve() for g in files}:
            raise FluoreconError(f"output {out} is an input file", hint="choose another -o; inputs are never modified")
        plan[f] = check_output(out, overwrite=overwrite, kind="file", suffixes=suffixes)
    return plan


def register_broken_task(app: typer.Typer, task: Task, error: Exception) -> None:
    """Register ``fluorecon <task>`` for a task whose declaration cannot make a command: it says why (exit 1).

    The registry tests (``tests/tasks/test_registry.py``) fail on such a task; the other commands keep working.
    """

    def broken(args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None) -> None:
        typer.echo(f"error: the {task.name} task is misdeclared ({error}). Please report it", err=True)
        raise typer.Exit(1)

    app.command(task.name, help=f"(unavailable: {error})", context_settings={"ignore_unknown_options": True,
                                                                            "allow_extra_args": True})(broken)


def _invoke(task: Task, kw: dict[str, Any], convs: Mapping[str, Callable[[Any], Any]]) -> None:
    primary, *others = task.inputs
    quiet = bool(kw["o_quiet"])
    json_out = bool(kw["o_json"])
    scheduler = kw["o_scheduler"]
    overwrite = bool(kw["o_overwrite"])
    output: Path | None = kw["o_output"]
    save_model: Path | None = kw.get("o_save_model")
    with handle_errors():
        if output is None:
            raise FluoreconError("no output given", hint="add -o OUT (a file, or a folder for several inputs)")
        params = build_params(task, {n: convs[n](kw[f"p_{n}"]) for n in convs})
        vs = parse_voxel_size(kw["o_voxel_size"])
        specs = list(kw[f"in_{primary.name}"] or [])
        if not specs:
            raise FluoreconError(f"no {primary.name} given", hint=f"fluorecon {task.name} INPUT -o OUT")
        if primary.kind in ("image", "images"):
            files = [f for s in specs for f in expand_inputs(s)]
        else:
            files = [Path(s) for s in specs]
        tag = task.output_tag if task.output_tag is not None else f"_{task.name}"
        if primary.kind == "images":
            runs = {files[0]: files}
            outs = _plan(task, [files[0]], output, overwrite=overwrite, tag=tag, scheduler=scheduler)
        else:
            outs = _plan(task, files, output, overwrite=overwrite, tag=tag, scheduler=scheduler)
            runs = {f: [f] for f in outs}
        if save_model is not None:
            check_output(save_model, overwrite=overwrite, kind="dir", label="--save-model folder")
        extra: dict[str, Any] = {}
        for s in others:
            v = kw.get(f"in_{s.name}")
            if v is None:
                if s.required:
                    raise FluoreconError(f"{task.name} needs its {s.name} input",
                                         hint=f"add {s.cli or '--' + s.name.replace('_', '-')} FILE")
                continue
            extra[s.name] = _read_other(s, v)
        command_line = "fluorecon " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        single = len(runs) == 1

    def process(path: Path) -> dict:
        out = Path(outs[path])
        if wants_out_of_core(out, scheduler):
            if not task.supports_out_of_core():
                raise FluoreconError(f"{task.name} does not run out of core",
                                     hint="write a .tif/.npy output (in memory) instead of .zarr / --scheduler")
            return run_task_out_of_core(task, path, out, params, inputs=extra, scheduler=scheduler or "threads",
                                        overwrite=overwrite, quiet=quiet, axes=kw["o_axes"], voxel_size=vs)
        siblings = _planned_siblings(task, out)
        for p in siblings.values():
            check_output(p, overwrite=overwrite, kind="file")
        if primary.kind == "images":
            data: Any = [_read_primary(primary, f, kw["o_axes"], vs) for f in runs[path]]
        else:
            data = _read_primary(primary, path, kw["o_axes"], vs)
        inputs = {primary.name: data, **extra}
        with echo_warnings(quiet), _Bar(task.name, enabled=single and not quiet and not json_out) as bar:
            result = execute(task, inputs, params, progress=bar)
        written = write_outputs(result, out, task=task.name, params=params.to_json(), overwrite=overwrite)
        row: dict[str, Any] = {"output": str(out), **result.to_dict()}
        for name, where in written.items():  # each output's summary says where it was written
            row["outputs"].setdefault(name, {})["path"] = where
        for w in result.warnings:
            if not quiet:
                typer.echo(f"warning: {path}: {w}", err=True)
        bundle = result.extras.get("bundle")
        if save_model is not None and bundle is not None and hasattr(bundle, "save"):
            dest = save_model if single else Path(save_model) / _stem(out)[0]
            bundle.save(dest)
            row["model"] = str(dest)
        trust = None
        if kw["o_check"]:
            chk = _verify(data, result)
            row["check"] = chk
            trust = chk["details"]
            if not quiet:
                typer.echo(f"{path.name}: {chk['summary']}", err=True)
        if kw["o_report"]:
            html = out.with_name(_stem(out)[0] + "_report.html")
            report_mod.write_task_report(html, task, result, inputs, command=command_line,
                                         input_path=path if path.is_file() else None, trust=trust)
            row["report"] = str(html)
        return row

    with handle_errors():
        code = run_batch(list(runs), process, quiet=quiet, json_out=json_out, label=task.name)
    if code != EXIT_OK:
        raise typer.Exit(code)
    if not json_out and not quiet:
        typer.echo(f"wrote {output}")
