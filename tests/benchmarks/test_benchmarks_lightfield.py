"""benchmarks/lightfield.py: provenance (truths by hash), per-seed rows and worst-case galleries, quick sim;
benchmarks/peers/pyolaf_run.py: pyolaf's own projections reproduce the operator and its transpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]
PYOLAF_RUN = ROOT / "benchmarks" / "peers" / "pyolaf_run.py"
# the peer needs its own venv (benchmarks/peers/README.md); PYOLAF_PYTHON points at another one
PYOLAF_PYTHON = Path(os.environ.get("PYOLAF_PYTHON", Path.home() / ".cache/peer-pyolaf/bin/python"))
needs_pyolaf = pytest.mark.skipif(not PYOLAF_PYTHON.exists(), reason=f"no pyolaf venv at {PYOLAF_PYTHON}")
# Runs pyolaf_run.main with pyolaf's two projection functions wrapped by call counters, so the test can see
# that the projections really ran inside pyolaf (not in a re-implementation).
COUNTING = """
import json, runpy, sys
import pyolaf.project as p
calls = {"forward": 0, "backward": 0}
def wrap(f, key):
    def g(*a, **k):
        calls[key] += 1
        return f(*a, **k)
    return g
p.LFM_forwardProject = wrap(p.LFM_forwardProject, "forward")
p.LFM_backwardProject = wrap(p.LFM_backwardProject, "backward")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
print(json.dumps(calls))
"""


def _dense_operator(kernels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``A`` as a dense matrix, straight from the kernels' definition: a voxel at pixel ``(m·N + a, l·N + b)`` of
    depth ``z`` adds ``kernels[z, a, b]`` with the window's centre lenslet ``R`` over lenslet ``(m, l)``; light
    falling outside the sensor is lost. Columns in ``(z, y, x)`` order."""
    nd, n, _, k, _ = kernels.shape
    r = (k // n - 1) // 2
    ny, nx = shape
    a_mat = np.zeros((ny * nx, nd * ny * nx))
    for z in range(nd):
        for vy in range(ny):
            for vx in range(nx):
                (m, a), (el, b) = divmod(vy, n), divmod(vx, n)
                img = np.zeros((ny + 2 * k, nx + 2 * k))
                y0, x0 = (m - r) * n + k, (el - r) * n + k
                img[y0:y0 + k, x0:x0 + k] = kernels[z, a, b]
                a_mat[:, (z * ny + vy) * nx + vx] = img[k:k + ny, k:k + nx].ravel()
    return a_mat


def _tiny_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Nnum 3, window radius 1 lenslet, 2 depths, 4×5 lenslets: random asymmetric kernels catch any flip."""
    rng = np.random.default_rng(7)
    kernels = rng.random((2, 3, 3, 9, 9)).astype(np.float32)
    kernels /= kernels.sum(axis=(3, 4), keepdims=True)
    shape = (12, 15)
    return kernels, rng.random((2, *shape)).astype(np.float32), rng.random(shape).astype(np.float32) + 0.5, shape


def _run_peer(tmp_path: Path, args: list[str], **arrays) -> tuple[dict, dict]:
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(src, **arrays)
    r = subprocess.run([str(PYOLAF_PYTHON), "-c", COUNTING, str(PYOLAF_RUN), *args, str(src), str(dst)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), dict(np.load(dst))


def test_dense_reference_is_fluorecons_operator():
    """The reference below reads the kernels as fluorecon's LightFieldOperator does (so both peers run one A)."""
    kernels, vol, lf, shape = _tiny_case()
    optics = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 3, osr=1)
    op = LightFieldOperator(optics, [-1.0, 1.0], shape, kernels=kernels)
    a_mat = _dense_operator(kernels, shape)
    np.testing.assert_allclose(op.forward(vol).ravel(), a_mat @ vol.ravel(), rtol=1e-4, atol=1e-6)


