"""benchmarks/corrections.py: provenance of the simulated shadows, per-seed rows, the failure gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

from fluorecon.physics.occlusion import simulate_shadows
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("corrections")


def test_inpaint_two_seeds_hashed_scenes_and_worst_cases(tmp_path, monkeypatch):
    mod = _module()
    monkeypatch.setitem(mod.INPAINT_SIZES, "quick", ((48, 48), 3))  # tiny planes, 3 training steps
    mod.main(["--quick", "--parts", "inpaint", "--seeds", "0", "1", "--out", str(tmp_path / "c")])
    res = json.loads((tmp_path / "c.json").read_text())
    rows = res["inpaint"]["per_seed"]
    assert [r["seed"] for r in rows] == [0, 1]
    prov = res["provenance"]
    assert prov["seeds"] == [0, 1] and res["provenance_by_part"]["inpaint"] == prov
    for seed in (0, 1):  # scene seeds 100 + seed, rebuilt here
        sim = simulate_shadows((48, 48), n_absorbers=6, seed=100 + seed)
        assert prov["data"][f"inpaint_scene{100 + seed}_truth"]["sha256"] == array_hash(sim["truth"])
        assert prov["data"][f"inpaint_scene{100 + seed}_recording"]["sha256"] == array_hash(sim["recording"])
    d = [r["learned_given"] - r["classical_given"] for r in rows]
    assert res["inpaint"]["summary"]["learned_minus_classical_given_db"]["mean"] == pytest.approx(np.mean(d), abs=0.006)
    for method in ("classical_given", "learned_given"):
        g = res["galleries"][f"inpaint_{method}"]
        assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
        worst = min(rows, key=lambda r: r[method])
        assert g["cases"][0]["seed"] == worst["seed"] and g["cases"][0]["score"] == pytest.approx(worst[method])


def test_bad_part_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _module().main(["--parts", "inpaint,nope", "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err


def test_leica_rescore_reads_the_run_being_written(tmp_path, shared_data):
    """`--parts leica,leica_rescore --out X` must re-score X's spectra, not benchmarks/corrections.json's."""
    mod = _module()
    lib = Path(shared_data("poissonnmf-leica-spectral")) / "reference-spectra"
    bands = []
    for name in ("Alexa_Fluor_488.emn", "Alexa_Fluor_532.emn", "Ethidium_bromide.emn"):
        d = np.loadtxt(lib / name)
        # band integral by hand (trapezoid on the file's own samples), independent of band_integrate
        row = []
        for lo, hi in mod.LEICA_BANDS:
            m = (d[:, 0] >= lo) & (d[:, 0] <= hi)
            row.append(float(np.trapezoid(d[m, 1], d[m, 0])) if m.sum() > 1 else 0.0)
        bands.append(row)
    stored = {"leica": {"binned": 1, "ours": {"spectra": bands}, "sklearn": {"spectra": bands[::-1]}}}
    (tmp_path / "c.json").write_text(json.dumps(stored))
    mod.main(["--parts", "leica_rescore", "--out", str(tmp_path / "c")])
    res = json.loads((tmp_path / "c.json").read_text())["leica_rescore"]
    # the stored spectra are the library itself (up to the integration rule) → near-zero angles for both,
    # whatever their order; a re-score of another run would not give this
    for who in ("ours", "sklearn"):
        assert res[who]["library_as_is"]["mean_deg"] < 3.0, res[who]["library_as_is"]
