"""The run's scoreboard for one task (mpirl.scoreboard; multi-task: tests/mpi/test_multitask.py)."""
import numpy as np

from mpirl.scoreboard import Scoreboard


def _board(target=475.0):
    return Scoreboard(["CartPole-v1"], [target], [2], log=lambda *a: None)


def test_one_task_keeps_plain_keys_and_is_solved_at_its_first_evaluation_at_the_target():
    board = _board()
    record = {"episode_return_mean": 480.0}
    board.record_training(record, steps_per_rank=64, start_update=0)
    assert record == {"episode_return_mean": 480.0}          # nothing added for one task
    assert board.reached_in_training() and not board.solved  # an evaluation is due early
    board.record_eval(record, 1000, 470.0, time_s=3.0)       # a number for one task
    assert record["eval_return_mean"] == 470.0 and not board.solved
    board.record_eval(record, 2000, 500.0, time_s=4.5)
    assert board.solved and (board.run_solved_at_step, board.run_solved_at_time_s) == (2000, 4.5)
    assert not board.reached_in_training()                   # solved: nothing more is due
    board.record_eval(record, 3000, 10.0, time_s=6.0)        # solved stays solved
    assert board.run_solved_at_step == 2000 and board.last_eval == 10.0
    assert board.target == 475.0 and set(record) == {"episode_return_mean", "eval_return_mean"}


def test_without_a_target_nothing_is_ever_solved_or_due():
    board = _board(target=None)
    board.record_training({"episode_return_mean": 1e9}, 64, 0)
    board.record_eval({}, 1000, 1e9, time_s=1.0)
    assert not board.reached_in_training() and not board.solved


def test_the_state_round_trips_and_a_checkpoint_from_before_the_scoreboard_loads():
    board = _board()
    board.record_training({"episode_return_mean": 12.0}, 64, 0)
    board.record_eval({}, 640, 500.0, time_s=2.0)
    again = _board()
    again.load_state_dict(board.state_dict())
    assert again.state_dict() == board.state_dict() and again.solved
    earlier = Scoreboard.state_from_earlier_checkpoint(
        {"solved_at_step": 640, "solved_at_time_s": 2.0}, {"model": {}})
    old = _board()
    old.load_state_dict(earlier)
    assert old.run_solved_at_step == 640 and old.solved_at_step == [640]
    assert np.isnan(old.eval_returns).all() and old.parked == [False]
