#!/usr/bin/env bash
# Create (or reuse) an isolated virtual environment holding BaSiCPy (flat-/dark-field, BaSiC) for the
# flat-field speed comparison (benchmarks/corrections.py --parts basicpy).
#
# Usage: benchmarks/peers/basicpy_setup.sh [VENV]     (default: $HOME/.cache/peer-basicpy)
#
# basicpy pins old numpy/scipy (numpy<2, scipy<1.13), so it is NEVER a dependency of fluorecon: it
# lives only in this venv and is called as a subprocess (benchmarks/peers/basicpy_run.py) that reads
# and writes .npy files. On success the venv path is the only thing printed on stdout. Idempotent.
# Measured set-up (2026-12-01, pip, Python 3.11): basicpy 2.0.0 (torch back end), numpy 1.26.4,
# scipy 1.12.0, torch 2.14.1, scikit-image 0.26.0, pydantic 2.14.4.
# Override the version with BASICPY_SPEC (default: basicpy==2.0.0, the latest on PyPI).
set -euo pipefail

VENV="${1:-${HOME}/.cache/peer-basicpy}"
BASICPY_SPEC="${BASICPY_SPEC:-basicpy==2.0.0}"

. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
peer_venv peer-basicpy "${VENV}" basicpy "basicpy numpy scipy torch" "${BASICPY_SPEC}"
