"""The Box 5 example runs end to end in its --quick setting and records what is needed to redo it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fluorecon.physics.glyphs import text_forward

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "box5_discovery.py"


def _diagnostics():
    spec = importlib.util.spec_from_file_location("box5_diagnostics", EXAMPLE.parent / "box5_diagnostics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def box5():
    spec = importlib.util.spec_from_file_location("box5_discovery", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_degradation_is_the_one_the_reader_test_proves_hard(box5):
    d = box5.DEGRADATION
    fw = text_forward()
    assert (d["blur_sigma_px"], d["peak_photons"], d["background_photons"]) == (2.5, 12.0, 2.0)
    assert fw.camera.photons == d["peak_photons"] and fw.camera.background == d["background_photons"]


def test_recordings_are_shared_between_conditions_and_seeds(box5):
    from fluorecon.physics.glyphs import GlyphGrid

    g = GlyphGrid()
    t1, x1 = box5.recordings("Witenagemot", 0, 3, g)
    _, x2 = box5.recordings("Witenagemot", 0, 3, g)
    _, x3 = box5.recordings("Witenagemot", 1, 3, g)
    assert np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    # the mean recording is the forward model's expected counts
    lam = text_forward().expected(t1)
    _, xs = box5.recordings("Witenagemot", 0, 300, g)
    assert abs(xs.mean() / lam.mean() - 1) < 0.02


def test_quick_run_writes_results_models_figure_and_provenance(box5, tmp_path):
    rc = box5.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "1", "--realisations", "4",
                    "--minutes-per-condition", "0.02"])
    assert rc == 0
    data = json.loads((tmp_path / "box5_results.json").read_text())
    assert set(data["conditions"]) == {"latin", "no_ae", "chinese", "mix"}
    for cond, r in data["conditions"].items():
        cer = np.asarray(r["cer"])
        assert cer.shape == (2, 2, 4) and np.all((cer >= 0) & (cer <= 2))
        for info in r["seeds"].values():
            w = tmp_path / "models" / info["weights"]

            assert box5.file_sha256(w) == info["weights_sha256"]
            assert info["training"]["stop"] in ("plateau", "budget") and info["training"]["curve"]
        srow = data["summary"][cond]
        assert srow["cer"]["ci95"][0] <= srow["cer"]["mean"] <= srow["cer"]["ci95"][1]
        assert r["verify"]["n"] == 4
    assert "minus_latin" in data["summary"]["no_ae"]
    table = (tmp_path / "box5_table.md").read_text().splitlines()
    assert len(table) == 2 + len(data["summary"])  # header, rule, one row per summary entry
    latin = next(line for line in table if line.startswith("| (a) English trigrams"))
    assert f"{data['summary']['latin']['cer']['mean']:.3f}" in latin
    # the exact (Viterbi) reference readers on the same recordings, paired with the networks of (a) and (b)
    assert {"exact_ml", "trigram_map_latin", "trigram_map_no_ae"} <= set(data["summary"])
    assert "minus_trigram_map_latin" in data["summary"]["latin"] and "minus_trigram_map_no_ae" in data["summary"]["no_ae"]
    assert np.asarray(data["common"]["reference_readers"]["exact_ml"]["cer"]).shape == (2, 4)
    # the diagnostics read the saved networks back (weights checked against their recorded hash)
    diag = _diagnostics()
    voc = diag.vocabulary_check("latin", 1, tmp_path / "models")
    assert set(voc["training_vocabulary"]["network"]) == {"0", "1"}
    assert all(0 <= v <= 2 for v in voc["unseen_test_words"]["network"].values())
    w = tmp_path / "models" / data["conditions"]["latin"]["seeds"]["0"]["weights"]
    w.write_bytes(w.read_bytes()[:-1] + b"x")
    with pytest.raises(SystemExit, match="differs"):
        diag.vocabulary_check("latin", 1, tmp_path / "models")
    # results saved before the reference readers existed get them on --assemble
    common_path = tmp_path / "box5__common.json"
    common = json.loads(common_path.read_text())
    del common["reference_readers"]
    common_path.write_text(json.dumps(common))
    assert box5.main(["--assemble", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "box5_results.json").read_text())
    assert again["common"]["reference_readers"]["exact_ml"]["cer"] == data["common"]["reference_readers"]["exact_ml"]["cer"]
    prov = data["provenance"]
    assert prov["command"].startswith("examples/box5_discovery.py --quick") and prov["seeds"] == [0, 1]
    assert len(data["conditions"]["latin"]["data"]["sha256"]) == 64
    from PIL import Image

    with Image.open(tmp_path / "box5_figure.png") as im:
        assert im.size[0] > 800 and im.size[1] > 300


def test_bad_arguments_exit_2(box5, tmp_path):
    with pytest.raises(SystemExit) as e:
        box5.main(["--quick", "--out", str(tmp_path), "--words", "Witenagemotxx"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        box5.main(["--quick", "--out", str(tmp_path), "--minutes-per-condition", "0"])
    assert e.value.code == 2


def _tiny_set(box5):
    from fluorecon.physics.glyphs import training_set

    clean, _ = training_set("latin", n_words=200, max_items=24, seed=0)
    return clean[:16], clean[16:]


def test_training_is_bit_identical_for_a_seed_and_step_count(box5):
    tr, val = _tiny_set(box5)
    a, ia = box5.train_condition(tr, val, dict(box5.QUICK), seed=3, cpu_seconds=0, max_steps=12, log=lambda *_: None)
    b, ib = box5.train_condition(tr, val, dict(box5.QUICK), seed=3, cpu_seconds=0, max_steps=12, log=lambda *_: None)
    assert ia["steps"] == ib["steps"] == 12 or ia["stop"] == ib["stop"] == "plateau"
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert np.array_equal(v.numpy(), w.numpy()), k


def test_plateau_criterion_stops_after_two_patience_windows(box5):
    tr, val = _tiny_set(box5)
    cfg = {**box5.QUICK, "lr": 0.0}  # nothing can improve after the first evaluation
    _, info = box5.train_condition(tr, val, cfg, seed=0, cpu_seconds=1e9, log=lambda *_: None)
    # first evaluation sets the best; `patience` more → lr drop; `patience` more → stop
    assert info["stop"] == "plateau" and info["lr_dropped"]
    assert info["steps"] == (1 + 2 * cfg["patience"]) * cfg["val_every"]


def test_degradation_options_change_the_recordings_and_are_recorded(box5, tmp_path):
    from fluorecon.physics.glyphs import GlyphGrid

    rc = box5.main(["--quick", "--out", str(tmp_path), "--conditions", "latin", "--seeds", "0",
                    "--realisations", "2", "--minutes-per-condition", "0.01", "--blur-sigma", "2.0",
                    "--photons", "20"])
    assert rc == 0
    common = json.loads((tmp_path / "box5__common.json").read_text())
    assert common["degradation"]["blur_sigma_px"] == 2.0 and common["degradation"]["peak_photons"] == 20.0
    prov = json.loads((tmp_path / "box5_results.json").read_text())["provenance"]
    assert prov["params"]["degradation"]["blur_sigma_px"] == 2.0
    # the saved recording is the first Poisson draw of the σ = 2 px, 20-photon forward model
    truth = GlyphGrid().render(box5.WORDS[0], width=box5.WIDTH)
    lam = np.asarray(text_forward(2.0, 20.0, 2.0).expected(truth), np.float64)
    x = np.random.default_rng([box5.EVAL_SEED, 0]).poisson(lam, size=(1, *lam.shape))[0]
    with np.load(tmp_path / "box5__common.npz") as z:
        np.testing.assert_allclose(z["degraded"], (x - 2.0) / 20.0, atol=1e-6)
    # the documented protocol is back for the next caller
    assert (box5.DEGRADATION["blur_sigma_px"], box5.DEGRADATION["peak_photons"]) == (2.5, 12.0)


@pytest.mark.parametrize("bad", [["--blur-sigma", "0"], ["--photons", "-3"]])
def test_bad_degradation_exits_2(box5, tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        box5.main(["--quick", "--out", str(tmp_path), *bad])
    assert e.value.code == 2


def test_plateau_rule_counts_a_slow_steady_decline_as_progress(box5):
    rule = box5.Plateau(0.01, 3)
    # 0.5 % per evaluation: never 1 % on the *last evaluation*, but 1 % on the last progress point every
    # other evaluation, so it is no plateau
    assert all(rule.update(1.0 * 0.995**k) == "continue" for k in range(40))
    flat = box5.Plateau(0.01, 2)
    assert [flat.update(v) for v in (1.0, 1.0, 1.0, 0.999, 0.999)] == ["continue", "continue", "drop", "continue", "stop"]


def test_diagnostics_grid_reads_clean_recordings_perfectly_and_restores_the_protocol(box5):
    diag = _diagnostics()
    res = diag.grid_check(2, sigmas=(1.5,), photons=(3000.0,))
    row = res["rows"]["sigma=1.5,photons=3000"]
    # at 3,000 photons the recordings are nearly noise-free: every reader must read the truth
    assert all(row[k]["cer"] == 0 for k in ("generic_reader", "exact_ml", "trigram_map_latin"))
    # the prior without a/e resists the a/e of the test words, but clean evidence outweighs it
    assert row["trigram_map_no_ae"]["cer"] <= 0.05
    assert diag.b5.DEGRADATION["blur_sigma_px"] == 2.5


def test_diagnostics_without_a_saved_run_exit_2(tmp_path):
    diag = _diagnostics()
    for argv in (["vocabulary", "--models", str(tmp_path / "models")], ["grid", "--realisations", "0"]):
        with pytest.raises(SystemExit) as e:
            diag.main(argv)
        assert e.value.code == 2
    assert not any(tmp_path.iterdir())  # nothing written
