"""Slurm tests need a cluster: skip with the reason when there is none, fail under CI."""
import os

import pytest

from tests.slurm.cluster import cluster_problem


@pytest.fixture(scope="session")
def cluster():
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") and os.environ.get("MPIRL_SKIP_SLURM") != "1":
        pytest.fail(f"CI needs the local Slurm cluster (scripts/slurm-local.sh start): {problem}")
    pytest.skip(f"no Slurm cluster: {problem}; start one with `scripts/slurm-local.sh start` "
                f"(as root) to run these tests")


@pytest.fixture
def jobdir(tmp_path, cluster):
    """A working directory for one test's jobs: their logs and runs/ land here."""
    return tmp_path
