"""``python -m mpirl.mdp`` as a user runs it: under mpirun, writing its run dir; bad input is one
message and exit code 2 on every rank, with nothing written."""
import json
import sys

import numpy as np
import pytest

from tests.launch import mpirun, run


def _cli(nprocs, args, timeout=90):
    if nprocs == 0:  # plain python, no mpirun: a world of size 1
        return run([sys.executable, "-m", "mpirl.mdp", *args], timeout=timeout)
    return mpirun(nprocs, ["-m", "mpirl.mdp", *args], timeout=timeout)


def test_deterministic_frozenlake_on_two_ranks_writes_results_and_walks_the_shortest_route(tmp_path):
    run_dir = tmp_path / "fl"
    _cli(2, ["--env", "FrozenLake-v1", "--no-is-slippery", "--gamma", "0.9",
             "--eval-episodes", "10", "--run-dir", str(run_dir)]).check()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["converged"] and summary["sweeps"] >= 6
    assert summary["residual"] < summary["tol"] == 1e-8
    assert summary["evaluation"]["success_rate"] == 1.0
    assert summary["evaluation"]["mean_length"] == 6
    assert summary["value_of_start"] == pytest.approx(0.9 ** 5)
    saved = np.load(run_dir / "mdp.npz")
    assert saved["V"].shape == (16,) and saved["policy"].shape == (16,) and "Q" not in saved
    assert (run_dir / "values.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sweeps" in (run_dir / "summary.txt").read_text()


def test_gridworld_q_iteration_saves_q_and_picture(tmp_path):
    run_dir = tmp_path / "grid"
    res = _cli(2, ["--gridworld", "12", "--method", "q", "--eval-episodes", "4",
                   "--run-dir", str(run_dir)]).check()
    assert "success rate" in res.output
    saved = np.load(run_dir / "mdp.npz")
    assert saved["Q"].shape == (144, 4)
    np.testing.assert_array_equal(saved["policy"], saved["Q"].argmax(axis=1))
    np.testing.assert_allclose(saved["V"], saved["Q"].max(axis=1), atol=1e-8)
    assert (run_dir / "values.png").exists()


def test_random_mdp_without_mpirun(tmp_path):
    run_dir = tmp_path / "rnd"
    _cli(0, ["--random-states", "300", "--random-actions", "3", "--branching", "2",
             "--method", "policy", "--eval-episodes", "5", "--run-dir", str(run_dir)]).check()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["states"] == 300 and summary["transitions"] == 300 * 3 * 2
    assert summary["converged"] and summary["policy_iterations"] >= 2
    assert summary["evaluation"]["success_rate"] is None
    assert not (run_dir / "values.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--env", "CartPole-v1"], "CartPole-v1 has no transition table P"),
    (["--gamma", "1.0"], "--gamma must lie in [0, 1), not 1.0"),
    (["--tol", "0"], "--tol must be > 0, not 0.0"),
    (["--random-states", "1"], "has 1 states: fewer than the 2 ranks"),
], ids=["no-P", "gamma", "tol", "more-ranks-than-states"])
def test_bad_input_is_one_message_and_exit_code_2_on_every_rank(tmp_path, args, message):
    run_dir = tmp_path / "never"
    res = _cli(2, [*args, "--run-dir", str(run_dir)], timeout=60)
    assert not res.timed_out and res.returncode == 2, res.output[-3000:]
    assert res.output.count(message) == 1, res.output[-3000:]
    assert res.output.count("python -m mpirl.mdp: error:") == 1
    assert "Traceback" not in res.output
    assert not run_dir.exists()


def test_bench_section_quick_counts_the_bytes_of_p_it_reads(tmp_path):
    res = run([sys.executable, "-m", "mpirl.bench", "mdp", "--quick", "--out", str(tmp_path)],
              timeout=180).check()
    result = json.loads((tmp_path / "mdp.json").read_text())
    states, actions, branching = (result["mdp"][k] for k in ("states", "actions", "branching"))
    # per transition: next state (int32) + continuation probability (float64); per row: reward
    expected = states * actions * (branching * (4 + 8) + 8)
    assert [(r["ranks"], r["exchange"], r["exchange_used"]) for r in result["rows"]] == [
        (1, "shared", "allgatherv"), (2, "allgatherv", "allgatherv"), (2, "shared", "shared")]
    for r in result["rows"]:
        assert r["p_bytes_per_sweep"] == expected and r["sweeps"] == result["sweeps_timed"]
        assert 0 <= r["comm_seconds_per_sweep"] < r["seconds_per_sweep"]
        assert r["copy_bandwidth_gb_per_s"] > 0.1
        assert r["cached_v_seconds_per_sweep"] > 0 and r["cached_v_bound_ratio"] == pytest.approx(
            r["cached_v_seconds_per_sweep"] / r["bound_seconds_per_sweep"])
        for part in ("p_alone", "v_reads_alone"):   # the sweep's two parts, timed apart
            alone = r[f"{part}_seconds_per_sweep"]
            assert 0 < alone and r[f"{part}_bound_ratio"] == pytest.approx(
                alone / r["bound_seconds_per_sweep"])
        assert r["stream_hint"] in ("T0", "non-temporal", "-")
    assert result["speedup"] == result["rows"][2]["speedup"]
    # the 1-rank job times V's random reads alone as V grows, up to the whole V of the MDP
    by_size = result["rows"][0]["v_reads_by_size"]
    assert [r["states"] for r in by_size] == [512, states]   # 4 KB, then clipped to the MDP
    assert all(r["seconds"] > 0 and r["v_bytes"] == 8 * r["states"] for r in by_size)
    assert [r["v_reads_by_size"] for r in result["rows"][1:]] == [[], []]
    table = (tmp_path / "mdp.md").read_text()
    assert "| 2 | allgatherv |" in table and "| 2 | shared |" in table and "Targets" in res.output
    assert "| 512 states (4 KiB) |" in table
