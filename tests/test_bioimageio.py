"""bioimage.io export: a real fluorecon Bundle → package → bioimageio.core's own test_model, offline."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("bioimageio.core", reason="bioimageio.core not installed (pip install 'fluorecon[bioimageio]')")
torch = pytest.importorskip("torch")

from fluorecon.errors import FluoreconError  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # No network: bioimageio must not try to resolve remote resources; keep its cache in tmp.
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _bundle(with_tensors=True, dim=2):
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer
    from fluorecon.learn.predict import predict

    torch.manual_seed(0)
    net = UNet(dim=dim, depth=1, width=4).eval()
    rng = np.random.default_rng(0)
    shape = (64, 64) if dim == 2 else (8, 32, 32)
    x = (rng.poisson(30, shape) + 100).astype(np.float32)
    norm = PercentileNormalizer(1, 99.8).fit(x)
    axes = "YX" if dim == 2 else "ZYX"
    b = Bundle(net, norm, config={"axes": axes, "scheme": "n2v"}, provenance={"seed": 0, "steps": 0})
    if with_tensors:
        b.test_tensors = {"input": x, "expected": predict(b, x, axes, tile=None, device="cpu"), "axes": axes}
    return b, x


def test_export_bundle_passes_bioimageio_test_model(tmp_path):
    import yaml

    from fluorecon.bioimageio import export_bundle, validate_package

    b, x = _bundle()
    b.save(tmp_path / "bundle")
    out = export_bundle(tmp_path / "bundle", tmp_path / "model.zip", name="fluorecon test n2v", authors=["Test Author"])
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "test_input.npy", "test_output.npy", "README.md",
            "cover.png"} <= names
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] == "fluorecon.learn.nets"
    assert [a["id"] if "id" in a else a["type"] for a in rdf["inputs"][0]["axes"]] == ["batch", "channel", "y", "x"]
    # the normaliser's fixed bounds become scale_linear, and post-processing inverts it exactly
    lo, hi = b.normalizer.lo[0], b.normalizer.hi[0]
    pre = next(p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_linear")
    post = next(p for p in rdf["outputs"][0]["postprocessing"] if p["id"] == "scale_linear")
    assert pre["id"] == post["id"] == "scale_linear"
    assert pre["kwargs"]["gain"] == pytest.approx(1 / (hi - lo)) and post["kwargs"]["offset"] == pytest.approx(lo)
    dois = {c.get("doi") for c in rdf["cite"]}
    assert {"10.1038/s41592-019-0458-z", "10.1109/CVPR.2019.00223"} <= dois  # review + Noise2Void
    # the package's test output is fluorecon's own prediction (independent of the export pipeline)
    with zipfile.ZipFile(out) as z, z.open("test_output.npy") as f:
        test_out = np.load(f)
    with zipfile.ZipFile(out) as z, z.open("test_input.npy") as f:
        test_in = np.load(f)
    from fluorecon.learn.predict import predict

    ref = predict(b, test_in[0, 0], "YX", tile=None, device="cpu")
    np.testing.assert_allclose(test_out[0, 0], ref, rtol=1e-4, atol=1e-3)
    # bioimage.io's own test: both weight formats reproduce the test output, several sizes, batch 1 and 2
    res = validate_package(out)
    assert res["status"] == "passed", res["errors"]
    assert any("torchscript" in name for name, _ in res["details"])
    assert any("pytorch_state_dict" in name for name, _ in res["details"])


def test_export_without_test_tensors_fails_clearly(tmp_path):
    from fluorecon.bioimageio import export_bundle

    b, x = _bundle(with_tensors=False)
    b.save(tmp_path / "bundle")
    with pytest.raises(FluoreconError, match="no test tensors"):
        export_bundle(tmp_path / "bundle", tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli import app
    from fluorecon.io import write_image

    b, x = _bundle(with_tensors=False)
    b.save(tmp_path / "bundle")
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(tmp_path / "bundle"), "--bioimageio", str(tmp_path / "m.zip")])
    assert r.exit_code == 2 and "no test tensors" in r.output and "--test-image" in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "nobundle"), "--bioimageio", str(tmp_path / "m.zip")])
    assert r.exit_code == 2 and "no model bundle" in r.output
    write_image(tmp_path / "t.tif", x, axes="YX")
    r = runner.invoke(app, ["export", str(tmp_path / "bundle"), "--bioimageio", str(tmp_path / "m.zip"),
                            "--test-image", str(tmp_path / "t.tif"), "--json"])
    assert r.exit_code == 0, r.output
    assert zipfile.is_zipfile(tmp_path / "m.zip")


def test_export_3d_axes_and_test_output(tmp_path):
    import yaml

    from fluorecon.bioimageio import export_bundle
    from fluorecon.learn.predict import predict

    b, _ = _bundle(dim=3)
    out = export_bundle(b, tmp_path / "m3.zip", weight_formats=["torchscript"])
    with zipfile.ZipFile(out) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        with z.open("test_input.npy") as f:
            test_in = np.load(f)
        with z.open("test_output.npy") as f:
            test_out = np.load(f)
    axes = rdf["inputs"][0]["axes"]
    assert [a.get("id", a["type"]) for a in axes] == ["batch", "channel", "z", "y", "x"]
    assert all(a["size"]["step"] == 2 for a in axes[2:])  # depth-1 U-Net halves each axis once
    assert set(rdf["weights"]) == {"torchscript"}
    assert test_in.shape[2:] == test_out.shape[2:] and test_in.shape[2] % 2 == 0
    np.testing.assert_allclose(test_out[0, 0], predict(b, test_in[0, 0], "ZYX", tile=None, device="cpu"), rtol=1e-4, atol=1e-3)
