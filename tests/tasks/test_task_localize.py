"""Tasks `localize` and `render`: registry, results, forward model, learned methods, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.smlm import assess
from fluorecon.io import ImageData
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.smlm import Blinking, SMLMCamera, simulate_movie
from fluorecon.tasks.contract import Table
from fluorecon.tasks.registry import get

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAM = {"baseline": 100.0, "gain": 0.5, "read_noise": 1.5}




def _movie(n=20, size=24, density=0.5, seed=0):
    cam = SMLMCamera(**CAM)
    frames, truth = simulate_movie(n, (size, size), 100.0, density=density, psf=130.0, camera=cam, background=20.0,
                                   kinetics=Blinking(on_time=2, off_time=10, photons=2000), seed=seed)
    return ImageData(frames, "TYX", (0.1, 0.1), {}), truth


def test_registered_and_described():
    loc, ren = get("localize"), get("render")
    d = loc.describe()
    assert d["inputs"][0]["name"] == "movie" and [o["kind"] for o in d["outputs"]] == ["table", "image"]
    assert d["params"]["gain"]["unit"] == "ADU/e-" and d["params"]["pixel_size"]["unit"] == "nm"
    assert ren.describe()["inputs"][0]["kind"] == "table"


def test_example_runs_and_forward_reproduces_movie():
    task = get("localize")
    ex = task.example(0)
    res = task(ex["inputs"]["movie"], **ex["params"])
    assert res.main == "localizations" and isinstance(res.image, Table) and len(res.image) > 0
    assert res.outputs["rendering"].ndim == 2 and res.voxel_size["rendering"] == (0.02, 0.02)
    assert res.params_used["pixel_size_nm"] == 100.0  # from the movie's metadata
    e = res.forward.expected(res)
    movie = ex["inputs"]["movie"].data
    assert e.shape == movie.shape
    chi2 = ((movie - e) ** 2 / res.forward.variance(e)).mean()
    assert 0.7 < chi2 < 1.5  # the localizations explain the recording down to the noise
    assert res.to_dict()["forward"]["kind"] == "smlm-localizations"


def test_localize_accuracy_and_post_processing():
    img, truth = _movie(40, 32, 0.2)
    res = get("localize")(img, **CAM, psf_sigma=130.0)
    m = assess(res.image, truth)
    assert m["jaccard"] > 0.75 and m["rmse_lateral"] < 25  # short on-times: many dim partial frames in the truth
    res2 = get("localize")(img, **CAM, psf_sigma=130.0, merge=True, max_uncertainty=40.0)
    assert len(res2.image) < len(res.image) and "detections" in res2.image.names


def test_forward_flags_a_missed_emitter():
    img, truth = _movie(6, 24, 0.5, seed=2)
    res = get("localize")(img, **CAM, psf_sigma=130.0)
    cols = dict(res.image.columns)
    k = int(np.argmax(cols["intensity [photon]"]))
    f, y, x = int(cols["frame"][k]) - 1, int(cols["y [nm]"][k] // 100), int(cols["x [nm]"][k] // 100)
    full = res.forward.expected(cols)
    dropped = res.forward.expected({c: np.delete(v, k) for c, v in cols.items()})
    z_full = (img.data[f] - full[f]) / np.sqrt(res.forward.variance(full[f]))
    z_drop = (img.data[f] - dropped[f]) / np.sqrt(res.forward.variance(dropped[f]))
    win = (slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
    assert z_drop[win].mean() > 5 and abs(z_full[win].mean()) < 2


def test_decode_train_save_reload(tmp_path):
    img, _ = _movie(6, 24, 1.0)
    task = get("localize")
    res = task(img, method="decode", **CAM, psf_sigma=130.0, steps=3, photons=2000.0, background=20.0)
    assert res.params_used["training"]["steps"] == 3 and "probability" in res.image.names
    res.extras["bundle"].save(tmp_path / "model")
    res2 = task(img, method="decode", **CAM, psf_sigma=130.0, inputs={"model": tmp_path / "model"})
    np.testing.assert_allclose(res2.outputs["rendering"], res.outputs["rendering"], atol=1e-5)
    (tmp_path / "model" / "weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(FluoreconError, match="sha256"):
        task(img, method="decode", **CAM, psf_sigma=130.0, inputs={"model": tmp_path / "model"})


def test_deepstorm_runs():
    img, _ = _movie(4, 16, 1.0)
    res = get("localize")(img, method="deepstorm", **CAM, psf_sigma=130.0, steps=2)
    assert res.main == "localizations" and res.extras["bundle"].kind == "deepstorm"


def test_bad_input():
    task = get("localize")
    img, _ = _movie(1, 16, 0.5)
    with pytest.raises(FluoreconError, match="one frame|1$|has 1"):
        task(img, method="decode", **CAM, psf_sigma=130.0, steps=1)
    with pytest.raises(ValueError, match="gain"):
        task(img, baseline=100, gain=0.0, psf_sigma=130.0)
    with pytest.raises(FluoreconError, match="pixel size"):
        task(ImageData(img.data, "TYX", None, {}), **CAM, psf_sigma=130.0)
    psf = ImageData(gaussian_psf((5, 15, 15), 1.5), "ZYX", None, {})
    with pytest.raises(FluoreconError, match="pixel size"):
        task(img, **CAM, inputs={"psf": psf})
    res = task(img, **CAM, inputs={"psf": psf}, psf_voxel_size=87.0)
    assert res.params_used["psf_sigma_nm"] == pytest.approx(1.5 * 87.0, rel=0.05)


def test_render_task_fov_and_frc():
    task = get("render")
    ex = task.example(0)
    res = task(inputs=ex["inputs"], **ex["params"])
    assert res.image.shape == (100, 100) and res.image.sum() == 400
    assert res.voxel_size["image"] == (0.02, 0.02) and "frc_resolution_nm" in res.params_used
    bad = Table({"frame": np.array([1]), "x [nm]": np.array([2500.0]), "y [nm]": np.array([10.0])},
                {"fov_nm": [2000.0, 2000.0]})
    with pytest.raises(FluoreconError, match="outside the field of view"):
        task(inputs={"table": bad})
    with pytest.raises(FluoreconError, match="'y \\[nm\\]'"):
        task(inputs={"table": Table({"x [nm]": np.array([1.0])})})


def test_deepstorm_simulated_data(shared_data):
    """Third-party ThunderSTORM simulation: the coordinate convention agrees (no bias) on matched emitters."""
    from fluorecon.io import read_image
    from fluorecon.io_tables import read_table

    d = shared_data("deepstorm-simulated-smlm")
    movie = read_image(d / "ArtificialDataset_demo1.tif")
    truth = read_table(d / "positions_demo1.csv")
    res = get("localize")(ImageData(movie.data, "TYX", None, {}), pixel_size=100.0, baseline=0.0, gain=1.0,
                          read_noise=0.0, psf_sigma=110.0)
    m = assess(res.image, truth)
    assert m["precision"] > 0.9 and abs(m["bias_x"]) < 5 and abs(m["bias_y"]) < 5


def test_train_localizer_cli(tmp_path):
    from typer.testing import CliRunner

    from fluorecon.cli import app

    runner = CliRunner()
    args = ["train-localizer", "-o", str(tmp_path / "m"), "--pixel-size", "100", "--psf-sigma", "130",
            "--photons", "2000", "--background", "20", "--steps", "1", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m" / "localizer.json").is_file()
    r = runner.invoke(app, args)  # exists, no --overwrite
    assert r.exit_code == 2
    r = runner.invoke(app, ["train-localizer", "-o", str(tmp_path / "n"), "--psf-sigma", "130", "--steps", "1"])
    assert r.exit_code == 2 and "pixel size" in r.output


def test_empty_movie_gives_empty_table_through_the_task_and_render():
    """Nothing to detect: an empty table with the columns of a non-empty run, a blank rendering, clear warnings."""
    cam = SMLMCamera(**CAM)
    blank = ImageData(cam.simulate(np.full((6, 24, 24), 20.0), seed=0), "TYX", (0.1, 0.1), {})
    opts = {**CAM, "psf_sigma": 130.0, "drift": True, "merge": True, "max_deviance": 3.0, "min_photons": 10.0}
    full = get("localize")(_movie(6, 24, 0.5)[0], **opts)
    res = get("localize")(blank, **opts)
    assert len(full.image) > 0 and len(res.image) == 0 and res.image.names == full.image.names
    assert res.params_used["n_localizations"] == 0 and res.params_used["mean_uncertainty_nm"] is None
    assert any("table is empty" in w for w in res.warnings)  # drift correction skipped, with the reason
    assert res.outputs["rendering"].shape == (240, 240) and not res.outputs["rendering"].any()
    e = res.forward.expected(res)  # no emitters: the recording's background is unexplained, not a crash
    assert e.shape == blank.data.shape
    img = get("render")(inputs={"table": res.image}, pixel_size=20.0)
    assert img.image.shape == (120, 120) and not img.image.any()


@pytest.mark.parametrize("kind", ["decode", "deepstorm"])
def test_learned_localizer_empty_result_has_the_columns_of_a_non_empty_one(kind):
    from fluorecon.learn.smlm_nets import SimConfig, train_localizer

    cam = SMLMCamera(**CAM)
    model = train_localizer(kind, SimConfig(camera=cam.model_dump(mode="json")), steps=1, size=16, batch=2)
    frames = cam.simulate(np.full((4, 16, 16), 20.0), seed=0)
    some, none = model.localize(frames, threshold=1e-3), model.localize(frames, threshold=1e9)
    assert len(some["frame"]) > 0 and all(len(v) == 0 for v in none.values())
    assert {k: v.dtype for k, v in none.items()} == {k: v.dtype for k, v in some.items()}
    with pytest.raises(FluoreconError, match="no frames"):
        model.localize(frames[:0])
