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
RLF_SPEC="${RLF_SPEC:-redlionfish==0.10}"

. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
peer_venv peer-redlionfish "${VENV}" RedLionfishDeconv "redlionfish numpy scipy" "${RLF_SPEC}" numpy scipy
