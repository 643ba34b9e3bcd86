"""``python -m mpirl.bench atari --quick`` end to end: PPO from pixels on Breakout against SB3 in
both pairings (1 rank, 1 thread; 2 ranks against SB3's default threads), the minibatch update
against a bare forward+backward, the kernel levers, and DQN's frame-once replay memory."""
import json
import sys

import pytest

pytest.importorskip("ale_py", reason="the atari extra (make setup installs it)")

from tests.launch import run  # noqa: E402


def test_quick_atari_bench_writes_both_pairings_the_update_cost_and_the_levers(tmp_path):
    out = tmp_path / "bench"
    res = run([sys.executable, "-m", "mpirl.bench", "atari", "--quick", "--no-docs",
               "--out", str(out)], timeout=280, cwd=tmp_path).check()
    result = json.loads((out / "atari.json").read_text())
    assert result["section"] == "atari" and result["quick"] is True
    assert result["iterations"] == 1 and result["iteration_steps"] == 1024
    assert result["target_speedup"] == 1.5 and result["target_update"] == 1.3
    pairings = result["pairings"]
    assert [(p["mpirl"]["ranks"], p["mpirl"]["threads_per_rank"]) for p in pairings] == \
        [(1, 1), (2, max(1, result["cores"] // 2))]
    for p in pairings:
        m, f = p["mpirl"], p["mpirl_float32"]
        assert (m["autocast"], f["autocast"]) == ("auto", "off")
        for trainer in (m, f):
            assert trainer["sps"] > 0 and trainer["steady_s"] > 0 and trainer["warmup_s"] > 0
            # start-up and evaluation left out
            assert trainer["process_wall_s"] > trainer["steady_s"]
        if result["sb3_installed"]:
            s = p["sb3"]
            assert s["sps"] > 0 and s["steady_s"] > 0 and s["iterations"] == 1
            assert p["ratio"] == pytest.approx(m["sps"] / s["sps"])
            assert p["ratio_float32"] == pytest.approx(f["sps"] / s["sps"])
            assert p["met"] == (p["ratio"] >= 1.5)
        else:
            assert p["sb3"] is None and p["ratio"] is None and p["met"] is None
    if result["sb3_installed"]:
        assert pairings[0]["sb3"]["threads"] == 1
    u = result["update"]
    assert u["minibatch"] == 256 and u["name"] == "autograd"
    assert u["update_ms"] > 0 and u["bare_forward_backward_ms"] > 0
    assert u["loss_forward_backward_ms"] > 0
    assert u["ratio"] == pytest.approx(u["update_ms"] / u["bare_forward_backward_ms"])
    assert u["met"] == (u["ratio"] <= 1.3)
    levers = {row["lever"]: row for row in result["levers"]}
    assert list(levers) == ["float32", "channels_last", "bf16 autocast", "channels_last + bf16"]
    assert levers["float32"]["speedup"] == 1.0 and levers["float32"]["grad_rel_error"] == 0.0
    for row in levers.values():
        assert row["ms"] > 0 and row["speedup"] > 0 and 0 <= row["grad_rel_error"] < 0.1
    assert levers["channels_last"]["grad_rel_error"] < 1e-4     # the same float32 arithmetic
    replay = result["replay"]
    assert replay["capacity"] == 100_000 and replay["transitions"] > 0.99 * replay["capacity"]
    assert 84 * 84 < replay["bytes_per_transition"] <= 1.1 * 84 * 84
    assert replay["sample_ms"] > 0 and replay["add_step_ms"] > 0
    table = (out / "atari.md").read_text()
    assert "| 1 rank, 1 thread vs SB3 1 thread |" in table and "target 1.5x" in table
    assert "ratio update / bare" in table and "| bf16 autocast |" in table
    assert not (tmp_path / "docs").exists() and "rewritten" not in res.output   # quick: no docs


def test_the_table_without_sb3_says_so_and_has_no_ratio():
    from mpirl.bench.atari import table
    mpirl = {"sps": 200.0, "ranks": 1, "threads_per_rank": 1}
    float32 = {"sps": 100.0, "ranks": 1, "threads_per_rank": 1}
    lever = {"lever": "float32", "compiled": False, "ms": 200.0, "speedup": 1.0,
             "grad_rel_error": 0.0, "first_call_s": 0.2}
    result = {"iterations": 3, "iteration_steps": 1024, "env_id": "ALE/Breakout-v5",
              "sb3_env_id": "BreakoutNoFrameskip-v4", "sb3_installed": False, "cores": 2,
              "load_before": None, "target_update": 1.3, "torch": "2", "avx512_bf16": False,
              "amx_bf16": False, "native_bf16": False, "levers": [lever],
              "pairings": [{"name": "1 rank, 1 thread vs SB3 1 thread", "mpirl": mpirl,
                            "mpirl_float32": float32, "sb3": None, "ratio": None,
                            "ratio_float32": None, "met": None}],
              "replay": {"capacity": 1000, "lanes": 16, "batch": 32, "transitions": 990,
                         "bytes_per_transition": 7100.0, "frame_bytes": 7056,
                         "naive_bytes_per_transition": 56448, "sample_ms": 0.2,
                         "add_step_ms": 0.5, "met": True},
              "update": {"minibatch": 256, "name": "autograd", "minibatches_timed": 16,
                         "update_ms": 250.0, "loss_forward_backward_ms": 240.0,
                         "bare_forward_backward_ms": 200.0, "ratio": 1.25, "met": True}}
    text = table(result)
    assert "| 1 rank, 1 thread vs SB3 1 thread | 200 | 100 | 1 x 1 | — | — | — | — | — |" in text
    assert "SB3 is not installed" in text and "1.25x (target within 1.3x: met)" in text
    assert "Replay targets: met." in text
