"""Tests launch MPI jobs through mpirl.launch: a subprocess under a timeout, never a hang."""
from mpirl.launch import ROOT, Result, mpiexec, mpirun, run, train, train_summary  # noqa: F401
