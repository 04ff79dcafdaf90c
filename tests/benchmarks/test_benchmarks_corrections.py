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
