#!/usr/bin/env bash
# Prepares everything mpirl needs, idempotently: an MPI implementation (Debian's Open MPI when
# none is on PATH and we may install it), the .venv with the package and its test tools, and an
# activation script that lets Open MPI run as root and with more ranks than cores.
#
#   scripts/setup.sh            # .venv + MPI, and .venv-mpich for the tests' second MPI
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
say "installing mpirl, its extras (box2d, mujoco, video, atari) and test tools into $VENV"
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

# 4. Activation: where Open MPI launches, let it run as root and with more ranks than cores, and
#    let idle ranks yield the CPU (busy-polling ranks starve each other when oversubscribed).
#    MPICH needs none of it.
write_activation() {  # write_activation VENV: (re)writes the block, so a set-up run again updates it
    sed -i '/^# >>> mpirl MPI environment >>>$/,/^# <<< mpirl MPI environment <<<$/d' "$1/bin/activate"
    cat >> "$1/bin/activate" <<'EOT'
# >>> mpirl MPI environment >>>
if mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE"; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
fi
# <<< mpirl MPI environment <<<
EOT
}
write_activation "$VENV"

# 5. A second MPI for the tests (make test runs the MPI tier under it too; make test MPI=mpich
#    runs everything under it): MPICH from PyPI, with its own mpi4py, in $MPICH_VENV, which
#    takes every other package from $VENV rather than installing them again.
MPICH_VENV=${MPICH_VENV:-$VENV-mpich}
if [ "${MPIRL_NO_MPICH:-0}" != 1 ]; then
    if [ ! -x "$MPICH_VENV/bin/python" ]; then
        say "creating $MPICH_VENV: MPICH from PyPI for the tests' second MPI"
        "$PYTHON" -m venv "$MPICH_VENV"
    fi
    site=$("$MPICH_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    shared=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import site; site.addsitedir('$(cd "$shared" && pwd)')" > "$site/zz_mpirl_shared.pth"
    mpi4py=$("$VENV/bin/python" -c 'import mpi4py; print(mpi4py.__version__)')
    if ! "$MPICH_VENV/bin/python" -m pip install -q mpich "mpi4py==$mpi4py" \
            >"$MPICH_VENV/pip.log" 2>&1; then
        tail -n 20 "$MPICH_VENV/pip.log"
        say "cannot install MPICH into $MPICH_VENV (log: $MPICH_VENV/pip.log)"
        exit 1
    fi
    write_activation "$MPICH_VENV"
    "$MPICH_VENV/bin/python" -c 'from mpi4py import MPI; assert "MPICH" in MPI.Get_library_version()' \
        || { say "$MPICH_VENV does not run on MPICH"; exit 1; }
fi
say "ready: source $VENV/bin/activate && mpiexec -n 8 python -m mpirl.train"
