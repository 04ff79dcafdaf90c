#!/usr/bin/env bash
# Create (or reuse) an isolated virtual environment holding CSBDeep + TensorFlow (CPU)
# for the isotropic-restoration peer benchmark.
#
# Usage: benchmarks/peers/csbdeep_setup.sh [VENV]     (default: $HOME/.cache/peer-csbdeep)
#
# csbdeep is NEVER a dependency of fluorecon: it lives only in this venv. On success the
# venv path is the only thing printed on stdout (progress goes to stderr), so callers can do
#   PEER_PY="$(benchmarks/peers/csbdeep_setup.sh)/bin/python"
# Idempotent: exits at once if the venv already imports tensorflow + csbdeep + tifffile.
#
# Pinned versions (checked against PyPI for CPython 3.11, 2026-11-24):
#   tensorflow-cpu 2.15.1  (last TF with Keras 2 as tf.keras; needs numpy<2)
#   csbdeep 0.8.2          (supports TF2 and Keras 3; we use it with Keras 2)
# Override with TF_SPEC / CSBDEEP_SPEC environment variables if needed.
set -euo pipefail

VENV="${1:-${HOME}/.cache/peer-csbdeep}"
PYTHON="${PYTHON:-python3}"
TF_SPEC="${TF_SPEC:-tensorflow-cpu==2.15.1}"
CSBDEEP_SPEC="${CSBDEEP_SPEC:-csbdeep==0.8.2}"

check() {
    "${VENV}/bin/python" - <<'PY' >/dev/null 2>&1
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow, csbdeep, tifffile  # noqa: F401
from csbdeep.models import IsotropicCARE  # noqa: F401
PY
}

if [ -x "${VENV}/bin/python" ] && check; then
    echo "peer-csbdeep: already set up in ${VENV}" >&2
    echo "${VENV}"
    exit 0
fi

echo "peer-csbdeep: creating venv ${VENV} with $("${PYTHON}" --version 2>&1)" >&2
mkdir -p "$(dirname "${VENV}")"
"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install --quiet --upgrade pip >&2
# numpy<2: TF 2.15 wheels are built against numpy 1.x.
"${VENV}/bin/python" -m pip install --progress-bar off \
    "${TF_SPEC}" "${CSBDEEP_SPEC}" tifffile "numpy<2" >&2

if ! check; then
    echo "peer-csbdeep: installation finished but 'import tensorflow, csbdeep' fails:" >&2
    "${VENV}/bin/python" -c "import tensorflow, csbdeep" >&2 || true
    exit 1
fi
"${VENV}/bin/python" - <<'PY' >&2
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import csbdeep, numpy, tensorflow
print(f"peer-csbdeep: tensorflow {tensorflow.__version__}, csbdeep {csbdeep.__version__}, numpy {numpy.__version__}")
PY
echo "${VENV}"
