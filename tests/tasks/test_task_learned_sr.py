"""Learned super-resolution tasks (anna-palm, cross-modality): quality against the simulators' truth,
the forward models, saved-model reuse and bad input (exit 2 from the generated CLI)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage
from skimage.draw import disk, line
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData, write_image
from fluorecon.physics.palm_pairs import palm_pair
from fluorecon.tasks.learned_sr import invented_structures, palm_target, rl_channel
from fluorecon.tasks.registry import get

runner = CliRunner()


def _mae_after_fit(pred: np.ndarray, target: np.ndarray) -> float:
    a = np.vstack([pred.ravel(), np.ones(pred.size)]).T
    coef, *_ = np.linalg.lstsq(a, target.ravel(), rcond=None)
    return float(np.abs(a @ coef - target.ravel()).mean())


def test_anna_palm_beats_the_naive_k_frame_rendering_on_held_out_fields(tmp_path):
    task = get("anna-palm")
    p = palm_pair((12, 12), n_frames=200, k_frames=20, labels_per_um2=250, seed=123)   # held out (task: seed 0)
    params = {"steps": 30, "patch": 32, "width": 8, "depth": 1, "batch_size": 4, "fields": 3, "frames": 20,
              "movie_frames": 200, "labels_per_um2": 250, "loss": "l1"}
    res = task(ImageData(p.sparse, "YX", (0.025, 0.025), {}), **params)
    target = palm_target(p.dense)

    def corr(a):
        return float(np.corrcoef(a.ravel(), target.ravel())[0, 1])

    assert corr(res.image) > corr(p.sparse) + 0.05
    assert res.forward.expected(res.image).shape == p.sparse.shape
    assert res.params_used["training"]["steps"] == 30 and res.warnings
    # the trained model is reused from --save-model's bundle, without training
    d = res.extras["bundle"].save(tmp_path / "m")
    again = task(ImageData(p.sparse, "YX", (0.025, 0.025), {}), inputs={"model": d}, **params)
    assert np.allclose(again.image, res.image, atol=1e-5) and "training" not in again.params_used
    wf = ImageData(p.widefield, "YX", (0.1, 0.1), {})
    with pytest.raises(FluoreconError, match="input"):                       # 1-channel model, 2 inputs
        task(ImageData(p.sparse, "YX", (0.025, 0.025), {}), inputs={"model": d, "widefield": wf}, **params)


def test_anna_palm_with_widefield_reports_the_consistency_check():
    task = get("anna-palm")
    ex = task.example()
    res = task(ex["inputs"]["image"], inputs={"widefield": ex["inputs"]["widefield"]}, **ex["params"])
    assert res.image.shape == (32, 32)
    assert "widefield_check" in res.params_used or any("widefield" in w for w in res.warnings)


def test_anna_palm_bad_input():
    task = get("anna-palm")
    p = palm_pair((8, 8), n_frames=50, k_frames=5, seed=0)
    img = ImageData(p.sparse, "YX", (0.025, 0.025), {})
    fast = {"steps": 1, "patch": 32, "width": 4, "depth": 1, "batch_size": 1, "fields": 1}
    with pytest.raises(ValidationError, match="more than the movie length"):
        task(img, frames=600, movie_frames=500, **fast)
    other = ImageData(p.widefield[:6], "YX", (0.1, 0.1), {})                # not the same field
    with pytest.raises(FluoreconError, match="not the same field"):
        task(img, inputs={"widefield": other}, frames=5, movie_frames=50, **fast)
    with pytest.raises(FluoreconError, match="pixel size"):
        task(ImageData(p.sparse, "YX", None, {}), frames=5, movie_frames=50, **fast)
    with pytest.raises(FluoreconError, match="whole multiple"):
        task(ImageData(p.sparse, "YX", (0.03, 0.03), {}), frames=5, movie_frames=50, **fast)


def test_cli_exit_2_for_k_beyond_the_movie_and_a_mismatched_widefield(tmp_path):
    p = palm_pair((8, 8), n_frames=50, k_frames=5, seed=0)
    write_image(tmp_path / "s.tif", p.sparse, axes="YX", voxel_size=(0.025, 0.025))
    write_image(tmp_path / "w.tif", p.widefield[:, :5], axes="YX", voxel_size=(0.1, 0.1))
    base = ["anna-palm", str(tmp_path / "s.tif"), "-o", str(tmp_path / "o.tif"), "--steps", "1", "--patch", "32",
            "--width", "4", "--depth", "1", "--fields", "1"]
    r = runner.invoke(app, [*base, "--frames", "60", "--movie-frames", "50"])
    assert r.exit_code == 2, r.output
    r = runner.invoke(app, [*base, "--frames", "5", "--movie-frames", "50", "--widefield", str(tmp_path / "w.tif")])
    assert r.exit_code == 2 and "same field" in r.output, r.output


def test_cross_modality_forward_model_predicts_the_low_na_recording():
    task = get("cross-modality")
    ex = task.example()
    img = ex["inputs"]["image"]
    res = task(img, **ex["params"])
    assert res.image.shape == img.data.shape and res.image.dtype == np.float32
    fwd = res.forward
    # the forward model applied to the noiseless high-NA truth gives the low-NA recording (minus offset)
    from fluorecon.physics.palm_pairs import cross_modality_pair

    low, high, _ = cross_modality_pair((32, 32), pixel_size=0.05, seed=0, offset=100.0)
    resid = (low - 100.0) - fwd.expected(high)
    assert abs(float(resid.mean())) < 0.1 * float(high.mean()) + 1.0
    assert float(resid.std()) < 2.0 * np.sqrt(float(high.mean()) + 1.0) + 1.0     # Poisson-sized residual
    with pytest.raises(ValidationError, match="below"):
        task(img, na_low=1.4, na_high=1.2, **{k: v for k, v in ex["params"].items() if k != "offset"})
    with pytest.raises(FluoreconError, match="undersamples"):
        task(ImageData(img.data, "YX", (0.5, 0.5), {}), **ex["params"])


def test_cross_modality_l1_sharpens_towards_the_high_na_truth():
    from fluorecon.physics.palm_pairs import cross_modality_pair

    low, high, _ = cross_modality_pair((64, 64), pixel_size=0.05, seed=77, offset=100.0, kind="filaments")
    res = get("cross-modality")(ImageData(low, "YX", (0.05, 0.05), {}), steps=40, patch=32, width=8, depth=1,
                                batch_size=4, fields=3, offset=100.0, loss="l1", phantom="filaments")

    def corr(a):
        return float(np.corrcoef(a.ravel(), high.ravel())[0, 1])

    assert corr(res.image) > corr(low)


def test_rl_channel_deconvolves_the_blur_between_the_modalities():
    from fluorecon.physics.palm_pairs import cross_modality_pair, modality_sigmas

    low, high, _ = cross_modality_pair((64, 64), pixel_size=0.05, seed=5, offset=0.0, kind="filaments",
                                       photons=1000.0)
    s_lo, s_hi = modality_sigmas("na", pixel_size=0.05)
    r = rl_channel(low, s_lo, s_hi)
    # closer to the noiseless high-NA image than the recording is (both after a gain/offset fit)
    assert _mae_after_fit(r, high) < 0.7 * _mae_after_fit(low, high)


def test_cross_modality_physics_generator_corrects_rl_and_is_reused_from_its_bundle(tmp_path):
    from fluorecon.physics.palm_pairs import cross_modality_pair

    low, high, _ = cross_modality_pair((64, 64), pixel_size=0.05, seed=78, offset=100.0, kind="filaments")
    task = get("cross-modality")
    img = ImageData(low, "YX", (0.05, 0.05), {})
    params = {"steps": 30, "patch": 32, "width": 8, "depth": 1, "batch_size": 4, "fields": 3, "offset": 100.0,
              "loss": "l1", "phantom": "filaments"}
    res = task(img, physics=True, **params)
    assert res.params_used["physics"] is True
    assert res.extras["bundle"].model.config()["in_channels"] == 2

    def corr(a):
        return float(np.corrcoef(a.ravel(), high.ravel())[0, 1])

    assert corr(res.image) > corr(low)
    d = res.extras["bundle"].save(tmp_path / "m")
    again = task(img, inputs={"model": d}, **params)     # the bundle says it is physics-informed
    assert again.params_used["physics"] is True
    assert np.allclose(again.image, res.image, atol=1e-4 * float(res.image.max()))


# --------------------------------------------------------------------------- the invented-structure counter
def _lines(shape=(96, 96)):
    t = np.zeros(shape)
    for r0, c0, r1, c1 in ((10, 5, 12, 90), (30, 10, 85, 40), (60, 50, 62, 92)):
        rr, cc = line(r0, c0, r1, c1)
        t[rr, cc] = 1.0
    return t


def test_invented_structures_ignores_blur_gain_offset_and_small_shifts():
    truth = _lines()
    for pred in (ndimage.gaussian_filter(truth, 1.5) * 7 + 3,       # the target's resolution, other units
                 ndimage.gaussian_filter(truth, 3.0),                # much blurrier: wider, not new
                 np.roll(ndimage.gaussian_filter(truth, 1.0), 1, axis=1),   # off by one pixel
                 ndimage.gaussian_filter(truth * (np.arange(96) < 50)[None], 1.0)):  # half missing: not invented
        lab, n = invented_structures(pred, truth)
        assert n == 0 and not lab.any()
    hot = ndimage.gaussian_filter(truth, 1.0)
    hot[80, 80] = hot.max()                                          # one hot pixel of the lines' brightness
    assert invented_structures(hot, truth)[1] == 0


def test_invented_structures_counts_a_blob_a_spur_and_a_bridged_gap():
    truth = _lines()
    pred = ndimage.gaussian_filter(truth, 1.0)
    blob = np.zeros_like(truth, bool)
    blob[disk((75, 75), 3, shape=truth.shape)] = True
    spur = np.zeros_like(truth, bool)
    rr, cc = line(12, 60, 26, 60)                                    # 14 px off the first line
    spur[rr, cc] = True
    bad = pred + ndimage.gaussian_filter((blob | spur).astype(float), 1.0)
    lab, n = invented_structures(bad, truth)
    assert n == 2 and (lab[blob] > 0).any() and (lab[spur] > 0).any()
    assert set(np.unique(lab[blob])) - {0} != set(np.unique(lab[spur])) - {0}
    # a 20-px gap cut into the truth, filled in the prediction: one invented bridge at the gap
    gapped = truth.copy()
    gapped[:, 40:60] = np.where(np.arange(96)[:, None] < 20, 0, gapped[:, 40:60])
    lab, n = invented_structures(pred, gapped)
    assert n == 1 and lab[10:14, 48:52].any()
    with pytest.raises(FluoreconError, match="one shape"):
        invented_structures(pred, truth[:50])
