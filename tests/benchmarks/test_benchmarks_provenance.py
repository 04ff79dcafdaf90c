"""benchmarks/_provenance.py: hashes against hashlib, the commit against the .git files."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("_provenance", "_provenance")


def test_record_holds_command_data_hashes_seeds_machine_and_load(tmp_path):
    p = _module()
    f = tmp_path / "data.bin"
    f.write_bytes(b"fluorecon" * 1000)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    rec = p.provenance(seeds=[0, 1, 2], data={"file": f, "arr": a, "dir": tmp_path}, params={"steps": 5},
                       argv=["benchmarks/x.py", "--seeds", "0", "1", "2"])
    assert rec["command"] == "benchmarks/x.py --seeds 0 1 2"
    assert rec["data"]["file"]["sha256"] == hashlib.sha256(b"fluorecon" * 1000).hexdigest()
    assert rec["data"]["arr"]["sha256"] == array_hash(a) and rec["data"]["arr"]["shape"] == [3, 4]
    assert rec["data"]["dir"]["n_files"] == 1
    assert rec["seeds"] == [0, 1, 2] and rec["params"] == {"steps": 5}
    assert rec["machine"]["cpu_count"] >= 1 and len(rec["load_average_start"]) == 3
    assert len(rec["source_sha256"]) == 64
    rec = p.finish(rec, 0.0)
    assert "date_utc_end" in rec and rec["wall_s"] > 0
    json.dumps(rec)  # JSON-ready


def test_git_commit_is_read_from_the_git_files(tmp_path):
    p = _module()
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    sha = "a" * 40
    (git / "refs" / "heads" / "main").write_text(sha + "\n")
    assert p.git_commit(tmp_path) == sha
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert p.git_commit(tmp_path) == "b" * 40
    (git / "HEAD").write_text("c" * 40)  # detached
    assert p.git_commit(tmp_path) == "c" * 40
    assert p.git_commit(tmp_path / "nowhere") is None


def test_bundle_entry_hashes_every_weights_file_of_a_saved_bundle(tmp_path):
    import torch

    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer

    p = _module()
    torch.manual_seed(0)
    path = Bundle(UNet(dim=2, depth=1, width=4), PercentileNormalizer(lo=[1.0], hi=[99.0])).save(tmp_path / "b")
    entry = p.bundle_entry(path)
    assert entry["bundle"] == "b"
    assert entry["weights_sha256"] == {"weights.safetensors":
                                       hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()}
    with pytest.raises(FileNotFoundError, match="safetensors"):
        p.bundle_entry(tmp_path)


def test_finish_dates_a_record_assembled_at_the_end_from_the_run_start():
    """Scripts build their record after the run: `finish` must not report the end as the start."""
    mod = _module()
    t_start = time.time() - 120.0  # a two-minute run
    rec = mod.provenance(argv=["bench.py"])  # created now, i.e. at the run's end
    out = mod.finish(rec, t_start)
    start = datetime.fromisoformat(out["date_utc"]).timestamp()
    end = datetime.fromisoformat(out["date_utc_end"]).timestamp()
    assert abs(start - t_start) <= 1.0 and abs((end - start) - out["wall_s"]) <= 1.5
    # a record stamped at the start is left alone
    rec2 = mod.provenance(argv=["bench.py"])
    assert mod.finish(rec2, time.time())["date_utc"] == rec2["date_utc"]
