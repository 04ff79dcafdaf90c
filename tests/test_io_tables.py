"""Localization tables: ThunderSTORM CSV round trip, clear errors, atomic writes, shared ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.io_tables import read_table, write_table
from fluorecon.tasks.contract import Table


def test_round_trip_and_column_order(tmp_path):
    rng = np.random.default_rng(0)
    cols = {"uncertainty [nm]": rng.uniform(5, 20, 5), "frame": np.arange(1, 6), "x [nm]": rng.uniform(0, 1e4, 5),
            "y [nm]": rng.uniform(0, 1e4, 5), "intensity [photon]": rng.uniform(100, 5000, 5), "custom": np.ones(5)}
    p = write_table(tmp_path / "locs.csv", Table(cols))
    header = p.read_text().splitlines()[0]
    assert header == '"id","frame","x [nm]","y [nm]","intensity [photon]","uncertainty [nm]","custom"'
    t = read_table(p)
    assert t["frame"].dtype == np.int64 and t["id"].tolist() == [1, 2, 3, 4, 5]
    for k, v in cols.items():
        np.testing.assert_allclose(t[k], v, rtol=1e-9)


def test_refuses_overwrite_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.csv"
    write_table(p, {"frame": [1], "x [nm]": [1.0], "y [nm]": [2.0]})
    with pytest.raises(FluoreconError, match="exists"):
        write_table(p, {"frame": [1], "x [nm]": [1.0], "y [nm]": [2.0]})
    write_table(p, {"frame": [2], "x [nm]": [1.0], "y [nm]": [2.0]}, overwrite=True)
    assert read_table(p)["frame"].tolist() == [2]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.csv"]
    with pytest.raises(FluoreconError, match="format"):
        write_table(tmp_path / "a.xyz", {"frame": [1], "x [nm]": [1.0], "y [nm]": [2.0]})


def test_missing_columns_are_named(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("frame,x [nm],intensity [photon]\n1,2.0,3.0\n")
    with pytest.raises(FluoreconError, match="'y \\[nm\\]'") as e:
        read_table(p)
    assert "x [nm]" in e.value.hint


def test_bad_values(tmp_path):
    p = tmp_path / "zero.csv"
    p.write_text("frame,x [nm],y [nm]\n0,1,2\n")
    with pytest.raises(FluoreconError, match="start at 1"):
        read_table(p)
    p.write_text("frame,x [nm],y [nm]\n1,abc,2\n")
    with pytest.raises(FluoreconError, match="non-numeric"):
        read_table(p)
    p.write_text("frame,x [nm],y [nm]\n1,2\n")
    with pytest.raises(FluoreconError, match="row 2"):
        read_table(p)
    with pytest.raises(FluoreconError, match="no table"):
        read_table(tmp_path / "missing.csv")


def test_parquet_needs_pyarrow_or_round_trips(tmp_path):
    t = {"frame": np.array([1, 2]), "x [nm]": np.array([1.0, 2.0]), "y [nm]": np.array([3.0, 4.0])}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(FluoreconError, match="pyarrow"):
            write_table(tmp_path / "t.parquet", t)
        return
    write_table(tmp_path / "t.parquet", t)
    assert read_table(tmp_path / "t.parquet")["y [nm]"].tolist() == [3.0, 4.0]


def test_reads_thunderstorm_ground_truth(shared_data):
    p = shared_data("deepstorm-simulated-smlm") / "positions_demo1.csv"
    t = read_table(p)
    assert len(t) == 4956 and t["frame"].min() == 1 and t["frame"].max() == 20
    assert {"sigma [nm]", "intensity [photon]", "offset [photon]", "bkgstd [photon]"} <= set(t.names)
