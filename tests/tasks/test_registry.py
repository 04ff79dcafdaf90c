"""Every registered task plugs into every front end: CLI, out of core, report, trust, napari.

Parametrized over :func:`fluorecon.tasks.registry.all_tasks`, so a task added by anyone is covered by
these tests without editing them; each runs on the task's own tiny ``example()`` input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fluorecon.cli import TASK_COMMANDS, app
from fluorecon.cli.taskcmd import _option_name, register_task, sibling_path
from fluorecon.io import ImageData, read_image, write_image
from fluorecon.io_tables import write_table
from fluorecon.report import write_task_report
from fluorecon.scale.taskop import run_task_out_of_core
from fluorecon.tasks.contract import Cancelled, Result, Table, Task, execute
from fluorecon.tasks.registry import all_tasks

TASKS = all_tasks()
IDS = [t.name for t in TASKS]
runner = CliRunner()


@pytest.fixture(scope="module")
def runs():
    """The in-memory result of every task on its example (computed once, shared by the tests)."""
    cache: dict[str, tuple[dict, object, Result]] = {}

    def get(task: Task):
        if task.name not in cache:
            ex = task.example(seed=0)
            params = task.params(**ex.get("params", {}))
            cache[task.name] = (ex, params, execute(task, ex["inputs"], params))
        return cache[task.name]

    return get


def _write_input(spec, value, folder: Path) -> list[str]:
    """Write one example input to files; returns the CLI tokens naming them."""
    if spec.kind == "images":
        paths = []
        for k, img in enumerate(value):
            p = folder / f"{spec.name}{k}.tif"
            write_image(p, img.data, axes=img.axes, voxel_size=img.voxel_size)
            paths.append(str(p))
        return paths
    if spec.kind == "image":
        p = folder / f"{spec.name}.tif"
        write_image(p, value.data, axes=value.axes, voxel_size=value.voxel_size)
        return [str(p)]
    if spec.kind == "table":
        p = folder / f"{spec.name}.csv"
        write_table(p, value)
        return [str(p)]
    if spec.kind == "json":
        p = folder / f"{spec.name}.json"
        p.write_text(json.dumps(value))
        return [str(p)]
    return [str(value)]


def _cli_args(task: Task, ex: dict, folder: Path) -> list[str]:
    args: list[str] = []
    primary, *others = task.inputs
    args += _write_input(primary, ex["inputs"][primary.name], folder)
    for spec in others:
        if spec.name not in ex["inputs"]:
            continue
        tokens = _write_input(spec, ex["inputs"][spec.name], folder)
        args += tokens if spec.positional else [spec.cli or "--" + spec.name.replace("_", "-"), tokens[0]]
    fields = task.Params.model_fields
    for k, v in ex.get("params", {}).items():
        opt = _option_name(k, fields[k])
        if isinstance(v, bool):
            args.append(opt if v else f"--no-{opt[2:]}")
        elif isinstance(v, list | tuple):
            args += [opt, ",".join(str(q) for q in v)]
        elif v is not None:
            args += [opt, str(v)]
    return args


def _primary_shape(task: Task, ex: dict) -> tuple[int, ...]:
    prim = ex["inputs"][task.inputs[0].name]
    if isinstance(prim, list):  # several images (tiles): the recording is their stack
        return (len(prim), *np.asarray(prim[0].data).shape)
    return tuple(np.asarray(prim.data).shape)


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_task_declares_the_contract(task):
    register_task(typer.Typer(), task)  # option names are unique: the command can be generated
    d = task.describe()
    assert d["name"] == task.name and d["title"] and d["summary"]
    assert task.inputs and task.outputs
    ex = task.example(seed=0)
    assert set(ex) <= {"inputs", "params"} and task.inputs[0].name in ex["inputs"]
    task.params(**ex.get("params", {}))  # the example's parameters are valid
    for spec in task.inputs:
        assert not spec.required or spec.name in ex["inputs"], spec.name


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_cli_command_runs_on_the_example(task, runs, tmp_path):
    ex, _, mem = runs(task)
    r = runner.invoke(app, [task.name, "--help"])
    assert r.exit_code == 0 and "--output" in r.output
    main_kind = next(o.kind for o in task.outputs if o.name == mem.main)
    out = tmp_path / ("out.csv" if main_kind == "table" else "out.json" if main_kind == "transform" else "out.tif")
    r = runner.invoke(app, [task.name, *_cli_args(task, ex, tmp_path), "-o", str(out), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    if task.name not in TASK_COMMANDS:  # a hand-written command module replaces the generated one
        assert out.exists()
        return
    info = json.loads(r.stdout)
    assert info["status"] == "ok" and info["provenance"]["task"] == task.name
    for name, o in info["outputs"].items():
        assert Path(o["path"]).exists(), name
        if name != info["main"]:
            assert Path(o["path"]) == sibling_path(out, name, o["kind"])
    if isinstance(mem.image, np.ndarray):
        assert read_image(out).data.shape == mem.image.shape


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_forward_model_maps_the_result_to_the_recording(task, runs):
    ex, _, res = runs(task)
    if "verify" not in task.trust:
        pytest.skip(f"{task.name} declares no forward-model check")
    assert res.forward is not None, f"{task.name} lists 'verify' but gives no forward model"
    predicted = np.asarray(res.forward.expected(res.image))
    assert predicted.shape == _primary_shape(task, ex)
    assert np.isfinite(predicted).all()
    json.dumps(res.to_dict())  # the result (forward model included) describes itself in JSON


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_progress_reaches_the_caller_and_cancel_stops(task):
    ex = task.example(seed=0)
    params = task.params(**ex.get("params", {}))
    seen = []

    def cancel(fraction, message):
        seen.append(fraction)
        raise Cancelled()

    with pytest.raises(Cancelled):
        execute(task, ex["inputs"], params, progress=cancel)
    assert len(seen) == 1 and 0.0 <= seen[0] <= 1.0


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_report_section(task, runs, tmp_path):
    ex, _, res = runs(task)
    html = write_task_report(tmp_path / "r.html", task, res, ex["inputs"], command=f"fluorecon {task.name} ...")
    text = html.read_text()
    assert "Parameters used" in text and "Forward model" in text and task.name in text


@pytest.mark.parametrize("task", [t for t in TASKS if t.supports_out_of_core()],
                         ids=[t.name for t in TASKS if t.supports_out_of_core()])
def test_out_of_core_matches_in_memory(task, runs, tmp_path):
    ex, params, mem = runs(task)
    prim = ex["inputs"][task.inputs[0].name]
    write_image(tmp_path / "in.ome.zarr", prim.data, axes=prim.axes, voxel_size=prim.voxel_size)
    extra = {k: v for k, v in ex["inputs"].items() if k != task.inputs[0].name}
    info = run_task_out_of_core(task, tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", params, inputs=extra,
                                quiet=True)
    assert info["complete"] and info["resolved"]["task"] == task.name
    out = read_image(tmp_path / "out.ome.zarr").data
    ref = np.asarray(mem.image)
    assert out.shape == ref.shape
    # a tiny example fits in one block: the blockwise result is the in-memory one
    assert np.abs(out - ref).max() <= 1e-3 * max(np.abs(ref).max(), 1e-6)


def test_tasks_command_lists_every_task():
    r = runner.invoke(app, ["tasks", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [d["name"] for d in rows] == IDS
    for d in rows:
        assert {"inputs", "outputs", "out_of_core", "trust", "params"} <= set(d)
    by = {d["name"]: d for d in rows}
    assert by["denoise"]["out_of_core"] is True and "method" in by["denoise"]["params"]
    r = runner.invoke(app, ["tasks"])
    assert r.exit_code == 0 and "denoise" in r.output


def test_table_output_written_as_csv(tmp_path):
    from fluorecon.cli.taskcmd import write_outputs

    res = Result(outputs={"image": np.zeros((4, 4), np.float32), "locs": Table({"x": [1.0], "y": [2.0]}),
                         "shift": {"dx": 1.0}}, axes={"image": "YX"})
    w = write_outputs(res, tmp_path / "o.tif", task="t")
    assert Path(w["locs"]).name == "o_locs.csv" and Path(w["shift"]).name == "o_shift.json"
    assert json.loads(Path(w["shift"]).read_text()) == {"dx": 1.0}


def test_bad_parameter_names_the_option(tmp_path):
    x = tmp_path / "x.tif"
    write_image(x, np.ones((16, 16), np.float32))
    r = runner.invoke(app, ["denoise", str(x), "-o", str(tmp_path / "o.tif"), "--budget", "-1"])
    assert r.exit_code == 2 and "--budget" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.tif").exists()


# ------------------------------------------------------------------------------------------------- napari
@pytest.fixture(scope="module")
def qt_app():
    """A Qt application for the widgets (no canvas: the widgets run against a ``ViewerModel``)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("napari")
    from qtpy.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _pick(widget, layer):
    widget.choices = (layer,)  # no Qt viewer to list the layers: offer this one
    widget.value = layer


