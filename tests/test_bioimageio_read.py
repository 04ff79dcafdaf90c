"""Reading bioimage.io packages (``fluorecon predict PACKAGE``) and what ``fluorecon export`` writes into them.

References are independent of the reader: round trips compare with predictions from the bundle folder,
foreign packages with the network applied by hand in torch, hashes with ``hashlib``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

import fluorecon.bioimageio as bio
from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet

pytest.importorskip("bioimageio.spec", reason="bioimage.io export needs fluorecon[bioimageio]")

runner = CliRunner()
TINY = ["--depth", "1", "--width", "4", "--patch-size", "16", "--batch-size", "2", "--quiet", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything calls a pickle-based loader."""
    def refuse(*a, **k):
        raise AssertionError("a pickle-based loader was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.jit, "load", refuse)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A bundle trained by the CLI (11 steps, absolute paths on its command line) and its package."""
    d = tmp_path_factory.mktemp("exported")
    img = np.random.default_rng(0).poisson(20, (48, 48)).astype(np.float32)
    data = d / "private-project" / "raw.tif"
    data.parent.mkdir()
    tifffile.imwrite(data, img)
    bundle, pkg = d / "bundle", d / "model.zip"
    argv = sys.argv
    # What the shell would have passed: the recorded command then holds absolute local paths.
    sys.argv = ["fluorecon", "train", str(data), "--scheme", "n2v", "-o", str(bundle), "--steps", "11", *TINY]
    try:
        r = runner.invoke(app, sys.argv[1:])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["export", str(bundle), "--bioimageio", str(pkg), "--json"])
    finally:
        sys.argv = argv
    assert r.exit_code == 0, r.output
    return {"dir": d, "data": data, "bundle": bundle, "pkg": pkg, "img": img, "export_json": json.loads(r.stdout)}


