"""Localization tables on disk: ThunderSTORM-compatible CSV (and Parquet when pyarrow is installed).

CSV columns follow ThunderSTORM: ``id``, ``frame`` (numbered from 1), ``x [nm]``, ``y [nm]``,
optional ``z [nm]``, ``sigma [nm]``, ``intensity [photon]``, ``offset [photon]``,
``bkgstd [photon]``, ``uncertainty [nm]`` — any further numeric columns are kept. Coordinates are in
nm from the **top-left corner** of the image (the centre of the first pixel is at half a pixel).
Quoted headers (ThunderSTORM writes ``"x [nm]"``) are accepted. Writes are atomic (temporary file
+ rename) and refuse to replace an existing file unless ``overwrite``.

Examples
--------
>>> import tempfile, pathlib
>>> from fluorecon.tasks.contract import Table
>>> p = pathlib.Path(tempfile.mkdtemp()) / "locs.csv"
>>> _ = write_table(p, Table({"frame": np.array([1, 2]), "x [nm]": np.array([10.5, 20.0]),
...                       "y [nm]": np.array([5.0, 6.0])}))
>>> p.read_text().splitlines()[0]
'"id","frame","x [nm]","y [nm]"'
>>> t = read_table(p)
>>> t.names, t["frame"].tolist(), t["x [nm]"].tolist()
(['id', 'frame', 'x [nm]', 'y [nm]'], [1, 2], [10.5, 20.0])
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.tasks.contract import Table
from fluorecon.utils import to_json

__all__ = ["REQUIRED", "THUNDERSTORM_COLUMNS", "read_table", "write_table"]

REQUIRED = ("frame", "x [nm]", "y [nm]")
THUNDERSTORM_COLUMNS = ("id", "frame", "x [nm]", "y [nm]", "z [nm]", "sigma [nm]", "intensity [photon]",
                        "offset [photon]", "bkgstd [photon]", "uncertainty [nm]")
_INT_COLUMNS = {"id", "frame", "detections"}
_ALIASES = {"x_nm": "x [nm]", "y_nm": "y [nm]", "z_nm": "z [nm]", "x": "x [nm]", "y": "y [nm]", "z": "z [nm]",
            "uncertainty_xy [nm]": "uncertainty [nm]"}


def _check(cols: dict[str, np.ndarray], required: tuple[str, ...], path: Any) -> None:
    missing = [c for c in required if c not in cols]
    if missing:
        raise FluoreconError(f"{path}: the table lacks the required column(s) {', '.join(repr(m) for m in missing)}",
                             hint=f"it has {', '.join(repr(c) for c in cols) or 'no columns'}; a localization "
                                  f"table needs {', '.join(repr(r) for r in required)} (ThunderSTORM names)")


def read_table(path: str | os.PathLike, *, required: tuple[str, ...] = REQUIRED) -> Table:
    """Read a localization table (``.csv`` ThunderSTORM-style, ``.parquet`` with pyarrow).

    Parameters
    ----------
    path : path-like
    required : tuple of str
        Columns that must be present (named in the error when missing).

    Returns
    -------
    Table
        ``frame``/``id`` as int64, other columns float64; ``meta["path"]``.
    """
    p = Path(path)
    if not p.is_file():
        raise FluoreconError(f"no table file {p}", hint="check the path")
    if p.suffix.lower() == ".parquet":
        pq = _pyarrow()
        tab = pq.read_table(p)
        cols = {name: np.asarray(tab.column(name).to_numpy()) for name in tab.column_names}
        meta = {k.decode(): v.decode() for k, v in (tab.schema.metadata or {}).items()}
    else:
        text = p.read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        rows = [r for r in rows if r and not r[0].startswith("#")]
        if not rows:
            raise FluoreconError(f"{p}: the table is empty", hint="a header line with column names is needed")
        header = [h.strip() for h in rows[0]]
        body = rows[1:]
        if any(len(r) != len(header) for r in body):
            bad = next(i for i, r in enumerate(body) if len(r) != len(header))
            raise FluoreconError(f"{p}: row {bad + 2} has {len(body[bad])} values, the header {len(header)} columns")
        cols = {}
        for k, name in enumerate(header):
            vals = [r[k] for r in body]
            try:
                cols[name] = np.asarray(vals, np.float64) if vals else np.zeros(0)
            except ValueError:
                raise FluoreconError(f"{p}: column {name!r} has non-numeric values") from None
        meta = {}
        side = _sidecar(p)
        if side.is_file():
            try:
                meta = dict(json.loads(side.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                raise FluoreconError(f"{side} is not valid JSON", hint="delete the sidecar or fix it") from None
    cols = {_ALIASES.get(k, k): v for k, v in cols.items()}
    _check(cols, required, p)
    for k in list(cols):
        if k in _INT_COLUMNS:
            v = cols[k]
            if len(v) and (not np.all(np.isfinite(v)) or np.any(v != np.round(v))):
                raise FluoreconError(f"{p}: column {k!r} must hold whole numbers")
            cols[k] = v.astype(np.int64)
        else:
            cols[k] = cols[k].astype(np.float64)
    if "frame" in cols and len(cols["frame"]) and cols["frame"].min() < 1:
        raise FluoreconError(f"{p}: frame numbers start at 1 in a ThunderSTORM table, found {cols['frame'].min()}",
                             hint="add 1 to a 0-based frame column")
    meta["path"] = str(p)
    return Table(cols, meta)


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise FluoreconError("Parquet tables need pyarrow", hint="pip install pyarrow, or use .csv") from None
    return pq


def write_table(path: str | os.PathLike, table: Table | dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write a table atomically as ThunderSTORM CSV (or Parquet by suffix).

    Known columns come first in ThunderSTORM's order; an ``id`` column (1..N) is added when absent.
    Integers are written as integers, floats with up to 7 significant digits beyond the point
    (``%.6g``-like but exact for nm values below 10⁷).

    Returns the written path.
    """
    p = Path(path)
    cols = dict(table.columns if isinstance(table, Table) else table)
    cols = {k: np.asarray(v) for k, v in cols.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    if any(len(v) != n for v in cols.values()):
        raise FluoreconError("table columns have different lengths")
    if p.exists() and not overwrite:
        raise FluoreconError(f"{p} exists", hint="pass overwrite=True (CLI --overwrite) or choose another name")
    if p.is_dir():
        raise FluoreconError(f"{p} is a folder, not a table file")
    if "id" not in cols:
        cols = {"id": np.arange(1, n + 1), **cols}
    order = [c for c in THUNDERSTORM_COLUMNS if c in cols] + [c for c in cols if c not in THUNDERSTORM_COLUMNS]
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        pq = _pyarrow()
        import pyarrow as pa

        tab = pa.table({c: cols[c] for c in order})
        with atomic_path(p) as tmp:
            pq.write_table(tab, tmp)
        return p
    if suffix not in (".csv", ".txt"):
        raise FluoreconError(f"unknown table format {p.suffix!r}", hint="use .csv (or .parquet with pyarrow)")
    buf = io.StringIO()
    buf.write(",".join(f'"{c}"' for c in order) + "\n")
    fmt = []
    for c in order:
        v = cols[c]
        fmt.append("%d" if (c in _INT_COLUMNS or np.issubdtype(v.dtype, np.integer)) else "%.10g")
    if n:
        data = np.column_stack([cols[c].astype(np.float64) if f != "%d" else cols[c].astype(np.int64).astype(object)
                                for c, f in zip(order, fmt, strict=True)])
        np.savetxt(buf, data, fmt=fmt, delimiter=",")
    with atomic_path(p) as tmp:
        Path(tmp).write_text(buf.getvalue(), encoding="utf-8")
    _write_meta(p, table, overwrite)
    return p


def _sidecar(p: Path) -> Path:
    return p.with_name(p.name + ".json")


def _write_meta(p: Path, table: Table | dict[str, Any], overwrite: bool) -> None:
    """The table's metadata (field of view, pixel size, camera...) in ``<name>.csv.json``: CSV has no place for it."""
    meta = {k: v for k, v in (table.meta.items() if isinstance(table, Table) else ()) if k != "path"}
    if not meta:
        return
    side = _sidecar(p)
    if side.exists() and not overwrite:
        raise FluoreconError(f"{side} exists", hint="pass overwrite=True (CLI --overwrite) or choose another name")
    with atomic_path(side) as tmp:
        Path(tmp).write_text(json.dumps(to_json(meta), indent=1, sort_keys=True) + "\n", encoding="utf-8")
