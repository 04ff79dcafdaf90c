"""napari plugin: manifest, widgets on real layers, reader, sample data, bad input, cancel.

Runs headless (QT_QPA_PLATFORM=offscreen, set in tests/conftest.py) or under Xvfb in CI. Skipped when
napari is not installed (it is the optional extra ``fluorecon[napari]``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from scipy import ndimage


def _ensure_display() -> None:
    """napari's canvas needs OpenGL, which Qt's offscreen platform only has through an X display: when
    none is set (a plain `make test` on a headless machine; CI runs under xvfb-run), start a private Xvfb
    before Qt starts."""
    if os.environ.get("DISPLAY") or not shutil.which("Xvfb"):
        return
    def die_with_parent() -> None:
        # -noreset: a server reset (after another client, e.g. a browser, disconnects) breaks GLX for later
        # clients. Xvfb ends when this process has fully exited (after Qt/Xlib closed their connection): killing it
        # earlier, e.g. at atexit, makes Xlib abort the interpreter with an "XIO fatal error".
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    os.close(w)
    with os.fdopen(r) as fh:
        num = fh.readline().strip()
    if not num:
        proc.terminate()
        return
    os.environ["DISPLAY"] = f":{num}"


_ensure_display()
napari = pytest.importorskip("napari", reason="napari not installed (pip install 'fluorecon[napari]')")
pytest.importorskip("pytestqt", reason="pytest-qt not installed")

pytestmark = pytest.mark.gui


def _has(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


def _blobs(shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(4, s - 4, 12) for s in shape)
    truth[idx] = 1.0
    clean = ndimage.gaussian_filter(truth, 2.0) * 400 + 10
    return clean.astype(np.float32), rng.poisson(clean).astype(np.float32)


def _wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_manifest_is_valid_and_declares_everything():
    import npe2

    pm = npe2.PluginManifest.from_distribution("fluorecon")
    ids = {c.id for c in pm.contributions.commands}
    assert {"fluorecon.denoise_widget", "fluorecon.deconvolve_widget", "fluorecon.learn_widget",
            "fluorecon.trust_widget", "fluorecon.tasks_widget", "fluorecon.get_reader", "fluorecon.sample_2d"} <= ids
    for c in pm.contributions.commands:  # every python_name resolves
        mod, _, attr = c.python_name.partition(":")
        assert hasattr(__import__(mod, fromlist=[attr]), attr), c.python_name
    assert len(pm.contributions.widgets) == 5
    assert pm.contributions.sample_data and pm.contributions.readers


def test_wrong_dimensionality_shows_message_not_traceback(make_napari_viewer, qtbot, monkeypatch):
    from fluorecon.napari import _widgets as W

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((2, 3, 16, 16), np.float32), name="4d")
    shown = []
    monkeypatch.setattr(W, "show_error", lambda msg: shown.append(msg))
    for cls in (W.DenoiseWidget, W.DeconvolveWidget, W.LearnWidget):
        w = cls(viewer)
        w.layer_w.value = layer
        assert w.run() is None  # nothing started
        assert w.worker is None
    assert len(shown) == 3 and all("4 dimensions" in m and "2D (YX) or 3D (ZYX)" in m for m in shown)
    rgb = viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb", rgb=True)
    w = W.DenoiseWidget(viewer)
    w.layer_w.value = rgb
    w.run()
    assert "RGB" in shown[-1]


def test_layer_image_keeps_scale():
    from fluorecon.napari._widgets import layer_image

    class L:
        name, rgb, multiscale = "x", False, False
        data = np.ones((5, 6, 7))
        scale = np.array([0.3, 0.1, 0.1])

    d, axes, vs = layer_image(L())
    assert axes == "ZYX" and vs == (0.3, 0.1, 0.1) and d.dtype == np.float32



def test_progress_and_cancel_in_worker_thread(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import DenoiseWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="img", scale=(0.2, 0.2))
    w = DenoiseWidget(viewer)
    w.layer_w.value = layer
    seen = []

    def slow(progress):
        for i in range(200):
            progress(i / 200, f"step {i}")
            seen.append(i)
            time.sleep(0.01)
        return np.zeros((32, 32)), {"method": "never"}

    w.compute = slow
    worker = w.run()
    assert worker is not None and w.cancel_btn.enabled and not w.run_btn.enabled
    qtbot.waitUntil(lambda: w.progress.value > 0, timeout=5000)  # progress reached the GUI thread
    w.cancel()
    _wait(qtbot, w, 10_000)
    assert w.status.value == "cancelled"
    assert len(seen) < 200  # the computation stopped early
    assert len(viewer.layers) == 1  # no output layer from a cancelled run
    assert w.run_btn.enabled and not w.cancel_btn.enabled


def test_denoise_widget_on_real_layer(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import DenoiseWidget

    clean, noisy = _blobs()
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="cells", scale=(0.1, 0.1), translate=(5.0, 2.0))
    w = DenoiseWidget(viewer)
    w.layer_w.value = layer
    assert "auto" in w.method.choices
    w.method.value = "tv"  # "auto" calibrates every method (slow); the widget passes the choice through
    w.budget.value = 3.0
    w.run()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    out = viewer.layers[-1]
    assert out.name == "cells denoised (tv)"
    assert tuple(out.scale) == (0.1, 0.1) and tuple(out.translate) == (5.0, 2.0)
    assert out.data.shape == noisy.shape
    # the denoised layer is closer to the noiseless image than the input (independent ground truth)
    assert np.mean((out.data - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


def _two_blurred_beads() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two point sources blurred by a Gaussian PSF (σ 2 px) on a background of 1: (truth, psf, blurred)."""
    truth = np.zeros((64, 64), np.float32)
    truth[20, 20] = truth[40, 44] = 100.0
    psf = np.zeros((15, 15), np.float32)
    psf[7, 7] = 1
    psf = ndimage.gaussian_filter(psf, 2.0)
    blurred = ndimage.convolve(truth, psf / psf.sum(), mode="constant") + 1.0
    return truth, psf, blurred


