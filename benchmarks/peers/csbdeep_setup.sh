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
TF_SPEC="${TF_SPEC:-tensorflow-cpu==2.15.1}"
CSBDEEP_SPEC="${CSBDEEP_SPEC:-csbdeep==0.8.2}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"

. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# numpy<2: TF 2.15 wheels are built against numpy 1.x.
peer_venv peer-csbdeep "${VENV}" "tensorflow, csbdeep, tifffile; from csbdeep.models import IsotropicCARE" \
    "tensorflow-cpu csbdeep numpy" "${TF_SPEC}" "${CSBDEEP_SPEC}" tifffile "numpy<2"