def _predict(tmp_path, model, img_path, name):
    out = tmp_path / name
    r = runner.invoke(app, ["predict", str(model), str(img_path), "-o", str(out), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    return tifffile.imread(out)


# ------------------------------------------------------------------------------------------ our packages
def test_predict_from_exported_zip_is_bit_identical_to_bundle(exported, tmp_path, no_unpickling):
    pkg = exported["pkg"]
    before = (hashlib.sha256(pkg.read_bytes()).hexdigest(), pkg.stat().st_mtime_ns)
    ref = _predict(tmp_path, exported["bundle"], exported["data"], "from_bundle.tif")
    got = _predict(tmp_path, pkg, exported["data"], "from_zip.tif")
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(pkg) as z:
        z.extractall(unpacked)
    listing = sorted((p.name, p.stat().st_size) for p in unpacked.iterdir())
    assert np.array_equal(_predict(tmp_path, unpacked, exported["data"], "from_folder.tif"), ref)
    assert (hashlib.sha256(pkg.read_bytes()).hexdigest(), pkg.stat().st_mtime_ns) == before  # input untouched
    assert sorted((p.name, p.stat().st_size) for p in unpacked.iterdir()) == listing
    r = runner.invoke(app, ["predict", str(pkg), "--verify"])
    assert r.exit_code == 0 and "OK" in r.output


def test_export_writes_no_local_paths(exported):
    d = exported["dir"]
    forbidden = {str(d), str(Path.home()), str(exported["data"].parent), "private-project"}
    if len(str(Path.cwd())) > 1:
        forbidden.add(str(Path.cwd()))

    def scan(name, data):
        for s in forbidden:
            assert s.encode() not in data, f"{name} contains the local path {s}"
        if zipfile.is_zipfile(io.BytesIO(data)):  # TorchScript and torch.save files are zips too
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for n in z.namelist():
                    scan(f"{name}/{n}", z.read(n))

    with zipfile.ZipFile(exported["pkg"]) as z:
        for n in z.namelist():
            scan(n, z.read(n))
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        doc = json.loads(z.read("bundle.json"))
    # the training data travel as name + hash (hash checked with hashlib, not fluorecon's helper)
    sha = hashlib.sha256(exported["data"].read_bytes()).hexdigest()
    assert rdf["config"]["fluorecon"]["training"]["training_data"] == [{"name": "raw.tif", "sha256": sha}]
    assert doc["provenance"]["data_sha256"] == {"raw.tif": sha}
    assert "raw.tif" in rdf["config"]["fluorecon"]["training"]["command"]
    # the bundle the package came from did record the local paths (so the test checks real scrubbing)
    local = json.loads((exported["bundle"] / "bundle.json").read_text())
    assert str(d) in local["provenance"]["command"] and str(d) in local["config"]["train"]["checkpoint_dir"]


def test_export_warns_on_under_trained_bundle(exported, tmp_path):
    warns = exported["export_json"]["warnings"]
    assert any("only 11 steps" in w for w in warns)
    assert any("no validation" in w for w in warns)  # one image: nothing held out
    with zipfile.ZipFile(exported["pkg"]) as z:
        assert "only 11 steps" in z.read("README.md").decode()
        assert yaml.safe_load(z.read("rdf.yaml"))["config"]["fluorecon"]["training_warnings"] == warns
    r = runner.invoke(app, ["export", str(exported["bundle"]), "--bioimageio", str(tmp_path / "m.zip")])
    assert r.exit_code == 0 and "warning: trained for only 11 steps" in r.stderr


def test_training_warning_criterion():
    rng = np.random.default_rng(0)
    steps = np.arange(10, 5001, 10)
    flat = [[int(s), float(1.0 + 0.05 * rng.standard_normal())] for s in steps]
    val = [[int(s), 1.0] for s in steps[::10]]
    assert bio.training_warnings({"steps": 5000, "loss_curve": flat, "validation_curve": val}) == []
    falling = [[int(s), float(np.exp(-s / 2000))] for s in steps]  # ~30 % lower per quarter at the end
    w = bio.training_warnings({"steps": 5000, "loss_curve": falling, "validation_curve": falling[::10]})
    assert len(w) == 1 and "validation loss was still falling" in w[0]
    # without validation points, the training curve decides; early stopping means it plateaued
    w = bio.training_warnings({"steps": 5000, "loss_curve": falling, "validation_curve": [],
                               "monitor": {"curve": [[1, 1.0]]}})
    assert len(w) == 1 and "training loss was still falling" in w[0]
    assert bio.training_warnings({"steps": 5000, "loss_curve": falling, "validation_curve": falling[::10],
                                  "stop_reason": "early_stopping"}) == []
    assert "no training history" in bio.training_warnings({})[0]


def test_scrub_paths_keeps_non_paths():
    doc = {"/home/u/a.tif": "x", "cmd": "fluorecon train '/srv/lab/b c.tif' --out=/tmp/o -n 3",
           "url": "https://zenodo.org/a/b", "doi": "10.1038/s41592-018-0216-7", "dev": "cuda:0", "rel": "data/c.tif"}
    out = bio.scrub_paths(doc)
    assert out["a.tif"] == "x" and out["url"] == doc["url"] and out["doi"] == doc["doi"]
    assert out["dev"] == "cuda:0" and out["rel"] == "data/c.tif"
    assert "/srv" not in out["cmd"] and "/tmp" not in out["cmd"] and "--out=o" in out["cmd"]


# -------------------------------------------------------------------------------------- foreign packages
def _foreign(tmp_path, *, weights="safetensors", arch=("fluorecon.learn.nets", "UNet"), pre=None, post=None,
             tamper_output=False, name="foreign.zip", extra_members=()):
    """A hand-written rdf.yaml package (format 0.5) for a fluorecon UNet, written without fluorecon's exporter."""
    torch.manual_seed(1)
    cfg = {"dim": 2, "in_channels": 1, "out_channels": 1, "depth": 1, "width": 4}
    net = UNet(**cfg).eval()
    mean, std = 100.0, 20.0
    pre = pre if pre is not None else [{"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": mean, "std": std}}]
    post = post if post is not None else [{"id": "scale_linear", "kwargs": {"gain": std, "offset": mean}}]
    x = np.random.default_rng(2).normal(mean, std, (1, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():  # the reference: the network applied by hand
        y = net(torch.from_numpy((x - mean) / std)).numpy() * std + mean
    if tamper_output:
        y = y + 5.0
    files: dict[str, bytes] = {}
    buf = io.BytesIO()
    np.save(buf, x)
    files["test_input.npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, y.astype(np.float32))
    files["test_output.npy"] = buf.getvalue()
    sha = lambda n: hashlib.sha256(files[n]).hexdigest()  # noqa: E731
    wdesc = {}
    if weights == "safetensors":
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
        files["weights.safetensors"] = (tmp_path / "w.safetensors").read_bytes()
        wdesc["pytorch_state_dict"] = {"source": "weights.safetensors", "sha256": sha("weights.safetensors"),
                                       "architecture": {"import_from": arch[0], "callable": arch[1], "kwargs": cfg},
                                       "pytorch_version": "2.0"}
    elif weights == "pickles":
        files["weights.pt"] = b"PK\x03\x04 pretend pickle"
        files["weights_torchscript.pt"] = b"PK\x03\x04 pretend torchscript"
        wdesc["pytorch_state_dict"] = {"source": "weights.pt", "sha256": sha("weights.pt"),
                                       "architecture": {"import_from": arch[0], "callable": arch[1], "kwargs": cfg}}
        wdesc["torchscript"] = {"source": "weights_torchscript.pt", "sha256": sha("weights_torchscript.pt")}
    elif weights == "onnx":
        files["model.onnx"] = b"onnx bytes"
        wdesc["onnx"] = {"source": "model.onnx", "sha256": sha("model.onnx"), "opset_version": 15}
    space = [{"id": "y", "type": "space", "size": {"min": 8, "step": 2}},
             {"id": "x", "type": "space", "size": {"min": 8, "step": 2}}]
    rdf = {"format_version": "0.5.3", "type": "model", "name": "hand-made UNet", "description": "test",
           "authors": [{"name": "someone else"}], "license": "MIT", "documentation": "README.md", "cite": [],
           "inputs": [{"id": "raw", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["c0"]}, *space],
                       "test_tensor": {"source": "test_input.npy", "sha256": sha("test_input.npy")},
                       "preprocessing": pre}],
           "outputs": [{"id": "out", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["c0"]}, *space],
                        "test_tensor": {"source": "test_output.npy", "sha256": sha("test_output.npy")},
                        "postprocessing": post}],
           "weights": wdesc}
    files["README.md"] = b"# hand-made\n"
    files["rdf.yaml"] = yaml.safe_dump(rdf).encode()
    out = tmp_path / name
    with zipfile.ZipFile(out, "w") as z:
        for n, data in [*files.items(), *extra_members]:
            z.writestr(n, data)
    return out, net, (mean, std), rdf, files