def test_deconvolve_widget_with_psf_layer(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import DeconvolveWidget

    truth, psf, blurred = _two_blurred_beads()
    viewer = make_napari_viewer()
    layer = viewer.add_image(blurred, name="beads", scale=(0.1, 0.1))
    psf_layer = viewer.add_image(psf, name="psf")
    w = DeconvolveWidget(viewer)
    w.reset_choices()
    w.layer_w.value = layer
    w.psf_source.value = "layer"
    w.psf_layer.value = psf_layer
    w.iterations.value = 30
    w.run()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    out = viewer.layers[-1]
    assert out.name.startswith("beads deconvolved")
    assert tuple(out.scale) == (0.1, 0.1)
    # RL sharpens the beads: the peak rises well above the blurred peak
    assert out.data[20, 20] > 2 * blurred[20, 20]


def test_deconvolve_widget_psf_layer_missing(make_napari_viewer, monkeypatch):
    from fluorecon.napari import _widgets as W

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="img")
    shown = []
    monkeypatch.setattr(W, "show_error", shown.append)
    w = W.DeconvolveWidget(viewer)
    w.layer_w.value = layer
    w.psf_source.value = "layer"
    w.psf_layer.value = None
    assert w.run() is None
    assert "no PSF layer" in shown[-1]


def test_trust_widget_adds_maps(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import TrustWidget

    clean, noisy = _blobs(seed=3)
    viewer = make_napari_viewer()
    rec = viewer.add_image(noisy, name="rec", scale=(0.2, 0.2))
    bad = clean.copy()
    bad[20:30, 20:30] += 300.0  # a "hallucinated" structure the recording does not support
    pred = viewer.add_image(bad, name="pred", scale=(0.2, 0.2))
    w = TrustWidget(viewer)
    w.reset_choices()
    w.layer_w.value = rec
    w.prediction_w.value = pred
    w.use_shift.value = False
    w.use_uncertainty.value = False
    w.run()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    cons = viewer.layers["pred consistency"]
    assert tuple(cons.scale) == (0.2, 0.2)
    inside = float(np.mean(cons.data[21:29, 21:29]))
    outside = float(np.mean(cons.data[40:, 40:]))
    assert inside > outside + 1.0  # the inconsistent square lights up
    assert w.warnings_label.value != "no warnings"


def test_reader_opens_ome_zarr_with_scale(tmp_path):
    from fluorecon.io import write_image
    from fluorecon.napari._reader import get_reader

    a = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    p = tmp_path / "restored.ome.zarr"
    write_image(p, a, axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    reader = get_reader(str(p))
    assert reader is not None
    (data, kw, kind), = reader(str(p))
    assert kind == "image" and np.allclose(np.asarray(data), a)
    assert tuple(kw["scale"]) == pytest.approx((0.3, 0.1, 0.1))
    assert get_reader(str(tmp_path / "x.png")) is None


def test_sample_data_via_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("fluorecon", "widefield-2d")
    names = [layer.name for layer in viewer.layers]
    assert "2D widefield (observed)" in names and "2D specimen (truth)" in names
    obs = viewer.layers["2D widefield (observed)"]
    assert obs.data.ndim == 2 and obs.scale[-1] == pytest.approx(0.065)
    assert obs.data.std() > 0


def _tiny_bundle(tmp_path):
    import torch

    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer

    torch.manual_seed(0)
    clean, noisy = _blobs(seed=5)
    b = Bundle(UNet(dim=2, depth=1, width=4).eval(), PercentileNormalizer().fit(noisy), config={"axes": "YX", "scheme": "n2v"})
    return b.save(tmp_path / "bundle"), noisy


def test_learn_widget_predicts_with_bundle(make_napari_viewer, qtbot, tmp_path):
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.predict import predict
    from fluorecon.napari._widgets import LearnWidget

    path, noisy = _tiny_bundle(tmp_path)
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="cells", scale=(0.15, 0.15))
    w = LearnWidget(viewer)
    w.layer_w.value = layer
    w.mode.value = "predict with a bundle"
    w.bundle.value = str(path)
    w.run()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    out = viewer.layers["cells restored (bundle)"]
    assert tuple(out.scale) == (0.15, 0.15)
    ref = predict(Bundle.load(path), noisy, "YX", tile="auto", device="cpu")
    np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-4)
    assert out.metadata["fluorecon_bundle"] is not None  # the Trust widget can use it


