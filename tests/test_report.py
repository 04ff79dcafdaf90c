"""HTML report: content, independent metric values, bad input, CLI, and rendering in headless Chromium."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.report import array_sha256, file_sha256, rerun_command, write_report

IMG_RE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _scene(seed=0, shape=(96, 96)):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.float32)
    truth[20:70, 40:43] = 1.0
    truth[30, 60] = 3.0
    truth[60:66, 10:16] = 0.5
    blurred = ndimage.gaussian_filter(truth, 1.5) * 60 + 10
    noisy = rng.poisson(blurred).astype(np.float32)
    return truth, blurred.astype(np.float32), noisy


def _decode_pngs(html: str) -> list[np.ndarray]:
    import imageio.v3 as iio

    return [iio.imread(io.BytesIO(base64.b64decode(b)), extension=".png") for b in IMG_RE.findall(html)]


def test_report_2d_content_and_metrics(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio

    _, blurred, noisy = _scene()
    out = ndimage.gaussian_filter(noisy, 1.0)
    trust = {"warnings": ["The output disagrees with the recording in 3.2 % of pixels"], "scores": {"consistency": {"excess": 0.31}}}
    maps = {"uncertainty": np.abs(out - blurred), "consistency_z": (noisy - out) / 8.0}
    p = write_report(tmp_path / "r.html", title="Denoise <test>", input=noisy, output=out, axes="YX",
                     voxel_size=(0.1, 0.1), params={"method": "gaussian", "sigma": 1.0, "seed": 7},
                     command="fluorecon denoise in.tif -o out.tif --seed 7", trust=trust, maps=maps, target=blurred)
    html = p.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "Denoise &lt;test&gt;" in html  # escaped, not injected
    assert "The output disagrees with the recording in 3.2 % of pixels" in html
    assert "fluorecon denoise in.tif -o out.tif --seed 7" in html
    assert "consistency.excess" in html and "0.31" in html
    assert array_sha256(noisy) in html
    # images: input/output/target/diff, crops, profile, maps row, FRC; all decodable PNGs of real size
    imgs = _decode_pngs(html)
    assert len(imgs) >= 5
    assert all(im.ndim == 3 and im.shape[0] > 100 and im.shape[1] > 200 for im in imgs)
    assert all(im[..., :3].std() > 1 for im in imgs)  # not blank
    # PSNR of the output on the whole image equals scikit-image's (4 significant digits in the table)
    rng_t = float(blurred.max() - blurred.min())
    ref = peak_signal_noise_ratio(blurred, out, data_range=rng_t)
    assert f"{ref:.4g}" in html
    # the FRC section reports a resolution
    assert "Resolution at the threshold" in html


def test_report_3d_views_and_extra_sections(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.random((12, 48, 40)).astype(np.float32)
    p = write_report(tmp_path / "r3.html", title="3D", input=vol, output=vol * 2, axes="ZYX", voxel_size=(0.3, 0.1, 0.1),
                     params={}, command="x", extra_sections=[("Table", {"a": 1}), ("Picture", vol[0]), ("Text", "plain")])
    html = p.read_text()
    assert "XY max projection" in html and "XZ middle slice" in html
    assert "<h2" in html and ">Table<" in html and ">Picture<" in html and "plain" in html
    assert "No trust checks were run" in html


def test_report_reduces_channel_axis_and_says_so(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.random((2, 40, 40)).astype(np.float32)
    html = write_report(tmp_path / "c.html", title="c", input=a, output=a, axes="CYX", params={}, command="").read_text()
    assert "C=0 of 2" in html


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"output": np.zeros((10, 10))}, "differs from input shape"),
        ({"input": np.zeros((0, 4)), "output": np.zeros((0, 4))}, "empty"),
        ({"axes": "ZYX"}, "dimensions but axes"),
        ({"target": np.zeros((5, 5))}, "target shape"),
        ({"input": np.array([["a"]]), "output": np.array([["a"]])}, "non-numeric"),
    ],
)
def test_report_bad_input_leaves_no_file(tmp_path, kwargs, match):
    base = {"input": np.ones((32, 32)), "output": np.ones((32, 32)), "axes": "YX"}
    base.update(kwargs)
    dest = tmp_path / "bad.html"
    with pytest.raises(FluoreconError, match=match):
        write_report(dest, title="t", params={}, command="", **base)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_provenance_helpers(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256("abc")
    assert rerun_command(["report", "a b.tif"]) == "fluorecon report 'a b.tif'"


# ------------------------------------------------------------------------------------------ CLI


def test_cli_report_missing_file_fails_clearly(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli import app

    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope.tif"), str(tmp_path / "out.tif"), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 2
    assert "no input found" in r.output or "not found" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "r.html").exists()


def test_cli_report_writes_html(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli import app
    from fluorecon.io import write_image

    truth, blurred, noisy = _scene()
    write_image(tmp_path / "raw.tif", noisy, axes="YX", voxel_size=(0.1, 0.1))
    write_image(tmp_path / "den.tif", ndimage.gaussian_filter(noisy, 1.0), axes="YX", voxel_size=(0.1, 0.1))
    write_image(tmp_path / "truth.tif", blurred, axes="YX")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "raw.tif"), str(tmp_path / "den.tif"), "--target",
                                 str(tmp_path / "truth.tif"), "-o", str(tmp_path / "rep.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep.html").read_text()
    assert "Metrics against the target" in html
    assert file_sha256(tmp_path / "raw.tif") in html
    assert f"fluorecon report {tmp_path / 'raw.tif'}" in html
    # missing output image
    r = CliRunner().invoke(app, ["report", str(tmp_path / "raw.tif"), str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "file not found" in r.output


def test_cli_report_batch_continues_after_a_failure(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli import app
    from fluorecon.io import write_image

    (tmp_path / "raw").mkdir()
    (tmp_path / "den").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        x = rng.poisson(np.full((48, 48), 30.0)).astype(np.float32)
        write_image(tmp_path / "raw" / f"{name}.tif", x, axes="YX")
        write_image(tmp_path / "den" / f"{name}.tif", ndimage.gaussian_filter(x, 1.0), axes="YX")
    write_image(tmp_path / "raw" / "orphan.tif", np.ones((48, 48), np.float32), axes="YX")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "raw"), str(tmp_path / "den"), "-o", str(tmp_path / "rep"), "--json"])
    assert r.exit_code == 1  # one file failed, the others were still written
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["a_report.html", "b_report.html"]
    assert "no restoration of orphan.tif" in r.output


# ------------------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def chromium_render(html_path: Path, tmp: Path, screenshot: Path | None = None, size=(1280, 2400)) -> str:
    """Render ``html_path`` in headless Chromium; return the DOM after scripts ran (optionally screenshot)."""
    exe = _chromium()
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000"]
    url = html_path.resolve().as_uri()
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # headless: keep off any X server
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=60, env=env).stdout
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}", url],
                       capture_output=True, timeout=60, env=env)
    return dom


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="headless chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    import imageio.v3 as iio

    _, blurred, noisy = _scene()
    out = ndimage.gaussian_filter(noisy, 1.0)
    p = write_report(tmp_path / "r.html", title="Chromium check", input=noisy, output=out, axes="YX", voxel_size=(0.1, 0.1),
                     params={"method": "gaussian"}, command="fluorecon report raw.tif den.tif -o r.html",
                     maps={"uncertainty": np.abs(out - blurred)}, target=blurred,
                     trust={"warnings": ["example warning"], "scores": {}})
    n_embedded = len(IMG_RE.findall(p.read_text()))
    shot = tmp_path / "report.png"
    dom = chromium_render(p, tmp_path, shot)
    m = re.search(r'id="image-check"[^>]*data-decoded="(\d+)"[^>]*data-total="(\d+)"', dom)
    assert m, "the page's image check did not run (scripts disabled or page not loaded)"
    decoded, total = int(m.group(1)), int(m.group(2))
    assert total == n_embedded and decoded == total and total >= 5
    img = iio.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 10  # something was drawn, not a blank page
    if os.environ.get("FLUORECON_UPDATE_SCREENSHOTS"):
        dest = Path(__file__).resolve().parents[1] / "docs" / "images" / "report-test.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest)
