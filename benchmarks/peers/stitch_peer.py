"""Run a stitching peer (m2stitch or multiview-stitcher) on tiles saved by ``benchmarks/geometry.py``.

Runs inside the peer's own venv (``benchmarks/peers/stitch_peers_setup.sh``), never imports fluorecon.
Input: an ``.npz`` with ``tiles`` (n, Y, X) float32, ``nominal`` (n, 2) stage positions in px and
``grid_index`` (n, 2) row/column indices. Output: JSON with the estimated positions (n, 2) in px (same
axis order, tile 0 as given by the peer) and the registration wall time, start-up and imports excluded.

Usage::

    PEER_PY benchmarks/peers/stitch_peer.py m2stitch tiles.npz out.json
    PEER_PY benchmarks/peers/stitch_peer.py multiview-stitcher tiles.npz out.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

INFO: dict = {}


def run_m2stitch(tiles: np.ndarray, nominal: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
    import m2stitch

    # m2stitch (MIST) estimates integer translations; the nominal layout bounds its search. Its own
    # error message advises lowering ncc_threshold when no pair passes, so we follow that advice.
    last = None
    for thr in (0.5, 0.3, 0.1):
        t0 = time.perf_counter()
        try:
            df, _ = m2stitch.stitch_images(tiles, rows=list(grid_index[:, 0]), cols=list(grid_index[:, 1]),
                                           position_initial_guess=nominal, row_col_transpose=False,
                                           ncc_threshold=thr)
        except AssertionError as e:
            last = e
            continue
        INFO["ncc_threshold"] = thr
        # Timed alone too: the failed attempts at stricter thresholds are our retry policy, not m2stitch's cost.
        INFO["seconds_successful_call"] = time.perf_counter() - t0
        return np.stack([df["y_pos"].to_numpy(float), df["x_pos"].to_numpy(float)], axis=1)
    raise RuntimeError(f"m2stitch failed at every ncc_threshold: {last}")


def run_multiview_stitcher(tiles: np.ndarray, nominal: np.ndarray, grid_index: np.ndarray) -> np.ndarray:
    from multiview_stitcher import msi_utils, registration
    from multiview_stitcher import spatial_image_utils as si_utils

    msims = []
    for t, p in zip(tiles, nominal, strict=True):
        sim = si_utils.get_sim_from_array(t, dims=["y", "x"], scale={"y": 1.0, "x": 1.0},
                                          translation={"y": float(p[0]), "x": float(p[1])},
                                          transform_key="stage")
        msims.append(msi_utils.get_msim_from_sim(sim, scale_factors=[]))
    registration.register(msims, reg_channel_index=0, transform_key="stage", new_transform_key="registered",
                          pairwise_reg_func=registration.phase_correlation_registration)
    out = []
    for p, msim in zip(nominal, msims, strict=True):
        m = np.asarray(msi_utils.get_transform_from_msim(msim, "registered")).squeeze()
        # The registered affine maps the tile's stage frame to the common frame: apply it to the tile origin.
        out.append(m[:2, :2] @ p + m[:2, 2])
    return np.asarray(out)


def main() -> int:
    tool, npz, out = sys.argv[1:4]
    d = np.load(npz)
    tiles, nominal, gi = d["tiles"].astype(np.float32), d["nominal"].astype(float), d["grid_index"].astype(int)
    run = {"m2stitch": run_m2stitch, "multiview-stitcher": run_multiview_stitcher}[tool]
    t0 = time.perf_counter()
    pos = run(tiles, nominal, gi)
    sec = time.perf_counter() - t0
    with open(out, "w") as fh:
        json.dump({"tool": tool, "positions": pos.tolist(), "seconds": sec, **INFO}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
