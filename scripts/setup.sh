#!/usr/bin/env bash
# Prepares everything mpirl needs, idempotently: an MPI implementation (Debian's Open MPI when
# none is on PATH and we may install it), the .venv with the package and its test tools, and an
# activation script that lets Open MPI run as root and with more ranks than cores.
#
#   scripts/setup.sh            # .venv + MPI
#   VENV=/path scripts/setup.sh # another venv location
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf '[setup] %s\n' "$*"; }

apt_install() {  # apt_install PKG... : Debian/Ubuntu packages, only when root and apt exist
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        if [ ! -f /var/lib/apt/periodic/mpirl-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/mpirl-updated
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
        return 0
    fi
    return 1
}

# 1. MPI. mpi4py's wheel finds the system libmpi at run time.
if ! command -v mpirun >/dev/null && ! command -v mpiexec >/dev/null; then
    say "no MPI on PATH: installing Debian's Open MPI"
    if ! apt_install openmpi-bin libopenmpi-dev; then
        say "cannot apt-get install (not root?): the venv will get the 'mpich' wheel from PyPI instead"
        USE_PIP_MPICH=1
    fi
fi

# 2. The virtual environment and the package.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "${USE_PIP_MPICH:-0}" = 1 ]; then
    "$VENV/bin/python" -m pip install -q mpich
fi
say "installing mpirl, its extras (box2d, mujoco, video) and test tools into $VENV"
if ! "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[test,all]' >"$VENV/pip.log" 2>&1; then
    tail -n 30 "$VENV/pip.log"
    say "pip install failed (full log: $VENV/pip.log)"
    exit 1
fi
"$VENV/bin/python" -c 'import mpirl, mpi4py, torch, gymnasium' \
    || { say "the package does not import: see the pip output above"; exit 1; }

# 3. The C kernels (mpirl/native): built now, once, rather than by every rank of the first job.
#    Without a C compiler mpirl runs its numpy versions (slower), so a failure here only warns.
if ! command -v cc >/dev/null && ! command -v gcc >/dev/null; then
    say "no C compiler: installing gcc for mpirl's kernels"
    apt_install gcc libc6-dev || say "cannot install gcc: mpirl will use its slower numpy kernels"
fi
"$VENV/bin/python" -m mpirl.native || true

# 4. Activation: Open MPI refuses root and oversubscription unless told; with more ranks than
#    cores, busy-polling ranks starve each other, so idle ranks yield the CPU.
marker="# >>> mpirl MPI environment >>>"
if ! grep -qF "$marker" "$VENV/bin/activate"; then
    cat >> "$VENV/bin/activate" <<'EOT'
# >>> mpirl MPI environment >>>
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
# <<< mpirl MPI environment <<<
EOT
fi
say "ready: source $VENV/bin/activate && mpirun -n 8 python -m mpirl.train"