def test_learn_widget_missing_bundle_message(make_napari_viewer, monkeypatch, tmp_path):
    from fluorecon.napari import _widgets as W

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="img")
    shown = []
    monkeypatch.setattr(W, "show_error", shown.append)
    w = W.LearnWidget(viewer)
    w.layer_w.value = layer
    w.mode.value = "predict with a bundle"
    w.bundle.value = str(tmp_path)
    assert w.run() is None
    assert "no model bundle" in shown[-1]


def test_learn_widget_trains_on_image(make_napari_viewer, qtbot, tmp_path):
    from fluorecon.napari._widgets import LearnWidget

    clean, noisy = _blobs(seed=6)
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="cells", scale=(0.1, 0.1))
    w = LearnWidget(viewer)
    w.layer_w.value = layer
    w.budget.value = 2.0
    w.save_to.value = str(tmp_path / "saved")
    w.run()
    _wait(qtbot, w, 120_000)
    assert w.last_error is None, w.last_error
    out = viewer.layers["cells denoised (self-supervised)"]
    assert out.data.shape == noisy.shape and np.isfinite(out.data).all()
    assert (tmp_path / "saved" / "bundle.json").exists()


@pytest.mark.parametrize("name", ["stack.ome.tif", "stack.tif"])
def test_reader_opens_tiff_with_scale(tmp_path, name):
    """File > Open of an OME or ImageJ TIFF keeps its voxel sizes as the layer scale (issue 14)."""
    import tifffile

    from fluorecon.io import write_image
    from fluorecon.napari._reader import get_reader

    a = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    p = tmp_path / name
    if name.endswith(".ome.tif"):
        write_image(p, a, axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    else:  # ImageJ hyperstack metadata, as Fiji writes it
        tifffile.imwrite(p, a, imagej=True, resolution=(10.0, 10.0), metadata={"spacing": 0.3, "unit": "um",
                                                                              "axes": "ZYX"})
    reader = get_reader(str(p))
    assert reader is not None
    (data, kw, kind), = reader(str(p))
    assert kind == "image" and np.allclose(np.asarray(data), a)
    assert tuple(kw["scale"]) == pytest.approx((0.3, 0.1, 0.1))


# ------------------------------------------------------------------------------- front door, second round
def test_deconvolve_widget_defaults_match_cli_and_fields_follow_the_psf_source(make_napari_viewer):
    from fluorecon.napari._widgets import DeconvolveWidget
    from fluorecon.tasks.deconvolve import DeconvolveParams

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((8, 32, 32), np.float32), name="stack", scale=(0.3, 0.1, 0.1))
    w = DeconvolveWidget(viewer)
    d = DeconvolveParams()
    assert (w.iterations.value, w.method.value, w.background.value) == (d.iterations, d.method, str(d.background))
    assert (w.na.value, w.wavelength.value, w.ri.value) == pytest.approx((d.na, d.wavelength, d.refractive_index))
    # the pixel sizes come from the layer's scale (set by the fluorecon reader from the file)
    assert (w.pixel_z.value, w.pixel_xy.value) == pytest.approx((0.3, 0.1))
    assert not w.na.native.isHidden() and w.psf_layer.native.isHidden()
    w.psf_source.value = "layer"  # a measured PSF: the optics fields do not apply
    assert w.na.native.isHidden() and w.wavelength.native.isHidden() and w.ri.native.isHidden()
    assert w.pixel_xy.native.isHidden() and not w.psf_layer.native.isHidden()
    w.psf_source.value = "widefield model"
    assert not w.na.native.isHidden() and not w.pixel_z.native.isHidden()


