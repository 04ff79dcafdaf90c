# Shared body of the peer set-up scripts (sourced, not run): create or reuse an isolated venv for one peer.
#
#   peer_venv LABEL VENV IMPORT "REPORTED PACKAGES" PIP_ARG...
#
# Idempotent: returns at once when VENV already imports IMPORT. Progress goes to stderr; on success the venv path is
# the only thing printed on stdout; exit 1 with the import error when the installation does not work.
peer_venv() {
    local label="$1" venv="$2" module="$3" report="$4"
    shift 4
    local python="${PYTHON:-python3}"
    if [ -x "${venv}/bin/python" ] && "${venv}/bin/python" -c "import ${module}" >/dev/null 2>&1; then
        echo "${label}: already set up in ${venv}" >&2
        echo "${venv}"
        return 0
    fi
    echo "${label}: creating venv ${venv} with $("${python}" --version 2>&1)" >&2
    mkdir -p "$(dirname "${venv}")"
    "${python}" -m venv "${venv}"
    "${venv}/bin/python" -m pip install --quiet --upgrade pip >&2
    "${venv}/bin/python" -m pip install --progress-bar off "$@" >&2
    if ! "${venv}/bin/python" -c "import ${module}" >/dev/null 2>&1; then
        echo "${label}: installation finished but 'import ${module}' fails:" >&2
        "${venv}/bin/python" -c "import ${module}" >&2 || true
        exit 1
    fi
    "${venv}/bin/python" - "${label}" ${report} <<'PY' >&2
import importlib.metadata as md
import sys
print(f"{sys.argv[1]}:", ", ".join(f"{p} {md.version(p)}" for p in sys.argv[2:]))
PY
    echo "${venv}"
}
