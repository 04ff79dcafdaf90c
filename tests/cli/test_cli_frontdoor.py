"""Issue 24 (front door), command-line items: help texts, one --device default, several inputs, umask,
``predict`` saying what it wrote (text and ``--json`` alike)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import tifffile
import typer
from typer.testing import CliRunner

from fluorecon.cli import app

runner = CliRunner()
TINY = ["--depth", "1", "--width", "4", "--patch-size", "16", "--batch-size", "2", "--steps", "3", "--quiet",
        "--device", "cpu"]


def _commands():
    def walk(cmd, path):
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    return list(walk(typer.main.get_command(app), []))


def test_every_option_and_argument_has_help_text():
    cmds = _commands()
    assert len(cmds) > 20  # the walk reached the commands (tasks and special verbs)
    missing = [(name, p.name) for name, cmd in cmds for p in cmd.params
               if not getattr(p, "hidden", False) and not (getattr(p, "help", None) or "").strip()]
    assert missing == []


def test_one_device_default_auto():
    defaults = {name: getattr(p.default, "value", p.default) for name, cmd in _commands() for p in cmd.params
                if "--device" in getattr(p, "opts", ())}
    assert {"train", "predict", "denoise", "deconvolve", "demo"} <= set(defaults)
    assert {k: v for k, v in defaults.items() if v != "auto"} == {}


@pytest.fixture
def model(tmp_path):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.random.default_rng(0).poisson(20, (32, 32)).astype(np.float32))
    tifffile.imwrite(tmp_path / "b.tif", np.random.default_rng(1).poisson(20, (32, 32)).astype(np.float32))
    m = tmp_path / "m"
    r = runner.invoke(app, ["train", str(img), "--scheme", "n2v", "-o", str(m), *TINY])
    assert r.exit_code == 0, r.output
    return m


def test_info_and_predict_take_several_inputs_as_arguments(tmp_path, model):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    r = runner.invoke(app, ["info", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    rows = rows.get("results", rows) if isinstance(rows, dict) else rows
    assert len(rows) == 2
    r = runner.invoke(app, ["predict", str(model), str(a), str(b), "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_restored.tif", "b_restored.tif"]


def test_predict_prints_what_it_wrote_and_json_has_the_same(tmp_path, model):
    a = tmp_path / "a.tif"
    r = runner.invoke(app, ["predict", str(model), str(a), "-o", str(tmp_path / "t.tif"), "--check", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    wrote = next(line for line in r.stdout.splitlines() if line.startswith("wrote "))
    text_paths = set(wrote[len("wrote "):].split(", "))
    assert "trust" in r.output
    before = {p: os.stat(p).st_mtime_ns for p in text_paths}
    r = runner.invoke(app, ["predict", str(model), str(a), "-o", str(tmp_path / "t.tif"), "--check", "--device", "cpu"])
    assert r.exit_code == 2 and "--overwrite" in r.output  # TIFF and side outputs are never silently replaced
    assert {p: os.stat(p).st_mtime_ns for p in text_paths} == before
    r = runner.invoke(app, ["predict", str(model), str(a), "-o", str(tmp_path / "t.tif"), "--check", "--device", "cpu",
                            "--json", "--overwrite"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    doc = doc["results"][0] if "results" in doc else doc
    assert {doc[k] for k in ("output", "consistency", "trust")} == text_paths
    assert isinstance(doc["warnings"], list) and all(os.path.exists(p) for p in text_paths)


def test_outputs_follow_the_umask(tmp_path):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.random.default_rng(0).poisson(20, (32, 32)).astype(np.float32))
    old = os.umask(0o027)  # neither 0600 (temp-file default) nor 0644 (a hard-coded chmod) can pass
    try:
        r = runner.invoke(app, ["train", str(img), "--scheme", "n2v", "-o", str(tmp_path / "m"), *TINY])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["predict", str(tmp_path / "m"), str(img), "-o", str(tmp_path / "o.tif"), "--quiet"])
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.tif").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "m" / "bundle.json").stat().st_mode) == 0o640
