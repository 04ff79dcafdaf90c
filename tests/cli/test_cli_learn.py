"""CLI tests for `fluorecon train` and `fluorecon predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app

runner = CliRunner()
TINY = ["--depth", "1", "--width", "4", "--patch-size", "16", "--batch-size", "2", "--steps", "3", "--quiet",
        "--device", "cpu"]


def _img(seed, shape=(32, 32)):
    return np.random.default_rng(seed).poisson(20, shape).astype(np.float32)


@pytest.fixture
def pairs(tmp_path):
    a, b = tmp_path / "noisy", tmp_path / "gt"
    a.mkdir()
    b.mkdir()
    for i in range(2):
        tifffile.imwrite(a / f"im{i}.tif", _img(i))
        tifffile.imwrite(b / f"im{i}.tif", np.full((32, 32), 20, np.float32))
    return a, b


def test_train_predict_round_trip(tmp_path, pairs):
    a, b = pairs
    out = tmp_path / "model"
    r = runner.invoke(app, ["train", str(a), "--target", str(b), "--scheme", "care", "-o", str(out), "--json",
                            "--val-fraction", "0", *TINY])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == 3
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["schema_version"] == "1.0" and len(doc["provenance"]["data_sha256"]) == 4
    r = runner.invoke(app, ["predict", str(out), "--verify"])
    assert r.exit_code == 0, r.output
    res = tmp_path / "restored.tif"
    r = runner.invoke(app, ["predict", str(out), str(a / "im0.tif"), "-o", str(res), "--tile", "none", "--tta",
                            "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.predict import predict

    expect = predict(Bundle.load(out), _img(0), "YX", tile=None, tta=True, device="cpu")
    np.testing.assert_allclose(tifffile.imread(res), expect, atol=1e-4)
    # self-supervised from a single stack, 2D net over planes
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([_img(3), _img(4)]))
    r = runner.invoke(app, ["train", str(stack), "--axes", "ZYX", "--scheme", "n2v2", "-o", str(tmp_path / "m2"),
                            "--deterministic", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "m2"), str(stack), "--axes", "ZYX", "-o",
                            str(tmp_path / "s.tif"), "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert tifffile.imread(tmp_path / "s.tif").shape == (2, 32, 32)


def test_predict_uncertainty_and_check(tmp_path):
    img = tmp_path / "x.tif"
    tifffile.imwrite(img, _img(5))
    m = tmp_path / "m"
    r = runner.invoke(app, ["train", str(img), "--scheme", "n2v", "--head", "laplace", "-o", str(m), *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", str(m), str(img), "-o", str(tmp_path / "y.tif"), "--uncertainty", "--check",
                            "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "y_uncertainty.tif").exists() and (tmp_path / "y_trust.json").exists()
    assert tifffile.imread(tmp_path / "y_uncertainty.tif").shape == (32, 32)
    # Without --quiet it says what it wrote and what the trust check found.
    r = runner.invoke(app, ["predict", str(m), str(img), "-o", str(tmp_path / "z.tif"), "--check", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "z.tif" in r.output and "trust" in r.output


def test_bad_inputs(tmp_path, pairs):
    a, b = pairs
    m = tmp_path / "m"
    r = runner.invoke(app, ["train", str(a), "--scheme", "care", "-o", str(m), *TINY])
    assert r.exit_code == 2 and "--target" in r.output and not m.exists()
    tifffile.imwrite(a / "extra.tif", _img(9))
    r = runner.invoke(app, ["train", str(a), "--target", str(b), "--scheme", "care", "-o", str(m), *TINY])
    assert r.exit_code == 2 and "without a target" in r.output and not m.exists()
    tifffile.imwrite(b / "extra.tif", _img(9, (32, 30)))
    r = runner.invoke(app, ["train", str(a), "--target", str(b), "--scheme", "care", "-o", str(m), *TINY])
    assert r.exit_code == 2 and "differ in shape" in r.output and not m.exists()
    r = runner.invoke(app, ["train", str(a / "im0.tif"), "--scheme", "n2v", "-o", str(m), *TINY[:4],
                            "--patch-size", "64", "--steps", "2", "--quiet"])
    assert r.exit_code == 2 and "smaller than the patch" in r.output and not m.exists()
    r = runner.invoke(app, ["train", str(a / "im0.tif"), "--scheme", "magic", "-o", str(m), *TINY])
    assert r.exit_code == 2
    r = runner.invoke(app, ["train", str(a / "im0.tif"), "--axes", "ZYX", "--scheme", "n2v", "-o", str(m), *TINY])
    assert r.exit_code == 2 and not m.exists()
    r = runner.invoke(app, ["predict", str(tmp_path / "nope"), str(a / "im0.tif"), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "not found" in r.output
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    r = runner.invoke(app, ["predict", str(tmp_path / "model.pt"), str(a / "im0.tif"), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "pickle" in r.output and not (tmp_path / "o.tif").exists()
