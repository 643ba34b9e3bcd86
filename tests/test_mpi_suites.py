"""Runs each pytest-mpi file in tests/mpi under ``mpirun -n N`` (N from the file's NPROCS),
each launch under a timeout, so the whole suite stays one ``pytest`` command that never hangs.
"""
import ast
from pathlib import Path

import pytest

from tests.launch import mpirun

MPI_DIR = Path(__file__).parent / "mpi"


def _suites():
    for path in sorted(MPI_DIR.glob("test_*.py")):
        nprocs, timeout = (2,), 180
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                if node.targets[0].id == "NPROCS":
                    nprocs = ast.literal_eval(node.value)
                elif node.targets[0].id == "TIMEOUT":
                    timeout = ast.literal_eval(node.value)
        for n in nprocs:
            yield pytest.param(path, n, timeout, id=f"{path.stem}-np{n}")


@pytest.mark.parametrize("path,nprocs,timeout", list(_suites()))
def test_mpi_suite(path, nprocs, timeout):
    res = mpirun(nprocs, ["-m", "pytest", "--with-mpi", "-q", "-x", "-p", "no:cacheprovider",
                          "-o", "addopts=", str(path)], timeout=timeout)
    res.check()
    assert " passed" in res.output and " failed" not in res.output, res.output[-4000:]