@pytest.mark.gui
@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_napari_widget_builds_and_runs(task, runs, qt_app, tmp_path):
    from napari.components import ViewerModel

    from fluorecon.napari._task_widget import TasksWidget

    ex, params, mem = runs(task)
    viewer = ViewerModel()
    w = TasksWidget(viewer, task=task.name)
    tw = w.task_widget
    assert tw.task.name == task.name and task.name in w.chooser.choices
    hidden = [k for k, f in task.Params.model_fields.items() if not (f.json_schema_extra or {}).get("widget", True)]
    assert not set(hidden) & set(tw.param_ws)
    prims = ex["inputs"][task.inputs[0].name]
    prim = prims[0] if isinstance(prims, list) else prims
    if not isinstance(prim, ImageData):
        pytest.skip(f"{task.name}: its primary input is not an image layer")
    nsp = sum(a in "ZYX" for a in prim.axes)
    scale = (1.0,) * (prim.data.ndim - nsp) + tuple(prim.voxel_size or (1.0,) * nsp)
    if isinstance(prims, list):
        layers = [viewer.add_image(q.data, name="x" if k == 0 else f"x{k}", scale=scale) for k, q in enumerate(prims)]
        tw.layers_w.value = layers  # the layers of the viewer are offered
        layer = layers[0]
    else:
        layer = viewer.add_image(prim.data, name="x", scale=scale)
        _pick(tw.layer_w, layer)
    tw.axes_w.value = prim.axes
    for spec in task.inputs[1:]:
        v = ex["inputs"].get(spec.name)
        if isinstance(v, ImageData):
            k = sum(a in "ZYX" for a in v.axes)
            sc = (1.0,) * (v.data.ndim - k) + tuple(v.voxel_size or (1.0,) * k)
            _pick(tw.input_ws[spec.name], viewer.add_image(v.data, name=spec.name, scale=sc))
        elif v is not None:
            tw.input_ws[spec.name].value = _write_input(spec, v, tmp_path)[0]
    tw.set_params(**{k: v for k, v in ex.get("params", {}).items() if k in tw.param_ws})
    n = len(viewer.layers)
    tw.prepare()
    got = tw._inputs[task.inputs[0].name]
    got = got[0] if isinstance(got, list) else got
    assert got.voxel_size == tuple(layer.scale)[-nsp:]  # the layer's scale is the voxel size
    res = tw.compute(lambda f, m: None)
    tw.done(res)
    assert len(viewer.layers) > n
    if isinstance(res.image, np.ndarray):
        out = viewer.layers[f"x {task.name}"]
        assert out.data.shape == res.image.shape
        vs = res.voxel_size.get(res.main)
        if vs is not None and len(vs) == res.image.ndim:
            np.testing.assert_allclose(out.scale, vs)


