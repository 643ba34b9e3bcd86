"""The end of an update (mpirl.run.Run.end_update): what is evaluated, logged and saved, and
when training ends, in one process."""
import json
import signal

import pytest

from mpirl.comm import World
from mpirl.config import parse_args
from mpirl.run import Run
from mpirl.train import make_scoreboard


@pytest.fixture
def run(tmp_path):
    (tmp_path / "run").mkdir()
    cfg = parse_args(["--run-dir", str(tmp_path / "run"), "--eval-interval", "2",
                      "--checkpoint-interval", "100", "--hang-timeout", "0", "--no-tensorboard"])
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    run = Run(cfg, World(), make_scoreboard(cfg, 1), total_steps=1000)
    run.start(0, 100)
    yield run
    run.log.close()
    for sig, handler in before.items():   # Run installed its stop handlers
        signal.signal(sig, handler)


def _end(run, update, last=10):
    calls = {"evaluate": 0, "checkpoint": []}

    def evaluate():
        calls["evaluate"] += 1
        return 42.0

    ends = run.end_update(update, last, run.record(update), evaluate, calls["checkpoint"].append)
    return ends, calls


def test_an_update_evaluates_when_due_and_goes_on(run):
    assert _end(run, 1) == (False, {"evaluate": 0, "checkpoint": []})
    # the first evaluation is the best so far: checkpointed (checkpoints/best.pt) ...
    assert _end(run, 2) == (False, {"evaluate": 1, "checkpoint": [2]})
    assert run.scoreboard.last_eval == 42.0 and not run.preempted
    assert run.scoreboard.new_best and run.scoreboard.best_step == 200
    # ... one no better is not
    assert _end(run, 4) == (False, {"evaluate": 1, "checkpoint": []})
    assert not run.scoreboard.new_best and run.scoreboard.best_eval == 42.0


def test_a_stop_signal_still_takes_the_due_evaluation_then_checkpoints(run):
    # The evaluation stays: with --stop-on-solve (or a parked task) it decides how training goes
    # on, and a run stopped here and resumed must go on as the uninterrupted run does.
    run.stop.signum = signal.SIGUSR1   # as the handler records Slurm's warning signal
    ends, calls = _end(run, 2)
    assert ends and run.preempted and calls == {"evaluate": 1, "checkpoint": [2]}
    assert run.scoreboard.last_eval == 42.0
    with open(f"{run.dir}/metrics.jsonl") as fh:
        lines = [json.loads(line) for line in fh]
    assert [line["update"] for line in lines] == [2] and lines[0]["eval_return_mean"] == 42.0
