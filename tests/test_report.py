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
    assert "XY max projection" in html and "XZ middle slice" in html  # static figures (for printing)
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


def _verdict_dict():
    return {"flagged": True, "alpha": 0.05, "n_added": 1, "n_missing": 1, "forward_model": {"flagged": False,
            "verdict": "consistent"}, "misfit": {"flagged": False}, "info": {"identity": False},
            "regions": [{"kind": "added", "centroid": [30.0, 60.0], "extent": [5, 4], "bbox": [[28, 33], [58, 62]],
                         "p_value": 1e-6, "z": 7.0, "amplitude": 12.5},
                        {"kind": "missing", "centroid": [62.0, 12.0], "extent": [6, 6], "bbox": [[59, 65], [9, 15]],
                         "p_value": 0.003, "z": 5.0, "amplitude": 3.0}]}


def test_report_verdict_in_plain_words_with_regions(tmp_path):
    _, blurred, noisy = _scene()
    html = write_report(tmp_path / "v.html", title="v", input=noisy, output=blurred, axes="YX", voxel_size=(0.1, 0.1),
                        params={}, command="", verdict=_verdict_dict()).read_text()
    top = html[: html.index("Compare input and output</h2>")]  # the verdict comes first
    assert "Check the marked regions before trusting this result" in top
    assert "What was checked" in top and "What was found" in top and "Where" in top
    assert "1 region where the result holds more signal" in top and "1 region where the result lacks signal" in top
    assert "y = 30, x = 60 px (3.00, 6.00 µm)" in top and "y = 62, x = 12 px" in top
    assert "denoiser" not in top  # deconvolution results are not described as denoisers
    assert '"boxes": [{"kind": "added"' in html  # the regions are drawn in the viewer
    # a verify dict passed as `trust` (what `--check` hands over) drives the verdict too
    html2 = write_report(tmp_path / "v2.html", title="v", input=noisy, output=blurred, axes="YX", params={},
                         command="", trust={**_verdict_dict(), "flagged": False, "regions": [], "n_added": 0,
                                            "n_missing": 0}).read_text()
    assert "The result is consistent with the recording" in html2
    assert "No region of the result contradicts the recording" in html2
    # nothing checked: said plainly
    html3 = write_report(tmp_path / "v3.html", title="v", input=noisy, output=blurred, axes="YX", params={},
                         command="").read_text()
    assert "Not checked." in html3 and "fluorecon verify" in html3


def test_report_verdict_from_verify_result(tmp_path):
    from fluorecon.trust.verify import verify

    rng = np.random.default_rng(3)
    clean = np.full((64, 64), 30.0, np.float32)
    x = rng.poisson(clean).astype(np.float32)
    y = clean.copy()
    y[20:26, 30:36] += 60.0  # structure the recording does not contain
    v = verify(x, y, gain=1.0, offset=0.0, fit_scale=False, background=None)
    assert v.flagged
    html = write_report(tmp_path / "v.html", title="v", input=x, output=y, axes="YX", params={}, command="",
                        verdict=v).read_text()
    r = v.regions[0]
    assert f"y = {r['centroid'][0]:.0f}, x = {r['centroid'][1]:.0f} px" in html
    assert "verify z" in html  # its map is shown with the trust maps


def test_report_is_self_contained_and_interactive_markup(tmp_path):
    rng = np.random.default_rng(4)
    vol = rng.random((10, 40, 32)).astype(np.float32)
    html = write_report(tmp_path / "i.html", title="i", input=vol, output=vol * 2, axes="ZYX",
                        voxel_size=(0.3, 0.1, 0.1), params={}, command="", target=vol).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, no network
    assert "<link" not in html and "<script src" not in html and "@import" not in html
    payload = re.search(r'<script type="application/json" class="vdata">(.*?)</script>', html, re.S).group(1)
    import json

    data = json.loads(payload)
    assert data["order"] == ["XY", "XZ", "YZ"]  # slice browsing in three orientations
    assert len(data["views"]["XY"]["input"]) == 10  # every plane of a short stack
    assert len(data["views"]["XZ"]["input"]) == 24 and data["views"]["XZ"]["index"][-1] == 39  # long axes: 24 spread
    assert set(data["layers"]) == {"input", "output", "target", "difference"}
    assert data["views"]["XZ"]["aspect"] == "3.2 / 3"  # physical proportions: 32×0.1 µm by 10×0.3 µm
    assert 'class="swipe"' in html and 'class="zoom"' in html and 'class="slice"' in html
    assert "linear-gradient" in html  # colorbars
    assert "figures decoded" not in html  # no test strings shown to users