def test_napari_table_output_becomes_points(qt_app):
    from napari.components import ViewerModel

    from fluorecon.napari._task_widget import _table_points

    layer = ViewerModel().add_image(np.zeros((8, 8)), scale=(0.1, 0.1))
    t = Table({"x [nm]": np.array([100.0, 250.0]), "y [nm]": np.array([50.0, 0.0]), "sigma": np.array([1.0, 1.0])})
    np.testing.assert_allclose(_table_points(t, layer), [[0.05, 0.1], [0.0, 0.25]])  # µm, (y, x)
    np.testing.assert_allclose(_table_points(Table({"x": [2.0], "y": [3.0]}), layer), [[0.3, 0.2]])  # px × scale


def test_architecture_example_is_a_working_task(tmp_path):
    """The copyable task of docs/architecture.md registers and runs through the generated CLI and out of core."""
    import re
    import subprocess
    import sys

    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    code = re.search(r"### A complete task to copy\s+```python\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "example_task.py").write_text(code)
    script = f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
import numpy as np
import example_task  # registers the task
from typer.testing import CliRunner
from fluorecon.io import write_image, read_image
from fluorecon.cli.taskcmd import register_task
from fluorecon.scale.taskop import run_task_out_of_core
from fluorecon.tasks.registry import get
import typer
task = get("subtract-background")
app = typer.Typer()
register_task(app, task)
app.command("noop")(lambda: None)
ex = task.example()
img = ex["inputs"]["image"]
write_image({str(tmp_path / 'x.tif')!r}, img.data, axes="YX", voxel_size=img.voxel_size)
r = CliRunner().invoke(app, ["subtract-background", {str(tmp_path / 'x.tif')!r}, "-o", {str(tmp_path / 'y.tif')!r},
                             "--radius", "0.5", "--json", "--quiet", "--report"])
assert r.exit_code == 0, r.output
info = json.loads(r.stdout)
res = task(img, radius=0.5)
np.testing.assert_allclose(read_image({str(tmp_path / 'y.tif')!r}).data, res.image, atol=1e-5)
assert res.forward.expected(res.image).shape == img.data.shape
write_image({str(tmp_path / 'x.ome.zarr')!r}, img.data, axes="YX", voxel_size=img.voxel_size)
run_task_out_of_core(task, {str(tmp_path / 'x.ome.zarr')!r}, {str(tmp_path / 'o.ome.zarr')!r}, task.params(radius=0.5),
                     chunks=(16, 16), quiet=True)
np.testing.assert_allclose(read_image({str(tmp_path / 'o.ome.zarr')!r}).data, res.image, atol=1e-4)
print("ok", info["params_used"]["radius"])
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok 0.5")
