#!/usr/bin/env bash
# Create (or reuse) an isolated virtual environment holding pyolaf (light-field projectors) for the light-field
# peer comparison (benchmarks/lightfield.py peer --pyolaf VENV/bin/python).
#
# Usage: benchmarks/peers/pyolaf_setup.sh [VENV]     (default: $HOME/.cache/peer-pyolaf)
#
# pyolaf is a peer only: it lives in this venv and is called as a subprocess (benchmarks/peers/pyolaf_run.py)
# that reads and writes .npy files. On success the venv path is the only thing printed on stdout. Idempotent.
# Set-up used for the 2026-12-02 re-run (pip, Python 3.11): pyolaf 0.2.1, numpy 2.4.6, scipy 1.17.1,
# scikit-image 0.26.0, tifffile 2026.3.3. Override the version with PYOLAF_SPEC (default: pyolaf==0.2.1).
set -euo pipefail

VENV="${1:-${HOME}/.cache/peer-pyolaf}"
PYOLAF_SPEC="${PYOLAF_SPEC:-pyolaf==0.2.1}"

. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
peer_venv peer-pyolaf "${VENV}" pyolaf "pyolaf numpy scipy" "${PYOLAF_SPEC}"
