"""Tests for fluorecon.learn.bundle (save/load, refusal of pickles, versions, corruption, verify)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import SCHEMA_VERSION, Bundle
from fluorecon.learn.nets import UNet
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.learn.predict import predict


def _bundle(members: int = 1, head=None) -> Bundle:
    nets = []
    for k in range(members):
        torch.manual_seed(k)
        nets.append(UNet(depth=1, width=4, head=head))
    x = np.random.default_rng(0).normal(100, 10, (32, 32)).astype(np.float32)
    b = Bundle(nets if members > 1 else nets[0], PercentileNormalizer().fit(x),
               config={"axes": "YX", "scheme": "n2v"}, provenance={"seed": 0, "steps": 3},
               training_stats={"noise_sigma": 0.1}, forward={"schema": 1, "psf": None})
    b.make_test_tensors(x)
    return b


def test_round_trip_same_predictions(tmp_path):
    b = _bundle(members=3, head="laplace")
    d = b.save(tmp_path / "m")
    assert sorted(p.name for p in d.iterdir()) == ["bundle.json", "member-1.safetensors", "member-2.safetensors",
                                                    "test_tensors.safetensors", "weights.safetensors"]
    doc = json.loads((d / "bundle.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == "1.0"
    b2 = Bundle.load(d)
    assert len(b2.members) == 3 and b2.training_stats == {"noise_sigma": 0.1} and b2.forward["schema"] == 1
    x = np.random.default_rng(1).normal(100, 10, (40, 36)).astype(np.float32)
    np.testing.assert_array_equal(predict(b, x, "YX", device="cpu"), predict(b2, x, "YX", device="cpu"))
    m, s = predict(b2, x, "YX", device="cpu", return_scale=True)
    assert s.shape == x.shape and (s > 0).all()
    v = b2.verify()
    assert v["ok"] and v["max_abs_error"] <= v["atol"]


def test_verify_detects_changed_weights(tmp_path):
    b = _bundle()
    b.save(tmp_path / "m")
    b2 = Bundle.load(tmp_path / "m")
    with torch.no_grad():
        b2.model.final.bias.add_(0.5)
    assert not b2.verify()["ok"]


def test_refuses_pickles(tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, ckpt)  # a pickle-based checkpoint
    with pytest.raises(FluoreconError, match="pickle"):
        Bundle.load(ckpt)
    d = tmp_path / "folder"
    d.mkdir()
    (d / "weights.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(FluoreconError, match="pickle"):
        Bundle.load(d)
    # a bundle.json pointing at a non-safetensors weight file is refused before anything is read
    b = _bundle()
    bd = b.save(tmp_path / "m")
    doc = json.loads((bd / "bundle.json").read_text())
    torch.save(b.model.state_dict(), bd / "weights.pt")
    doc["members"] = ["weights.pt"]
    (bd / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(FluoreconError, match="safetensors"):
        Bundle.load(bd)


def test_refuses_unknown_major_version_but_accepts_minor(tmp_path):
    d = _bundle().save(tmp_path / "m")
    doc = json.loads((d / "bundle.json").read_text())
    doc["schema_version"] = "1.7"
    doc["future_field"] = {"x": 1}
    (d / "bundle.json").write_text(json.dumps(doc))
    assert Bundle.load(d).schema_version == "1.7"
    doc["schema_version"] = "2.0"
    (d / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(FluoreconError, match="schema version"):
        Bundle.load(d)


@pytest.mark.parametrize("damage", ["no_json", "bad_json", "no_weights", "flipped_byte", "wrong_config", "no_field"])
def test_refuses_missing_or_corrupt(tmp_path, damage):
    d = _bundle().save(tmp_path / "m")
    j = d / "bundle.json"
    w = d / "weights.safetensors"
    if damage == "no_json":
        j.unlink()
    elif damage == "bad_json":
        j.write_text("{not json")
    elif damage == "no_weights":
        w.unlink()
    elif damage == "flipped_byte":
        raw = bytearray(w.read_bytes())
        raw[-3] ^= 0xFF
        w.write_bytes(bytes(raw))
    elif damage == "wrong_config":
        doc = json.loads(j.read_text())
        doc["model"]["width"] = 8
        j.write_text(json.dumps(doc))
    elif damage == "no_field":
        doc = json.loads(j.read_text())
        del doc["normalizer"]
        j.write_text(json.dumps(doc))
    with pytest.raises(FluoreconError):
        Bundle.load(d)


def test_missing_folder_and_file_path(tmp_path):
    with pytest.raises(FluoreconError, match="not found"):
        Bundle.load(tmp_path / "nope")
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(FluoreconError):
        Bundle.load(f)
    with pytest.raises(FluoreconError):
        _bundle().save(f)  # a file is in the way