@needs_pyolaf
def test_pyolaf_projections_equal_the_dense_operator(tmp_path):
    kernels, vol, lf, shape = _tiny_case()
    calls, out = _run_peer(tmp_path, ["--project"], kernels=kernels, lightfield=lf, volume=vol)
    assert calls == {"forward": 1, "backward": 1}          # both projections ran inside pyolaf
    a_mat = _dense_operator(kernels, shape)
    np.testing.assert_allclose(out["forward"].ravel(), a_mat @ vol.ravel(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["backward"].ravel(), a_mat.T @ lf.ravel(), rtol=1e-4, atol=1e-6)


@needs_pyolaf
def test_pyolaf_rl_equals_dense_rl(tmp_path):
    kernels, _, lf, shape = _tiny_case()
    calls, out = _run_peer(tmp_path, [], kernels=kernels, lightfield=lf, iterations=3)
    assert calls == {"forward": 3, "backward": 4}          # sensitivity + one back projection per iteration
    a_mat = _dense_operator(kernels, shape)
    d = lf.ravel().astype(np.float64)
    sens = np.clip(a_mat.T @ np.ones_like(d), 1e-6, None)
    x = np.full(a_mat.shape[1], d.sum() / sens.sum())
    for _ in range(3):
        x = x * (a_mat.T @ (d / np.clip(a_mat @ x, 1e-6, None))) / sens
    np.testing.assert_allclose(out["volume"].ravel(), x, rtol=1e-3)
    assert out["cpu_s_per_iteration"].shape == (3,)


@needs_pyolaf
def test_pyolaf_run_bad_input_exits_2(tmp_path):
    src = tmp_path / "in.npz"
    np.savez(src, kernels=np.zeros((1, 3, 3, 9, 9), np.float32), lightfield=np.zeros((10, 9), np.float32),
             iterations=2)
    r = subprocess.run([str(PYOLAF_PYTHON), str(PYOLAF_RUN), str(src), str(tmp_path / "out.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a positive multiple of Nnum=3" in r.stderr


def _beads(shape, seed):
    """The benchmark's bead volume, rebuilt from its definition: 12 unit voxels, 6 px from the lateral edges."""
    vol = np.zeros(shape, np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(12):
        vol[rng.integers(shape[0]), rng.integers(6, shape[1] - 6), rng.integers(6, shape[2] - 6)] = 1.0
    return vol


def test_quick_sim_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "lf.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lightfield.py"), "sim", "--quick", "--seeds", "0",
                    "1", "--out", str(out), "--figures", str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    sim = json.loads(out.read_text())["sim"]
    prov = sim["provenance"]
    entry = prov["data"]["truth_beads_seed1"]
    assert entry["sha256"] == array_hash(_beads(tuple(entry["shape"]), seed=2))   # volumes: seed s + 1
    assert prov["seeds"] == [0, 1] and "--seeds 0 1" in prov["command"]
    assert sorted({r["seed"] for r in sim["rows"]}) == [0, 1]
    beads = sim["summary"]["beads@2000"]
    assert beads["seeds"] == [0, 1] and beads["learned_minus_rl_psnr"]["ci95"] is not None
    scores = [r["rl_psnr"] for r in sim["rows"]]
    gal = sim["galleries"]["rl"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(scores)


@needs_pyolaf
def test_bench_peer_runs_pyolaf_and_agrees(tmp_path):
    """The ``peer`` part end to end on a tiny configuration: pyolaf's RL volume matches fluorecon's."""
    mod = load_benchmark("lightfield")
    optics = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 3, osr=1)
    mod.PEER_CONFIGS = [("tiny", optics, [-1.0, 1.0], (12, 12), 2)]
    mod.OUT = tmp_path / "lf.json"
    mod.bench_peer(str(PYOLAF_PYTHON))
    peer = json.loads(mod.OUT.read_text())["peer"]
    row = peer["rows"][0]
    assert row["volume_correlation"] > 0.9999 and row["cpu_s_per_iteration_pyolaf_algorithm"] > 0
    assert "LFM_backwardProject" in row["pyolaf_projectors"] and "LFM_backwardProject" in peer["note"]
