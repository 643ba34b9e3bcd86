import os

# Tests run on small machines: keep torch to one thread unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_ignore_collect(collection_path, config):
    """tests/mpi holds pytest-mpi files meant to run under mpirun (tests/test_mpi_suites.py
    launches them); the plain run would only list them as skipped."""
    if collection_path.name == "mpi" and collection_path.parent.name == "tests":
        return not config.getoption("with_mpi", default=False)
    return None
