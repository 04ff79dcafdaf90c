"""Issue 11 learn/bundle guarantees: resume checks, validated sizes, contained bundles, finite weights, stable bytes."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.learn import train as train_mod
from fluorecon.learn.bundle import Bundle, sha256_file
from fluorecon.learn.nets import UNet
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.learn.train import TrainConfig, train

runner = CliRunner()


def _cfg(**kw):
    base = dict(scheme="n2v", steps=6, batch_size=2, patch_size=16, model={"depth": 1, "width": 4}, seed=0,
                deterministic=True, progress=False, device="cpu", val_fraction=0.0)
    base.update(kw)
    return TrainConfig(**base)


def _x(seed=0):
    return np.random.default_rng(seed).normal(100, 10, (32, 32)).astype(np.float32)


def _saved(tmp_path, name="m") -> tuple[Bundle, object]:
    torch.manual_seed(0)
    x = _x()
    b = Bundle(UNet(depth=1, width=4), PercentileNormalizer().fit(x), config={"axes": "YX", "scheme": "n2v"})
    b.make_test_tensors(x)
    return b, b.save(tmp_path / name)


# ---- item 7: resume must continue the same run
@pytest.mark.parametrize("change", [{"model": {"depth": 1, "width": 8}}, {"seed": 3}, "data"])
def test_resume_refuses_other_settings_or_data(tmp_path, change):
    ck = tmp_path / "ck"

    class Stop(Exception):
        pass

    def interrupt(step, loss):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train(_cfg(checkpoint_dir=str(ck), checkpoint_every=2), _x(), axes="YX", callback=interrupt)
    kw = {} if change == "data" else change
    data = _x(1) if change == "data" else _x()
    with pytest.raises(FluoreconError, match="other (settings|training data)"):
        train(_cfg(checkpoint_dir=str(ck), checkpoint_every=2, resume=True, **kw), data, axes="YX")


# ---- item 8: numbers are validated at the boundary
@pytest.mark.parametrize("kw", [{"steps": 0}, {"steps": -5}, {"budget_s": 0}, {"budget_s": -10},
                                {"model": {"depth": 50}}, {"model": {"width": 100000}}, {"patch_size": 1}])
def test_train_config_ranges(kw):
    with pytest.raises(pydantic.ValidationError):
        _cfg(**kw)


@pytest.mark.parametrize("args", [["--steps", "0"], ["--budget", "-10"], ["--depth", "50"]])
def test_cli_train_refuses_bad_numbers(tmp_path, args):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, _x())
    r = runner.invoke(app, ["train", str(img), "-o", str(tmp_path / "m"), "--patch-size", "16", "--width", "4",
                            "--quiet", *args])
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "m").exists()


def test_memory_estimate_refuses_before_allocating(monkeypatch):
    class VM:
        available = 2**20

    monkeypatch.setattr("psutil.virtual_memory", lambda: VM())
    with pytest.raises(FluoreconError, match="GiB but only"):
        train(_cfg(model={"depth": 2, "width": 64}), _x(), axes="YX")
    assert train_mod.estimate_training_memory({"dim": 2, "depth": 8, "width": 1024}, (256, 256), 64) > 2**34


# ---- item 8 (bundles) and 9: hostile bundle.json
def _edit(d, fn):
    doc = json.loads((d / "bundle.json").read_text())
    fn(doc)
    (d / "bundle.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["model"].update(width=10**9), "width"),
    (lambda d: d["model"].update(depth=10**6), "depth"),
    (lambda d: d.update(members=["weights.safetensors"] * 2000), "members"),
    (lambda d: d.update(members=["../outside.safetensors"]), "outside"),
    (lambda d: d.update(members=["/tmp/abs.safetensors"]), "outside"),
    (lambda d: d["files"].pop("weights.safetensors"), "no recorded sha256"),
    (lambda d: d["test_tensors"].update(file="../tt.safetensors"), "outside"),
])
def test_hostile_bundles_refused(tmp_path, edit, match):
    _, d = _saved(tmp_path)
    (tmp_path / "outside.safetensors").write_bytes((d / "weights.safetensors").read_bytes())
    _edit(d, edit)
    with pytest.raises(FluoreconError, match=match):
        Bundle.load(d)


def test_deeply_nested_bundle_json(tmp_path):
    _, d = _saved(tmp_path)
    (d / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    r = runner.invoke(app, ["predict", str(d), "--verify"])
    assert r.exit_code == 2 and "nested too deeply" in r.stderr


# ---- item 10: corrupt test tensors and NaN weights are clear errors (exit 2)
def test_corrupt_test_tensors_exit_2(tmp_path):
    _, d = _saved(tmp_path)
    tp = d / "test_tensors.safetensors"
    tp.write_bytes(b"\x00" * 64)
    _edit(d, lambda doc: doc["files"].update({"test_tensors.safetensors": sha256_file(tp)}))
    r = runner.invoke(app, ["export", str(d), "--bioimageio", str(tmp_path / "m.zip")])
    assert r.exit_code == 2 and "cannot read bundle test tensors" in r.stderr


def test_nan_weights_and_normaliser_refused(tmp_path):
    b, _ = _saved(tmp_path)
    with torch.no_grad():
        next(b.model.parameters()).fill_(float("nan"))
    with pytest.raises(FluoreconError, match="non-finite weights"):
        b.save(tmp_path / "nan")
    b2, _ = _saved(tmp_path, "n2")
    b2.normalizer.hi = [float("nan")]
    with pytest.raises(FluoreconError, match="normaliser"):
        b2.check_finite()


# ---- item 11: deterministic training writes identical bytes
def test_deterministic_training_same_bundle_bytes(tmp_path):
    files = []
    for k in range(2):
        b = train(_cfg(), _x(), axes="YX")
        files.append((b.save(tmp_path / f"m{k}") / "weights.safetensors").read_bytes())
    assert files[0] == files[1]
    # safetensors' metadata order is arbitrary per call: many saves of one bundle must still agree.
    same = {(b.save(tmp_path / f"s{k}") / "weights.safetensors").read_bytes() for k in range(8)}
    assert same == {files[1]}
    assert files[0][8:50].startswith(b'{"__metadata__":{"format":"pt","schema"')
