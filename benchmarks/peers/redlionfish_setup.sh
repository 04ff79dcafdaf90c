#!/usr/bin/env bash
# Create (or reuse) an isolated virtual environment holding RedLionfish (Richardson–Lucy, CPU path)
# for the deconvolution speed benchmark (benchmarks/deconvolve.py, section "speed").
#
# Usage: benchmarks/peers/redlionfish_setup.sh [VENV]     (default: $HOME/.cache/peer-redlionfish)
#
# redlionfish is NEVER a dependency of fluorecon: it lives only in this venv and is called as a
# subprocess (benchmarks/peers/redlionfish_run.py) that reads and writes .npy files. On success the venv
# path is the only thing printed on stdout (progress goes to stderr). Idempotent: exits at once when the
# venv already imports RedLionfishDeconv.
# Override the version with RLF_SPEC (default: redlionfish==0.10, the latest on PyPI, 2024-03).
set -euo pipefail

VENV="${1:-${HOME}/.cache/peer-redlionfish}"
PYTHON="${PYTHON:-python3}"
RLF_SPEC="${RLF_SPEC:-redlionfish==0.10}"

check() {
    "${VENV}/bin/python" -c "import RedLionfishDeconv" >/dev/null 2>&1
}

if [ -x "${VENV}/bin/python" ] && check; then
    echo "peer-redlionfish: already set up in ${VENV}" >&2
    echo "${VENV}"
    exit 0
fi

echo "peer-redlionfish: creating venv ${VENV} with $("${PYTHON}" --version 2>&1)" >&2
mkdir -p "$(dirname "${VENV}")"
"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install --quiet --upgrade pip >&2
"${VENV}/bin/python" -m pip install --progress-bar off "${RLF_SPEC}" numpy scipy >&2

if ! check; then
    echo "peer-redlionfish: installation finished but 'import RedLionfishDeconv' fails:" >&2
    "${VENV}/bin/python" -c "import RedLionfishDeconv" >&2 || true
    exit 1
fi
"${VENV}/bin/python" - <<'PY' >&2
import importlib.metadata as md
print("peer-redlionfish:", ", ".join(f"{p} {md.version(p)}" for p in ("redlionfish", "numpy", "scipy")))
PY
echo "${VENV}"
