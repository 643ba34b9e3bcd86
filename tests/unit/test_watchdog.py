"""The hang watchdog aborts a rank that stops making progress, and never a run that has ended."""
import time

import pytest

from mpirl import watchdog as watchdog_module


@pytest.fixture
def aborts(monkeypatch):
    """The watchdog's abort, recording its code instead of ending the process."""
    codes = []
    monkeypatch.setattr(watchdog_module, "abort_job", codes.append)
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
