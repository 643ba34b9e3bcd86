"""``python -m mpirl.bench scaling --quick`` end to end: it launches the trainer at 1 and 2 ranks
for every sync mode and writes the documented JSON, table and plots."""
import json
import sys

import pytest

from tests.launch import run

ROW_KEYS = {"scaling", "mode", "ranks", "envs_per_rank", "oversubscribed", "global_steps",
            "updates_timed", "sps", "speedup", "efficiency", "update_time_s", "comm_time_s",
            "comm_share", "drift", "drift_mean"}


def test_quick_scaling_bench_writes_one_row_per_rank_count_mode_and_kind(tmp_path):
    out = tmp_path / "bench"
    run([sys.executable, "-m", "mpirl.bench", "scaling", "--quick", "--out", str(out)],
        timeout=240).check()
    result = json.loads((out / "scaling.json").read_text())
    for key in ("section", "machine", "quick", "seconds", "ranks", "modes", "kinds", "setup",
                "rows", "allreduce_latency", "learning", "targets", "met", "plots"):
        assert key in result, key
    latency = {e["ranks"]: e for e in result["allreduce_latency"]}
    assert sorted(latency) == [1, 2] and latency[2]["allreduce_us"] > 0
    assert latency[2]["gradient_floats"] == 4675 and 0 < latency[2]["transfer_share"] < 1
    assert result["section"] == "scaling" and result["quick"] is True
    assert result["modes"] == ["allreduce", "overlap", "local-sgd"]
    assert result["kinds"] == ["weak", "strong"] and result["ranks"] == [1, 2]
    rows = result["rows"]
    assert sorted((r["scaling"], r["mode"], r["ranks"]) for r in rows) == sorted(
        (k, m, n) for k in result["kinds"] for m in result["modes"] for n in result["ranks"])
    for r in rows:
        assert set(r) == ROW_KEYS, set(r) ^ ROW_KEYS
        assert r["sps"] > 0 and 0 <= r["comm_share"] < 1
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["ranks"])
        per_update = 32 * r["envs_per_rank"] * r["ranks"]
        assert r["global_steps"] == result["setup"]["updates"] * per_update
        if r["ranks"] == 1:   # nothing to average with: no communication, no drift
            assert r["comm_share"] == 0 and 0 < r["speedup"] <= 1 and r["drift_mean"] is None
        elif r["mode"] == "local-sgd":
            assert r["drift_mean"] > 0 and [u for u, _ in r["drift"]] == [2, 4]
        else:
            assert r["comm_share"] > 0 and r["drift"] == []
    assert max(r["speedup"] for r in rows if r["ranks"] == 1) == 1   # the one baseline
    strong = [r for r in rows if r["scaling"] == "strong" and r["ranks"] == 2]
    assert all(r["envs_per_rank"] == result["setup"]["envs"] // 2 for r in strong)
    assert result["learning"] is None and result["met"]["local_sgd_steps_ratio"] is None
    for name in ("sps", "efficiency", "comm_share", "drift"):
        png = out / f"scaling_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "scaling.md").read_text()
    assert table.count("\n| weak |") == 6 and table.count("\n| strong |") == 6