def test_deconvolve_widget_refuses_a_model_psf_without_voxel_size(make_napari_viewer, monkeypatch):
    from fluorecon.napari import _widgets as W

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="no scale")  # scale (1, 1): File > Open by builtins
    shown = []
    monkeypatch.setattr(W, "show_error", lambda msg: shown.append(msg))
    w = W.DeconvolveWidget(viewer)
    w.layer_w.value = layer
    assert w.run() is None and "voxel size is unknown" in shown[-1]
    w.pixel_xy.value = 0.065  # the user types the pixel size: now it runs
    w.prepare()
    assert w._scale == (0.065, 0.065)


def test_deconvolve_widget_uses_the_psf_layer_scale(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import DeconvolveWidget

    truth, psf, blurred = _two_blurred_beads()
    fine = np.zeros((31, 31), np.float32)  # the same PSF sampled twice as finely (0.05 µm)
    fine[15, 15] = 1
    fine = ndimage.gaussian_filter(fine, 4.0)
    viewer = make_napari_viewer()
    layer = viewer.add_image(blurred, name="beads", scale=(0.1, 0.1))
    outs = []
    for name, p, scale in (("psf", psf, (0.1, 0.1)), ("fine psf", fine, (0.05, 0.05))):
        psf_layer = viewer.add_image(p, name=name, scale=scale)
        w = DeconvolveWidget(viewer)
        w.reset_choices()
        w.layer_w.value = layer
        w.psf_source.value = "layer"
        w.psf_layer.value = psf_layer
        w.run()
        _wait(qtbot, w)
        assert w.last_error is None, w.last_error
        outs.append(np.array([lay for lay in viewer.layers if lay.name.startswith("beads deconvolved")][0].data))
    # resampled onto the image grid, the finely sampled PSF gives the same deconvolution
    assert np.corrcoef(outs[0].ravel(), outs[1].ravel())[0, 1] > 0.98
    assert outs[1][20, 20] > 2 * blurred[20, 20]


def test_learn_widget_live_progress_loss_curve_and_fast_cancel(make_napari_viewer, qtbot):
    from fluorecon.napari._widgets import LearnWidget

    _, noisy = _blobs(seed=7)
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="cells", scale=(0.1, 0.1))
    w = LearnWidget(viewer)
    w.layer_w.value = layer
    w.budget.value = 300.0
    w.run()
    qtbot.waitUntil(lambda: len(w.loss_curve.losses) >= 3, timeout=120_000)  # the curve grows step by step
    assert w.progress.value > 0 and "training: step" in w.status.value
    t0 = time.perf_counter()
    w.cancel()
    _wait(qtbot, w, 30_000)
    assert time.perf_counter() - t0 < 10.0  # within a step or two, not the 300 s budget
    assert w.last_error == "cancelled" and "cells denoised (self-supervised)" not in viewer.layers


def test_learn_widget_scheme_choice_and_bioimageio_export(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from fluorecon.napari import _widgets as W

    _, noisy = _blobs(seed=8)
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="cells", scale=(0.1, 0.1))
    w = W.LearnWidget(viewer)
    assert set(w.scheme.choices) >= {"auto", "n2v", "n2v2", "nb2nb"}
    assert not w.export_btn.enabled  # nothing to export before training
    w.layer_w.value = layer
    w.scheme.value = "n2v2"
    w.budget.value = 2.0
    w.run()
    _wait(qtbot, w, 120_000)
    assert w.last_error is None, w.last_error
    out = viewer.layers["cells denoised (self-supervised)"]
    assert out.metadata["fluorecon"]["scheme"] == "n2v2"
    assert w.loss_curve.losses and w.export_btn.enabled
    w.mode.value = "predict with a bundle"  # training fields hidden, bundle folder shown
    assert w.scheme.native.isHidden() and not w.bundle.native.isHidden()
    if not _has("bioimageio.spec"):
        pytest.skip("bioimage.io export needs fluorecon[bioimageio]")
    calls = []

    def fake_export(bundle, dest, **kw):  # the export itself is tested in tests/test_bioimageio.py
        calls.append((bundle, dest, kw))
        dest.write_bytes(b"PK")
        return dest

    import fluorecon.bioimageio as bio

    monkeypatch.setattr(bio, "export_bundle", fake_export)
    w.export_to.value = str(tmp_path / "model")
    assert w.export() == tmp_path / "model.zip"
    assert calls[0][0] is w.bundle_obj and (tmp_path / "model.zip").exists()


