"""CLI guarantees of issue 11: no data loss, one output rule, checks before computing, clear messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app

runner = CliRunner()


@pytest.fixture
def img(tmp_path):
    p = tmp_path / "in" / "good.tif"
    p.parent.mkdir()
    tifffile.imwrite(p, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    return p


def _err_line(r) -> str:
    return r.stderr.strip().splitlines()[-1]


def test_denoise_onto_a_folder_keeps_the_folder(img, tmp_path):  # item 1
    folder = tmp_path / "results.tif"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep")
    r = runner.invoke(app, ["denoise", str(img), "-o", str(folder), "--method", "tv", "--quiet", "--overwrite"])
    assert r.exit_code == 2
    assert "is a folder" in _err_line(r)
    assert (folder / "precious.txt").read_text() == "keep"


def test_train_into_a_foreign_folder_refused_before_training(img, tmp_path, monkeypatch):  # item 1
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.txt").write_text("years of work")
    monkeypatch.chdir(work)
    r = runner.invoke(app, ["train", str(img), "--scheme", "n2v", "-o", ".", "--steps", "2", "--patch-size", "16",
                            "--batch-size", "2", "--width", "4", "--quiet", "--overwrite"])
    assert r.exit_code == 2, r.output
    assert "did not write" in _err_line(r)
    assert (work / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in work.iterdir()) == ["thesis.txt"]


@pytest.mark.parametrize("command", ["denoise", "metrics"])
def test_existing_output_needs_overwrite(img, tmp_path, command):  # item 2
    out = tmp_path / ("out.tif" if command == "denoise" else "m.json")
    out.write_text("old result")
    args = (["denoise", str(img), "-o", str(out), "--method", "tv", "--quiet"] if command == "denoise"
            else ["metrics", str(img), str(img), "-o", str(out), "--quiet"])
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--overwrite" in _err_line(r)
    assert out.read_text() == "old result"
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != b"old result"


def test_export_existing_zip_needs_overwrite(tmp_path):  # item 2
    out = tmp_path / "m.zip"
    out.write_text("old")
    bundle = tmp_path / "b"
    bundle.mkdir()
    r = runner.invoke(app, ["export", str(bundle), "--bioimageio", str(out)])
    assert r.exit_code == 2 and "already exists" in _err_line(r) and out.read_text() == "old"


def test_denoise_folder_into_itself_skips_its_own_outputs(tmp_path):  # item 2
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(2):
        tifffile.imwrite(d / f"a{k}.tif", np.random.default_rng(k).random((24, 24)).astype(np.float32))
    r = runner.invoke(app, ["denoise", str(d), "-o", str(d), "--method", "tv", "--quiet"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in d.iterdir()) == ["a0.tif", "a0_denoised.tif", "a1.tif", "a1_denoised.tif"]
    r = runner.invoke(app, ["denoise", str(d), "-o", str(d), "--method", "tv", "--quiet", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in d.iterdir()) == ["a0.tif", "a0_denoised.tif", "a1.tif", "a1_denoised.tif"]


def test_bad_output_fails_before_computing(img, tmp_path):  # item 3
    r = runner.invoke(app, ["denoise", str(img), "-o", str(tmp_path / "out.bmp"), "--method", "tv", "--quiet"])
    assert r.exit_code == 2 and "unknown extension" in _err_line(r) and "Fix:" in _err_line(r)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(app, ["denoise", str(img), "-o", str(blocker / "out.tif"), "--method", "tv", "--quiet"])
    assert r.exit_code == 2 and "is a file, not a folder" in _err_line(r)
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*"))


def test_denoise_learned_steps_deterministic_and_warns(img, tmp_path):  # item 11
    outs = []
    for k in range(2):
        out = tmp_path / f"n{k}.tif"
        r = runner.invoke(app, ["denoise", str(img), "-o", str(out), "--method", "n2v", "--steps", "3",
                                "--deterministic", "--seed", "3", "--json"])
        assert r.exit_code == 0, r.output
        assert "allowed only 3 training steps" in r.stderr
        outs.append(tifffile.imread(out))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_isotropic_z_factor_is_bounded():  # item 8
    from fluorecon.errors import FluoreconError
    from fluorecon.tasks.isotropic import resolve_z_factor

    with pytest.raises(FluoreconError, match="above 64"):
        resolve_z_factor(1000, None)


def test_constant_image_denoises_to_itself_without_numpy_noise(tmp_path):  # item 12
    src = tmp_path / "const.tif"
    tifffile.imwrite(src, np.full((32, 32), 7.0, np.float32))
    for method in ("tv", "wavelet"):
        out = tmp_path / f"{method}.tif"
        r = runner.invoke(app, ["denoise", str(src), "-o", str(out), "--method", method])
        assert r.exit_code == 0, r.output
        np.testing.assert_array_equal(tifffile.imread(out), np.full((32, 32), 7.0, np.float32))
        assert "RuntimeWarning" not in r.stderr and "allow_nonfinite" not in r.stderr


def test_one_bit_tiff_and_empty_folder_messages(tmp_path):  # item 12
    mask = np.random.default_rng(0).random((16, 16)) > 0.5
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    r = runner.invoke(app, ["info", str(tmp_path / "mask.tif"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["shape"] == [16, 16]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["info", str(empty)])
    assert r.exit_code == 2 and "has no images" in r.stderr and "not found" not in r.stderr


def test_fixes_name_cli_options(tmp_path):  # item 12
    from pathlib import Path

    from fluorecon.errors import FluoreconError
    from fluorecon.learn.train import load_checkpoint

    with pytest.raises(FluoreconError, match="--checkpoint-dir"):
        load_checkpoint(tmp_path / "none")
    scale_md = (Path(__file__).parents[2] / "docs" / "scale.md").read_text()
    assert not [ln for ln in scale_md.splitlines() if "fluorecon predict" in ln and "--model" in ln]