def test_foreign_safetensors_package_predicts_like_the_network(tmp_path, no_unpickling):
    pkg, net, (mean, std), _, _ = _foreign(tmp_path)
    img = np.random.default_rng(3).normal(100, 20, (40, 56)).astype(np.float32)
    tifffile.imwrite(tmp_path / "img.tif", img)
    got = _predict(tmp_path, pkg, tmp_path / "img.tif", "out.tif")
    with torch.no_grad():
        ref = net(torch.from_numpy((img - mean) / std)[None, None]).numpy()[0, 0] * std + mean
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)


def test_foreign_package_refused_when_its_test_output_is_not_reproduced(tmp_path):
    pkg, *_ = _foreign(tmp_path, tamper_output=True)
    with pytest.raises(FluoreconError, match="does not reproduce its own test output"):
        bio.load_package(pkg)


@pytest.mark.parametrize("kind", ["pickles", "onnx"])
def test_unsupported_weight_formats_exit_2_and_name_them(tmp_path, kind, no_unpickling):
    pkg, *_ = _foreign(tmp_path, weights=kind)
    tifffile.imwrite(tmp_path / "img.tif", np.ones((32, 32), np.float32))
    r = runner.invoke(app, ["predict", str(pkg), str(tmp_path / "img.tif"), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    if kind == "pickles":
        assert "pytorch_state_dict (weights.pt)" in msg and "torchscript (weights_torchscript.pt)" in msg
        assert "unpickling" in msg
    else:
        assert "onnx (model.onnx)" in msg and "ONNX runtime" in msg
    assert "Supported: the fluorecon bundle" in msg and ".safetensors" in msg
    assert not (tmp_path / "o.tif").exists()


def test_foreign_architecture_is_refused_without_importing_it(tmp_path, monkeypatch):
    probe = tmp_path / "imported.txt"
    (tmp_path / "fluorecon_probe_mod.py").write_text(f"open({str(probe)!r}, 'w').write('x')\nUNet = object\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg, *_ = _foreign(tmp_path, arch=("fluorecon_probe_mod", "UNet"))
    with pytest.raises(FluoreconError, match="architecture fluorecon_probe_mod:UNet is not one fluorecon builds"):
        bio.load_package(pkg)
    assert not probe.exists() and "fluorecon_probe_mod" not in sys.modules


def test_non_linear_processing_is_refused(tmp_path):
    pre = [{"id": "scale_range", "kwargs": {"min_percentile": 1, "max_percentile": 99.8, "axes": ["y", "x"]}}]
    pkg, *_ = _foreign(tmp_path, pre=pre)
    with pytest.raises(FluoreconError, match="processing step 'scale_range'"):
        bio.load_package(pkg)


# ------------------------------------------------------------------------------------------- zip safety
def _rezip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, extra: tuple = ()):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, (replace or {}).get(info.filename, zin.read(info.filename)))
        for n, data in extra:
            zout.writestr(n, data)
    return dst


def test_zip_with_path_traversal_member_is_refused(tmp_path):
    pkg, *_ = _foreign(tmp_path, extra_members=[("../escape.txt", b"x")])
    with pytest.raises(FluoreconError, match="outside the package"):
        bio.load_package(pkg)
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize(("source", "message"), [("../weights.safetensors", "outside the package"),
                                                 ("/etc/passwd.safetensors", "outside the package"),
                                                 ("https://example.org/w.safetensors", "never downloads")])
def test_rdf_sources_outside_the_package_are_refused(tmp_path, source, message):
    pkg, _, _, rdf, _ = _foreign(tmp_path)
    rdf["weights"]["pytorch_state_dict"]["source"] = source
    bad = _rezip(pkg, tmp_path / "bad.zip", {"rdf.yaml": yaml.safe_dump(rdf).encode()})
    with pytest.raises(FluoreconError, match=message):
        bio.load_package(bad)


def test_sha256_mismatch_is_refused(exported, tmp_path):
    with zipfile.ZipFile(exported["pkg"]) as z:
        w = bytearray(z.read("weights.safetensors"))
    w[-1] ^= 1
    bad = _rezip(exported["pkg"], tmp_path / "bad.zip", {"weights.safetensors": bytes(w)})
    r = runner.invoke(app, ["predict", str(bad), str(exported["data"]), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "does not match the sha256 in rdf.yaml" in r.output


def test_size_limits_and_non_packages(tmp_path, monkeypatch):
    pkg, *_ = _foreign(tmp_path)
    monkeypatch.setattr(bio, "MAX_FILE_BYTES", 1000)
    with pytest.raises(FluoreconError, match="too large to be read safely"):
        bio.load_package(pkg)
    monkeypatch.undo()
    dup = _rezip(pkg, tmp_path / "dup.zip", extra=[("README.md", b"again")])
    with pytest.raises(FluoreconError, match="twice"):
        bio.load_package(dup)
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(FluoreconError, match="not a readable zip"):
        bio.load_package(tmp_path / "fake.zip")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(FluoreconError, match="no rdf.yaml"):
        bio.load_package(tmp_path / "plain.zip")


def test_package_folder_with_link_out_is_refused(tmp_path):
    pkg, *_ = _foreign(tmp_path)
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(pkg) as z:
        z.extractall(folder)
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    os.symlink(tmp_path / "secret.safetensors", folder / "link.safetensors")
    with pytest.raises(FluoreconError, match="links outside the package folder"):
        bio.load_package(folder)
