import os

# Tests run on small machines: keep torch to one thread unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_ignore_collect(collection_path, config):
    """tests/mpi holds pytest-mpi files meant to run under mpirun (tests/test_mpi_suites.py
    launches them); the plain run would only list them as skipped."""
    if collection_path.name == "mpi" and collection_path.parent.name == "tests":
        return not config.getoption("with_mpi", default=False)
    return None


import pytest  # noqa: E402  (after the environment default above)


@pytest.fixture(params=["c", "numpy"])
def kernel_backend(request, monkeypatch):
    """Runs a test twice: with mpirl's C kernels, and with the numpy twins that stand in for them
    when no compiler is found. The C run fails, rather than skips, when the kernels are not built:
    `make setup` builds them, so their absence is a broken set-up."""
    from mpirl import native
    from mpirl.mdp import backup
    from mpirl.replay import sumtree
    if request.param == "numpy":
        for module in (sumtree, backup):
            monkeypatch.setattr(module, "kernels", lambda: None)
    else:
        assert native.kernels() is not None, "mpirl's C kernels are not built (python -m mpirl.native)"
    return request.param
