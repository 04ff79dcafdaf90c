"""`fluorecon check BUNDLE INPUT`: prints the trust summary only, writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fluorecon.cli import app


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer
    from fluorecon.trust.shift import training_statistics

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    imgs = [rng.poisson(20 + 30 * (rng.random((64, 64)) > 0.9)).astype(np.float32) for _ in range(6)]
    net = UNet(dim=2, depth=1, width=8, head="laplace")
    norm = PercentileNormalizer().fit(np.stack(imgs))
    stats = training_statistics(net, imgs, norm, patch_size=32, max_patches=48)
    d = tmp_path_factory.mktemp("b") / "model"
    Bundle(net, norm, config={"axes": "YX"}, training_stats=stats).save(d)
    np.save(d.parent / "img.npy", imgs[0])
    np.save(d.parent / "odd.npy", imgs[0] * 40 + 5000)
    return d


def test_check_json(bundle_dir):
    before = sorted(p.name for p in bundle_dir.parent.iterdir())
    res = CliRunner().invoke(app, ["check", str(bundle_dir), str(bundle_dir.parent / "img.npy"), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert {"scores", "warnings", "maps"} <= set(d)
    assert "consistency" in d["maps"] and "uncertainty" in d["maps"]
    assert d["scores"]["uncertainty"]["source"] == "laplace head"
    assert "worst_ratio" in d["scores"]["shift"]
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == before  # nothing written


def test_check_text_warns_on_shifted_input(bundle_dir):
    res = CliRunner().invoke(app, ["check", str(bundle_dir), str(bundle_dir.parent / "odd.npy")])
    assert res.exit_code == 0, res.output
    assert "distribution shift" in res.stdout and "training data" in res.stdout


def test_check_bad_inputs(bundle_dir, tmp_path):
    r1 = CliRunner().invoke(app, ["check", str(tmp_path / "nope"), str(bundle_dir.parent / "img.npy")])
    assert r1.exit_code == 2 and "does not exist" in r1.output
    r2 = CliRunner().invoke(app, ["check", str(bundle_dir), str(tmp_path / "missing.tif")])
    assert r2.exit_code == 2 and "missing.tif" in r2.output
