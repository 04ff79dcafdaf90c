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
PYTHON="${PYTHON:-python3}"
PYOLAF_SPEC="${PYOLAF_SPEC:-pyolaf==0.2.1}"

check() {
    "${VENV}/bin/python" -c "import pyolaf" >/dev/null 2>&1
}

if [ -x "${VENV}/bin/python" ] && check; then
    echo "peer-pyolaf: already set up in ${VENV}" >&2
    echo "${VENV}"
    exit 0
fi

echo "peer-pyolaf: creating venv ${VENV} with $("${PYTHON}" --version 2>&1)" >&2
mkdir -p "$(dirname "${VENV}")"
"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install --quiet --upgrade pip >&2
"${VENV}/bin/python" -m pip install --progress-bar off "${PYOLAF_SPEC}" >&2

if ! check; then
    echo "peer-pyolaf: installation finished but 'import pyolaf' fails:" >&2
    "${VENV}/bin/python" -c "import pyolaf" >&2 || true
    exit 1
fi
"${VENV}/bin/python" - <<'PY' >&2
import importlib.metadata as md
print("peer-pyolaf:", ", ".join(f"{p} {md.version(p)}" for p in ("pyolaf", "numpy", "scipy")))
PY
echo "${VENV}"
