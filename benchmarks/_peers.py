"""Locate (and optionally build) the peer tools' virtual environments for side-by-side benchmarks.

Peers (careamics, ...) conflict with our stack, so each lives in its own venv built by the scripts in
``../shared/peers/`` (see its README). Benchmarks call them as subprocesses; they are never imported.

    from _peers import careamics_python, run_careamics_n2v
    py = careamics_python(build=False)          # None when the venv is absent
    res = run_careamics_n2v(py, "noisy.tif", "out.tif", seconds=120)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

CAREAMICS_ENV = "FLUORECON_PEER_CAREAMICS"  # override: path of the venv (or of its python)
DEFAULT_CAREAMICS_VENV = Path.home() / ".cache" / "peer-careamics"


def peers_dir() -> Path | None:
    """``../shared/peers`` (next to the shared data), or None."""
    try:
        from fluorecon.datasets import shared_data_root
    except ImportError:  # benchmarks run with the project venv; be tolerant anyway
        shared_data_root = None
    root = shared_data_root() if shared_data_root else None
    cands = [root.parent / "peers"] if root is not None else []
    cands.append(Path(__file__).resolve().parents[2] / "shared" / "peers")
    for c in cands:
        if c.is_dir():
            return c
    return None


def _venv_python(venv: Path) -> Path:
    return venv if venv.name.startswith("python") else venv / "bin" / "python"


def _imports(python: Path, module: str) -> bool:
    try:
        return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def peer_python(env_var: str, default_venv: Path, module: str, setup: Path | None = None, build: bool = False,
                log: str | Path | None = None) -> Path | None:
    """Python of a peer venv that imports ``module`` (``$env_var`` overrides the venv); with ``build=True`` run
    the ``setup`` script (``setup VENV``) when it is missing. None when there is none."""
    venv = Path(os.environ.get(env_var, default_venv))
    py = _venv_python(venv)
    if py.exists() and _imports(py, module):
        return py
    if not build or setup is None or not setup.exists():
        return None
    with open(log or os.devnull, "a") as fh:
        subprocess.run(["bash", str(setup), str(venv)], stdout=fh, stderr=fh, check=False)
    return py if py.exists() and _imports(py, module) else None


def _last_json(stdout: str) -> dict:
    """The last line of a peer runner's stdout that parses as JSON (runners may print progress before it)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {}


def careamics_python(build: bool = False, log: str | Path | None = None) -> Path | None:
    """Python of the careamics peer venv; with ``build=True`` run ``careamics-setup.sh`` if missing."""
    pdir = peers_dir()
    return peer_python(CAREAMICS_ENV, DEFAULT_CAREAMICS_VENV, "careamics",
                       pdir / "careamics-setup.sh" if pdir is not None else None, build, log)


def run_careamics_n2v(python: Path, noisy: str | Path, out: str | Path, seconds: float = 120.0, seed: int = 0,
                      workdir: str | Path | None = None) -> dict:
    """Run ``careamics_n2v.py`` (the peer's own N2V defaults); returns its JSON plus ``wall_s``."""
    pdir = peers_dir()
    if pdir is None:
        raise RuntimeError("../shared/peers not found")
    t0 = time.perf_counter()
    p = subprocess.run([str(python), str(pdir / "careamics_n2v.py"), str(noisy), str(out), "--seconds", str(seconds),
                        "--seed", str(seed)], capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not Path(out).exists():
        raise RuntimeError(f"careamics failed (rc {p.returncode}): {p.stderr[-2000:]}")
    info = _last_json(p.stdout)
    info["wall_s"] = wall
    return info


REDLIONFISH_ENV = "FLUORECON_PEER_REDLIONFISH"  # override: path of the venv (or of its python)
DEFAULT_REDLIONFISH_VENV = Path.home() / ".cache" / "peer-redlionfish"
_LOCAL_PEERS = Path(__file__).resolve().parent / "peers"


def redlionfish_python(build: bool = False, log: str | Path | None = None) -> Path | None:
    """Python of the RedLionfish peer venv; with ``build=True`` run ``peers/redlionfish_setup.sh`` if missing."""
    return peer_python(REDLIONFISH_ENV, DEFAULT_REDLIONFISH_VENV, "RedLionfishDeconv",
                       _LOCAL_PEERS / "redlionfish_setup.sh", build, log)


def run_redlionfish(python: Path, data: str | Path, psf: str | Path, out: str | Path, iterations: int = 10,
                    repeat: int = 3, workers: int = 1) -> dict:
    """Run ``peers/redlionfish_run.py`` (RedLionfish's CPU RL); returns its JSON plus ``wall_s``."""
    t0 = time.perf_counter()
    p = subprocess.run([str(python), str(_LOCAL_PEERS / "redlionfish_run.py"), str(data), str(psf), str(out),
                        "--iterations", str(iterations), "--repeat", str(repeat), "--workers", str(workers)],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or not Path(out).exists():
        raise RuntimeError(f"redlionfish failed (rc {p.returncode}): {p.stderr[-2000:]}")
    info = _last_json(p.stdout)
    info["wall_s"] = wall
    return info
