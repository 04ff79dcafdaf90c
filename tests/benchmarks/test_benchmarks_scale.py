"""benchmarks/scale.py: the provenance fingerprint of a generated volume equals the volume written to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr
from _bench import load_benchmark

from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("scale")


def test_first_chunk_fingerprint_is_what_make_volume_writes(tmp_path):
    mod = _module()
    path = tmp_path / "v.ome.zarr"
    mod.make_volume(path, (8, 64, 64), (8, 32, 32))
    written = np.asarray(zarr.open_group(str(path), mode="r")["0"][:8, :32, :32])
    assert written.std() > 0  # a real synthetic volume, not zeros
    assert array_hash(mod.first_chunk((8, 64, 64), (8, 32, 32))) == array_hash(written.astype(np.float32))
    (name,) = mod.VOLUMES
    assert array_hash(mod.VOLUMES[name]) == array_hash(written.astype(np.float32))


def test_record_says_deterministic_with_its_data_seed(tmp_path):
    out = tmp_path / "scale.json"
    _module().main(["--quick", "--skip", "big,fit,sched,learned,speedup", "--out", str(out)])
    prov = json.loads(out.read_text())["provenance"]
    assert prov["seeds"] == [0] and "data seed 0" in prov["deterministic"]
    assert prov["params"]["skipped"] == ["big", "fit", "learned", "sched", "speedup"]
    assert "--quick" in prov["command"] and len(prov["source_sha256"]) == 64
