"""``python -m mpirl.bench sac --quick`` end to end: the race of SB3's SAC against ``--algo sac``
at 1 and 2 ranks, replay sharing against none over seeds, the verdicts, the curves as PNGs; the
runs it keeps, read back by the same command and left for later by --time-limit."""
import json
import sys

from tests.launch import run


def test_quick_sac_bench_writes_the_race_the_sharing_table_and_curves(tmp_path):
    out = tmp_path / "bench"
    res = run([sys.executable, "-m", "mpirl.bench", "sac", "--quick", "--out", str(out)],
              timeout=400, cwd=tmp_path).check()
    result = json.loads((out / "sac.json").read_text())
    assert result["section"] == "sac" and result["quick"] is True and result["ranks"] == 2
    assert result["long"] is None and result["seeds"] == [0, 1]

    race = result["race"]
    assert race["env_id"] == "Pendulum-v1" and race["preset"] == "mujoco"   # no MuJoCo in quick
    assert race["settings"]["learning_starts"] == 1000 and race["settings"]["ent_coef"] == "auto"
    assert [m["ranks"] for m in race["mpirl"]] == [1, 2]
    for m in race["mpirl"]:
        assert m["sps"] > 0 and m["steps"] <= race["steps"] and m["curve"]
        assert m["gradient_steps"] == m["steps"] - 1000            # one per global step after
        # stopped at the mark, or ran the whole budget without reaching it
        assert (m["reached"] is None) == (m["steps"] == race["steps"] and m["final_eval"] < -400)
        assert m["reached"] is None or m["reached"][0] == m["steps"]
    if race["sb3"] is not None:                                   # SB3 installed
        assert race["sb3"]["sps"] > 0 and race["sb3"]["curve"]

    [sharing] = result["sharing"]
    assert sharing["env_id"] == "Pendulum-v1" and sharing["preset"] == "Pendulum-v1"
    assert [m["mode"] for m in sharing["modes"]] == ["allgather", "none"]
    for mode in sharing["modes"]:
        assert [r["seed"] for r in mode["runs"]] == [0, 1] and mode["seeds_to_come"] == 0
        assert mode["reached"] == sum(r["reached"] is not None for r in mode["runs"])
        assert all(isinstance(r["final_eval"], float) for r in mode["runs"])

    assert result["plots"] and all((out / p.split("/")[-1]).stat().st_size > 10_000
                                   for p in result["plots"])
    assert (out / "sac-race.png").exists() and (out / "sac-sharing-Pendulum-v1.png").exists()
    table = (out / "sac.md").read_text()
    assert "| mpirl, 2 rank(s) |" in table and "| allgather | " in table and "| none | " in table
    if race["sb3"] is not None:
        assert "Target: mpirl at 2 ranks reaches -400 at least 1.5x sooner" in table
        assert race["met"] in (True, False, None)
        assert (race["met"] is True) == (race["ratio"] is not None and race["ratio"] >= 1.5)
    assert not (tmp_path / "docs").exists() and "rewritten" not in res.output   # quick: no docs
    kept = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(kept) == 4 + 2 + (race["sb3"] is not None)          # 4 sharing, 2 race, SB3

    # The same command reads every run back; a changed setting trains afresh, but not after
    # --time-limit, and the table says what is to come.
    again = run([sys.executable, "-m", "mpirl.bench", "sac", "--quick", "--out", str(out),
                 "--time-limit", "0"], timeout=120, cwd=tmp_path).check()
    assert json.loads((out / "sac.json").read_text())["race"] == race
    assert f"{len(kept)} run(s) were kept from an earlier invocation" in again.output
    record = json.loads((out / "runs" / "race-mpirl-1.json").read_text())
    record["key"][0] = "another setting"
    (out / "runs" / "race-mpirl-1.json").write_text(json.dumps(record))
    run([sys.executable, "-m", "mpirl.bench", "sac", "--quick", "--out", str(out),
         "--time-limit", "0"], timeout=120, cwd=tmp_path).check()
    later = json.loads((out / "sac.json").read_text())
    assert later["kept"]["skipped"] == ["race-mpirl-1"]
    assert [m.get("pending", False) for m in later["race"]["mpirl"]] == [True, False]
    assert "| mpirl, 1 rank(s) | to come |" in (out / "sac.md").read_text()
    assert "Stopped by --time-limit: 1 run(s) to come (race-mpirl-1)" in (out / "sac.md").read_text()


def test_the_curve_is_the_last_ten_episodes_and_the_verdict_on_the_numbers(tmp_path):
    from mpirl.bench import sac
    lines = [{"global_step": 2 * u, "time_s": float(u), "episodes": 0} for u in range(1, 4)]
    # 2 ranks: each logged update ends 2 episodes; returns -500 x 4 updates, then 0 x 5
    lines += [{"global_step": 2 * u, "time_s": float(u), "episodes": 2,
               "episode_return_mean": -500.0 if u < 8 else 0.0} for u in range(4, 13)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    curve = sac.mpirl_curve(str(tmp_path))
    assert [p[3] for p in curve] == [2, 4, 6, 8, 10, 10, 10, 10, 10]
    assert [p[2] for p in curve][3:6] == [-500.0, -400.0, -300.0]
    assert curve[-1] == [24, 12.0, 0.0, 10]
    assert sac.stop_at(-200)[:3] == ["--target-return", "-200.0", "--stop-on-solve"]

    runs = [{"reached": r} for r in ([10, 1.0], [30, 3.0], None)]
    assert sac.median_to_mark(runs, 0) == 30 and sac.median_to_mark(runs[1:], 0) is None
    assert sac.median_to_mark(runs[:2], 1) == 3.0                 # the upper median

    sb3 = {"reached": [100, 30.0], "wall_s": 90.0}
    assert sac.race_verdict(None, {"reached": [1, 1.0]})["met"] is None
    assert sac.race_verdict(sb3, None)["met"] is None             # mpirl's run still to come
    assert sac.race_verdict(sb3, {"reached": None}) == {"ratio": None, "bound": False,
                                                        "met": False}
    assert sac.race_verdict(sb3, {"reached": [50, 20.0]}) == {"ratio": 1.5, "bound": False,
                                                              "met": True}
    assert sac.race_verdict(sb3, {"reached": [50, 25.0]})["met"] is False
    never = {"reached": None, "wall_s": 90.0}
    assert sac.race_verdict(never, {"reached": [50, 30.0]}) == {"ratio": 3.0, "bound": True,
                                                                "met": True}
    assert sac.race_verdict(never, {"reached": [50, 80.0]})["met"] is None   # undecided
