#!/usr/bin/env bash
# Builds the stitching peers' venvs (kept apart from ours: m2stitch pins an old stack; multiview-stitcher
# pulls xarray/spatial-image/dask-image versions we do not test against).
# Usage: stitch_peers_setup.sh [DIR]   (default: $HOME/.cache) → DIR/peer-m2stitch, DIR/peer-mvstitcher
set -eu
D=${1:-$HOME/.cache}
mk() {  # venv package import-name
  local v="$D/$1"
  [ -x "$v/bin/python" ] && "$v/bin/python" -c "import $3" 2>/dev/null && { echo "$v"; return; }
  python3 -m venv "$v"
  "$v/bin/pip" install -q "$2" tifffile
  "$v/bin/python" -c "import $3" && echo "$v"
}
mk peer-m2stitch m2stitch m2stitch
mk peer-mvstitcher multiview-stitcher multiview_stitcher
