"""Provenance record for benchmark and example results: enough to re-derive every number.

``provenance(...)`` returns a JSON-ready dict with the command line, the code state (git commit read
from ``.git`` without running git, plus a SHA-256 over the package sources so that uncommitted edits
show), the data (``fluorecon.utils.array_hash`` for arrays, streamed SHA-256 for files), the seeds,
the machine (CPU, cores, threads, library versions), the UTC date and the load average at the start and
(with ``finish``) at the end.

Examples
--------
>>> import numpy as np
>>> p = provenance(seeds=[0, 1], data={"phantom": np.zeros(3, np.float32)}, argv=["bench.py", "--quick"])
>>> p["command"], p["seeds"], len(p["data"]["phantom"]["sha256"])
('bench.py --quick', [0, 1], 64)
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fluorecon"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Streamed SHA-256 of a file (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit, read from ``.git`` (a file read, not a git command); None outside a clone."""
    git = root / ".git"
    if git.is_file():  # a worktree: ".git" holds "gitdir: <path>"
        git = Path(git.read_text().split(":", 1)[1].strip())
    head = git / "HEAD"
    if not head.exists():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref:"):
        return ref
    name = ref.split(":", 1)[1].strip()
    bases = [git]
    if (git / "commondir").exists():  # linked worktrees keep refs in the common folder
        common = Path((git / "commondir").read_text().strip())
        bases.append(common if common.is_absolute() else git / common)
    for base in bases:
        f = base / name
        if f.exists():
            return f.read_text().strip()
        packed = base / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + name):
                    return line.split()[0]
    return None


def source_hash(src: Path = SRC) -> str:
    """SHA-256 over the package's ``*.py`` files (path + bytes, sorted): changes with any edit."""
    h = hashlib.sha256()
    for f in sorted(src.rglob("*.py")):
        h.update(str(f.relative_to(src)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# Most scripts assemble their record after the run; the stamp taken when a script imports this module (its first
# seconds) stands in for the start's date and load (see ``finish``).
_IMPORTED = {"t": time.time(), "date_utc": datetime.now(UTC).isoformat(timespec="seconds"), "load": _load()}
_IMPORT_TOLERANCE_S = 60.0


def _data_entry(value: Any) -> dict:
    if isinstance(value, str | Path):
        p = Path(value)
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file())
            h = hashlib.sha256()
            for q in files:
                h.update(str(q.relative_to(p)).encode())
                h.update(file_sha256(q).encode())
            return {"kind": "folder", "name": p.name, "n_files": len(files), "sha256": h.hexdigest()}
        return {"kind": "file", "name": p.name, "bytes": p.stat().st_size, "sha256": file_sha256(p)}
    a = np.asarray(value)
    return {"kind": "array", "shape": list(a.shape), "dtype": str(a.dtype), "sha256": array_hash(a)}


def provenance(*, seeds: Sequence[int] | None = None, data: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, argv: Sequence[str] | None = None) -> dict:
    """Everything needed to re-run a benchmark: command, code, data hashes, seeds, machine, date, load.

    Parameters
    ----------
    seeds : sequence of int, optional
    data : mapping, optional
        Name → array (hashed with ``array_hash``), file or folder (SHA-256 of the bytes). Record data by
        hash, never by local path only: paths differ between machines, hashes do not.
    params : mapping, optional
        Hyperparameters (anything JSON-friendly).
    argv : sequence of str, optional
        The command line (default ``sys.argv``).
    """
    import torch

    args = list(sys.argv if argv is None else argv)
    if args:
        try:
            args[0] = str(Path(args[0]).resolve().relative_to(ROOT))
        except ValueError:
            pass
    return {
        "command": shlex.join(args),
        "git_commit": git_commit(),
        "source_sha256": source_hash(),
        "data": {k: _data_entry(v) for k, v in (data or {}).items()},
        "seeds": [int(s) for s in seeds] if seeds is not None else None,
        "params": dict(params or {}),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                    "cuda": torch.cuda.is_available(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": _load(),
    }


def bundle_entry(path: str | Path) -> dict:
    """A saved model bundle by hash: SHA-256 of each weights file (``*.safetensors``), the part that a
    deterministic re-training must reproduce bit for bit (the bundle's JSON also holds dates).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "weights.safetensors").write_bytes(b"w")
    >>> bundle_entry(d)["weights_sha256"]["weights.safetensors"][:12]
    '50e721e49c01'
    """
    p = Path(path)
    files = sorted(p.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {p}")
    return {"bundle": p.name, "weights_sha256": {f.name: file_sha256(f) for f in files}}


def finish(record: dict, t_start_wall: float | None = None) -> dict:
    """Add the end time and load average (call just before writing the results).

    With ``t_start_wall`` (``time.time()`` at the start of the measured run), a record created later than that start
    — assembled at the end — gets the start's date instead of its own, and the load sampled when the script imported
    this module when that was within a minute of the start (else ``None``: not sampled).

    Examples
    --------
    >>> import time
    >>> rec = provenance(argv=["bench.py"])
    >>> rec["date_utc"] = "2099-01-01T00:00:00+00:00"  # as if assembled long after the start
    >>> out = finish(rec, time.time() - 5)
    >>> out["date_utc"] < out["date_utc_end"], out["wall_s"] >= 5
    (True, True)
    """
    now = time.time()
    record["date_utc_end"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["load_average_end"] = _load()
    if t_start_wall is not None:
        record["wall_s"] = round(now - t_start_wall, 1)
        created = datetime.fromisoformat(record["date_utc"]).timestamp() if record.get("date_utc") else now
        if created - t_start_wall > 1.0:
            record["date_utc"] = datetime.fromtimestamp(t_start_wall, UTC).isoformat(timespec="seconds")
            near = abs(_IMPORTED["t"] - t_start_wall) <= _IMPORT_TOLERANCE_S
            record["load_average_start"] = _IMPORTED["load"] if near else None
            record["start_stamp"] = ("record assembled at the end: date = the run's start; load sampled at import, "
                                     f"{t_start_wall - _IMPORTED['t']:.0f} s before the start" if near else
                                     "record assembled at the end: date = the run's start; start load not sampled")
    return record
