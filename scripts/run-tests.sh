#!/usr/bin/env bash
# `make test`: the whole suite in one pytest run. As root (CI, a dev box), a local Slurm
# cluster (scripts/slurm-local.sh) is stood up first for the tests/slurm jobs and taken down afterwards; elsewhere those
# tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# shellcheck disable=SC1091
source "$VENV/bin/activate"

if [ "$(id -u)" = 0 ] && [ -x scripts/slurm-local.sh ] && [ "${MPIRL_SKIP_SLURM:-0}" != 1 ]; then
    scripts/slurm-local.sh start
    trap 'scripts/slurm-local.sh stop >/dev/null 2>&1 || true' EXIT
fi
python -m pytest "$@"
