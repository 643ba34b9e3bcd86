"""``python -m mpirl.bench zoo --quick`` end to end: seeds of two envs at 2 ranks, the published
references and verdicts, the SB3 race, a learning-curve PNG per env; its kept runs read back, and
a seed left for later by --time-limit."""
import json
import sys

from tests.launch import run


def test_quick_zoo_bench_writes_the_table_the_verdicts_and_a_curve_per_env(tmp_path):
    out = tmp_path / "bench"
    res = run([sys.executable, "-m", "mpirl.bench", "zoo", "--quick", "--out", str(out)],
              timeout=300).check()
    result = json.loads((out / "zoo.json").read_text())
    rows = {r["env_id"]: r for r in result["rows"]}
    assert sorted(rows) == ["CartPole-v1", "Pendulum-v1"] and result["ranks"] == 2
    cartpole, pendulum = rows["CartPole-v1"], rows["Pendulum-v1"]
    assert cartpole["preset"] == "none" and pendulum["preset"] == "Pendulum-v1"
    assert cartpole["target"] == 497.54 and cartpole["target_source"] == "Baselines ppo2"
    assert pendulum["target"] == -172.2 - 104.2                  # rl-zoo's mean minus its std
    for row in rows.values():
        assert len(row["finals"]) == len(result["seeds"]) == 2
        assert row["met"] == (row["mean"] >= row["target"])
        assert all(len(curve) > 0 for curve in row["curves"])
        assert (out / f"zoo-{row['env_id']}.png").stat().st_size > 10_000
    race = result["race"]
    assert [m["ranks"] for m in race["mpirl"]] == [1, 2]
    assert all(m["sps"] > 0 for m in race["mpirl"])
    table = (out / "zoo.md").read_text()
    assert "| CartPole-v1 | ppo | none |" in table and "Targets met:" in table
    assert not (tmp_path / "docs").exists() and "rewritten" not in res.output   # quick: no docs

    # The same command reads every run back; a seed whose run is gone is to come after the limit
    (out / "runs" / "Pendulum-v1-1.json").unlink()
    again = run([sys.executable, "-m", "mpirl.bench", "zoo", "--quick", "--out", str(out),
                 "--time-limit", "0"], timeout=120).check()
    later = json.loads((out / "zoo.json").read_text())
    assert later["race"]["mpirl"] == race["mpirl"] and later["kept"]["skipped"] == ["Pendulum-v1-1"]
    cartpole_again, pendulum_again = later["rows"]
    assert cartpole_again["finals"] == cartpole["finals"]
    assert pendulum_again["finals"] == pendulum["finals"][:1] and pendulum_again["met"] is None
    assert pendulum_again["seeds_to_come"] == 1
    assert "(1 seeds, 1 to come)" in again.output and "Stopped by --time-limit" in again.output
