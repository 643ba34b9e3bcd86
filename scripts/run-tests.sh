#!/usr/bin/env bash
# `make test`: the whole suite in one pytest run, then its MPI tier and a 2- and a 4-rank trainer
# run again under the second MPI (MPICH, in .venv-mpich). `make test MPI=mpich` runs the whole
# suite under MPICH instead. As root (CI, a dev box), a local Slurm cluster
# (scripts/slurm-local.sh) is stood up first for the tests/slurm jobs and taken down afterwards;
# elsewhere those tests skip with a reason. Arguments go to pytest (then the second tier is left
# out: a chosen subset is run under one MPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
MPICH_VENV=${MPICH_VENV:-$VENV-mpich}
MPI=${MPI:-openmpi}
case "$MPI" in
    openmpi) TEST_VENV=$VENV ;;
    mpich) TEST_VENV=$MPICH_VENV ;;
    *) echo "make test: MPI must be openmpi or mpich, not '$MPI'" >&2; exit 2 ;;
esac
# shellcheck disable=SC1091
source "$TEST_VENV/bin/activate"

if [ "$(id -u)" = 0 ] && [ -x scripts/slurm-local.sh ] && [ "${MPIRL_SKIP_SLURM:-0}" != 1 ]; then
    scripts/slurm-local.sh start
    trap 'scripts/slurm-local.sh stop >/dev/null 2>&1 || true' EXIT
fi
python -m pytest "$@"
if [ "$MPI" = openmpi ] && [ $# -eq 0 ] && [ -x "$MPICH_VENV/bin/python" ]; then
    echo "== the MPI tier and the trainer at 2 and 4 ranks, under MPICH ($MPICH_VENV) =="
    "$MPICH_VENV/bin/python" -m pytest -q tests/test_mpi_suites.py tests/e2e/test_any_mpi.py
fi
