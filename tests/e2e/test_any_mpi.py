"""Whatever MPI this interpreter's mpi4py runs on (make test runs this file under Open MPI and
again under MPICH): the launcher found is that MPI's, and the trainer runs at 2 and 4 ranks and
names the library it runs on."""
import pytest

from tests.e2e.conftest import read_summary
from tests.launch import mpirun, train


def test_the_launcher_found_starts_one_world_of_the_mpi_mpi4py_loads():
    from mpi4py import MPI
    library = MPI.Get_library_version().split()[0]     # "Open" (Open MPI) or "MPICH"
    res = mpirun(2, ["-c", "from mpi4py import MPI; w = MPI.COMM_WORLD; "
                           "seen = w.gather((w.Get_rank(), w.Get_size(), "
                           "MPI.Get_library_version().split()[0])); "
                           "print('seen', seen) if w.Get_rank() == 0 else None"],
                 timeout=60).check()
    lines = [line for line in res.output.splitlines() if line.startswith("seen")]
    assert lines == [f"seen [(0, 2, {library!r}), (1, 2, {library!r})]"], res.output


@pytest.mark.parametrize("nprocs", [2, 4])
def test_the_trainer_runs_and_names_its_mpi(nprocs, tmp_path, tiny):
    from mpi4py import MPI
    run_dir = tmp_path / "run"
    res = train(nprocs, [*tiny, "--total-timesteps", "2048", "--run-dir", str(run_dir)],
                timeout=240).check()
    name = "Open MPI" if "Open MPI" in MPI.Get_library_version() else "MPICH"
    assert res.output.count(f"MPI: {name}") == 1, res.output
    summary = read_summary(run_dir)
    assert summary["n_ranks"] == nprocs and summary["status"] == "completed"