def test_fluorecon_becomes_the_default_ome_zarr_reader(make_napari_viewer, tmp_path):
    from napari.settings import get_settings

    from fluorecon.io import write_image
    from fluorecon.napari._widgets import DenoiseWidget

    viewer = make_napari_viewer()
    get_settings().plugins.extension2reader = {}
    DenoiseWidget(viewer)  # opening any fluorecon widget records the preference
    assert get_settings().plugins.extension2reader.get("*.ome.zarr") == "fluorecon"
    p = tmp_path / "restored.ome.zarr"
    write_image(p, np.ones((4, 16, 16), np.float32), axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    layers = viewer.open(str(p), plugin=None)  # as File > Open does: no dialog, our reader, with the voxel sizes
    assert layers[0].source.reader_plugin == "fluorecon", layers[0].source
    assert tuple(layers[0].scale) == pytest.approx((0.3, 0.1, 0.1))


def test_tasks_widget_hides_psf_model_fields_when_a_psf_layer_is_chosen(make_napari_viewer):
    from fluorecon.napari._task_widget import TaskWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((32, 32), np.float32), name="img", scale=(0.1, 0.1))
    psf = viewer.add_image(np.ones((5, 5), np.float32), name="psf", scale=(0.05, 0.05))
    w = TaskWidget(viewer, "deconvolve")
    hidden = {n: w.param_ws[n][0].native.isHidden() for n in ("na", "wavelength", "refractive_index", "psf_model",
                                                               "psf_voxel_size", "iterations")}
    assert hidden == {"na": False, "wavelength": False, "refractive_index": False, "psf_model": False,
                      "psf_voxel_size": True, "iterations": False}
    w.reset_choices()
    w.input_ws["psf"].value = psf  # a measured PSF: the optics no longer apply, its voxel size does
    assert w.param_ws["na"][0].native.isHidden() and w.param_ws["psf_model"][0].native.isHidden()
    assert not w.param_ws["psf_voxel_size"][0].native.isHidden() and not w.param_ws["iterations"][0].native.isHidden()
    w.input_ws["psf"].value = None
    assert not w.param_ws["na"][0].native.isHidden()


def test_widgets_compute_on_the_gpu_when_present(make_napari_viewer, monkeypatch, tmp_path):
    """Every hand-written widget asks for device "auto", which is CUDA when torch sees a GPU (issue 24)."""
    import torch

    import fluorecon.learn.predict as lp
    import fluorecon.learn.single_image as si
    import fluorecon.tasks.deconvolve as dt
    import fluorecon.tasks.denoise as nt
    from fluorecon.napari import _widgets as W
    from fluorecon.utils import resolve_device

    asked = {}

    def record(name):
        def fake(*a, **k):
            asked[name] = k.get("device")
            raise RuntimeError("recorded")
        return fake

    monkeypatch.setattr(nt, "denoise", record("denoise"))
    monkeypatch.setattr(dt, "deconvolve", record("deconvolve"))
    monkeypatch.setattr(si, "denoise_single_image", record("train"))
    monkeypatch.setattr(lp, "predict", record("predict"))
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="img", scale=(0.1, 0.1))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bundle.json").write_text("{}")
    monkeypatch.setattr("fluorecon.learn.bundle.Bundle.load", classmethod(lambda cls, p: None))
    for cls, mode in ((W.DenoiseWidget, None), (W.DeconvolveWidget, None), (W.LearnWidget, "train"),
                      (W.LearnWidget, "predict")):
        w = cls(viewer)
        w.layer_w.value = layer
        if mode == "predict":
            w.mode.value = next(c for c in w.mode.choices if c.startswith("predict"))
            w.bundle.value = str(tmp_path / "b")
        w.prepare()
        with pytest.raises(RuntimeError, match="recorded"):
            w.compute(lambda f, m="": None)
    assert asked == {"denoise": "auto", "deconvolve": "auto", "train": "auto", "predict": "auto"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_task_widgets_start_with_the_cli_defaults(make_napari_viewer):
    """GUI and CLI share one set of defaults: the task's Params (the CLI passes its defaults through unchanged)."""
    from pydantic import ValidationError

    from fluorecon.napari._task_widget import TaskWidget
    from fluorecon.tasks.registry import all_tasks

    viewer = make_napari_viewer()
    checked = []
    for task in all_tasks():
        try:
            defaults = task.Params()
        except ValidationError:  # a required parameter: no default to compare
            continue
        tw = TaskWidget(viewer, task)
        assert tw.params() == defaults, task.name
        checked.append(task.name)
    assert {"denoise", "deconvolve", "isotropic", "localize"} <= set(checked) and len(checked) >= 10
