"""``python -m mpirl.bench impala --quick`` end to end: CartPole at 3 ranks for IMPALA and sync
PPO, the straggler at 4 ranks with and without the slow rank, the utilisation run, the verdicts."""
import json
import sys

from mpirl.bench.impala import lag_percentiles
from tests.launch import run


def test_quick_impala_bench_writes_solve_straggler_and_utilisation(tmp_path):
    out = tmp_path / "bench"
    res = run([sys.executable, "-m", "mpirl.bench", "impala", "--quick", "--out", str(out)],
              timeout=400, cwd=tmp_path).check()
    result = json.loads((out / "impala.json").read_text())
    assert set(result["solve"]) == {"impala", "ppo"}
    for algo in ("impala", "ppo"):
        assert [r["seed"] for r in result["solve"][algo]["runs"]] == [0]
    straggler = result["straggler"]
    for algo in ("impala", "ppo"):
        even, slow = straggler[algo]["even"], straggler[algo]["slow"]
        assert even["sps"] > 0 and slow["sps"] > 0
        assert abs(straggler[algo]["throughput_lost"] - (1 - slow["sps"] / even["sps"])) < 1e-9
    # sync PPO waits for the slow rank at every Allreduce: it loses most of its throughput
    assert straggler["ppo"]["throughput_lost"] > 0.5
    # the learner takes what the fast actors make meanwhile
    impala = straggler["impala"]
    for case in ("even", "slow"):
        lag = impala[case]["lag"]
        assert 0 <= lag["p50"] <= lag["p90"] <= lag["max"]
    assert impala["slow"]["blocks_from_actor"]["3"] < impala["slow"]["blocks_from_actor"]["1"]
    assert straggler["met"] == (impala["throughput_lost"] < 0.25)
    u = result["utilisation"]
    assert 0.0 <= u["min"] <= u["mean"] <= 1.0 and u["met"] == (u["mean"] >= 0.9)
    # the parameter stream against a broadcast, for a small and a Nature-CNN-sized vector
    assert [p["n_params"] for p in result["parameters"]] == [4_610, 1_700_000]
    for p in result["parameters"]:
        assert p["actors"] == 2 and p["versions"] == 10 and p["versions_seen_min"] >= 1
        assert p["learner_publish_us"] > 0 and p["delivery_ms"] > 0 and p["bcast_actor_blocked_us"] > 0
    table = (out / "impala.md").read_text()
    assert "| IMPALA (1 learner, 3 actors) |" in table and "| sync PPO (4 ranks) |" in table
    assert "Target: IMPALA loses under 25%" in table and "Target: at least 90%" in table
    assert "| stream (mpirl.comm.stream) | 1,700,000 |" in table
    assert not (tmp_path / "docs").exists() and "rewritten" not in res.output   # quick: no docs


def test_lag_percentiles_of_a_histogram():
    assert lag_percentiles([0, 5, 3, 0, 2]) == {"p50": 1, "p90": 4, "max": 4}
    assert lag_percentiles([10]) == {"p50": 0, "p90": 0, "max": 0}
