"""The hang watchdog aborts a rank that stops making progress, and never a run that has ended."""
import time
from types import SimpleNamespace

import pytest

from mpirl import watchdog as watchdog_module


@pytest.fixture
def aborts(monkeypatch):
    """The watchdog's MPI, with an Abort that records its code instead of ending the process."""
    codes = []
    fake = SimpleNamespace(COMM_WORLD=SimpleNamespace(Abort=codes.append))
    monkeypatch.setattr(watchdog_module, "MPI", fake)
    return codes


@pytest.mark.parametrize("stopped", [False, True])
def test_no_heartbeat_aborts_unless_training_has_ended(aborts, stopped, capfd):
    dog = watchdog_module.Watchdog(timeout=0.2, rank=3)
    if stopped:
        dog.stop()
    time.sleep(0.6)
    dog.stop()   # (ends the thread either way)
    assert aborts[:1] == ([] if stopped else [3])
    assert ("[mpirl rank 3] failed: no progress" in capfd.readouterr().err) == (not stopped)