def test_report_parameters_table_frc_before_after_and_psf(tmp_path):
    _, blurred, noisy = _scene()
    long = "x" * 3000 + "END"
    params = {"method": "rl", "info": {"iterations": 20, "stop": {"reason": "change", "tol": 1e-3}, "note": long}}
    psf = np.outer(np.hanning(11), np.hanning(11)).astype(np.float32)
    html = write_report(tmp_path / "p.html", title="p", input=noisy, output=blurred, axes="YX", voxel_size=(0.1, 0.1),
                        params=params, command="", psf=psf).read_text()
    sec = html[html.index(">Parameters</h2>"):html.index(">Provenance</h2>")]
    assert "<th>info.iterations</th><td>20</td>" in sec and "<th>info.stop.reason</th><td>change</td>" in sec
    assert long + "</td>" in sec  # shown in full, never cut mid-string
    assert "input (before): single-image FRC" in html and "output (after): single-image FRC" in html
    assert "Point spread function (forward model)" in html and "FWHM (µm, YX)" in html


def test_task_sections_render_tables_and_transforms():
    from fluorecon.report import task_sections
    from fluorecon.tasks.contract import IdentityForward, Result, Table

    loc = Table({"frame": np.arange(30), "x [nm]": np.linspace(0, 2900, 30), "y [nm]": np.full(30, 5.0)})
    res = Result(outputs={"localizations": loc, "transform": {"matrix": [[1.0, 0.0, 2.0], [0.0, 1.0, -3.0],
                                                                         [0.0, 0.0, 1.0]], "kind": "translation"}},
                 main="localizations", forward=IdentityForward())
    secs = dict(task_sections(res))
    t = secs["Table: localizations"]
    assert "30 rows, 3 columns" in t and "<th>x [nm]</th>" in t and "<th>median</th>" in t
    assert t.count("<tr>") == 1 + 3 + 1 + 20  # header + stats, header + first 20 rows
    m = secs["Transform"]
    assert "<table class='matrix'>" in m and "<td>-3</td>" in m and "translation" in m


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="headless chromium not installed (apt-get install chromium)")
def test_report_controls_respond_in_headless_chromium(tmp_path):
    """The inline self-test drives the swipe, zoom, slice, view and layer controls and writes the result."""
    rng = np.random.default_rng(5)
    vol = ndimage.gaussian_filter(rng.random((12, 48, 40)), 1).astype(np.float32)
    p = write_report(tmp_path / "r3.html", title="3D", input=vol, output=vol * 2, axes="ZYX", voxel_size=(0.3, 0.1, 0.1),
                     params={}, command="", verdict=_verdict_dict() | {"regions": []})
    dom = chromium_render(p, tmp_path)
    m = re.search(r'id="selftest"[^>]*data-result="([^"]*)"', dom)
    assert m and m.group(1) == "pass", m.group(1) if m else dom[-500:]
    assert re.search(r'data-viewers="1"', dom)
    # after the self-test the viewer is back to its reset state: XY, middle slice, output, swipe 50 %, zoom 1
    assert re.search(r'class="viewer" id="v0" data-state="XY\|6\|output\|50\|1"', dom)


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
    m = re.search(r'id="selftest"[^>]*data-result="([^"]*)"[^>]*data-decoded="(\d+)"[^>]*data-total="(\d+)"', dom)
    assert m, "the page's self-test did not run (scripts disabled or page not loaded)"
    assert m.group(1) == "pass", m.group(1)
    decoded, total = int(m.group(2)), int(m.group(3))
    assert total == n_embedded and decoded == total and total >= 5
    img = iio.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 10  # something was drawn, not a blank page
    if os.environ.get("FLUORECON_UPDATE_SCREENSHOTS"):
        dest = Path(__file__).resolve().parents[1] / "docs" / "images" / "report.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest)


def test_demo_leads_with_the_result_the_metrics_table_ranks_first():
    """Issue 24: the demo's lead result contradicted its metrics table (a 0.04 % trust tie-break)."""
    from fluorecon.cli.commands.demo import lead_result

    metrics = {"classical denoised": {"RI-PSNR (dB)": 29.8, "SSIM": 0.81},
               "self-supervised denoised": {"RI-PSNR (dB)": 31.2, "SSIM": 0.79}}
    # the trust scores prefer the classical result by a hair: the metrics still decide
    badness = {"classical denoised": (0, 0.0210, 0.1), "self-supervised denoised": (0, 0.0214, 0.1)}.__getitem__
    name, rule = lead_result(list(metrics), metrics, badness)
    assert name == "self-supervised denoised" and "ground truth" in rule
    # no ground truth: the trust checks decide, and the report says so
    name, rule = lead_result(list(metrics), {}, badness)
    assert name == "classical denoised" and "uses no ground truth" in rule
