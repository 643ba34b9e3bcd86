"""KeptRuns: a bench section's finished runs are kept and read back; nothing else is."""
from mpirl import presets
from mpirl.bench.kept import KeptRuns, kept_runs, train_key


def test_a_run_is_kept_read_back_under_its_key_and_trained_again_when_the_key_changes(tmp_path):
    calls = []

    def produce(run_dir):
        calls.append(run_dir)
        return {"steps": len(calls)}

    assert KeptRuns(tmp_path).run("a", ["x", 1], produce) == {"steps": 1}
    again = KeptRuns(tmp_path)
    assert again.run("a", ["x", 1], produce) == {"steps": 1} and len(calls) == 1
    assert again.summary()["reused"] == ["a"]
    assert KeptRuns(tmp_path).run("a", ["x", 2], produce) == {"steps": 2} and len(calls) == 2


def test_a_run_that_produced_nothing_is_not_kept(tmp_path):
    assert KeptRuns(tmp_path).run("sb3", ["k"], lambda _: None) is None   # e.g. SB3 missing
    assert not (tmp_path / "runs" / "sb3.json").exists()
    assert KeptRuns(tmp_path).run("sb3", ["k"], lambda _: {"sps": 80}) == {"sps": 80}


def test_no_run_starts_after_the_time_limit(tmp_path):
    kept = KeptRuns(tmp_path, time_limit_min=0)
    assert kept.run("a", ["k"], lambda _: {"steps": 1}) is None
    assert kept.summary()["skipped"] == ["a"]


def test_records_can_be_kept_apart_from_the_runs_own_files(tmp_path):
    class Args:
        out, time_limit, kept = str(tmp_path / "out"), None, str(tmp_path / "docs" / "kept")

    seen = []
    kept = kept_runs(Args, "zoo")
    assert kept.run("a", ["k"], lambda run_dir: seen.append(run_dir) or {"steps": 1})
    assert seen == [str(tmp_path / "out" / "runs" / "a")]
    assert (tmp_path / "docs" / "kept" / "zoo" / "a.json").exists()
    assert not (tmp_path / "out" / "runs" / "a.json").exists()
    assert kept_runs(Args, "zoo").run("a", ["k"], lambda _: {"steps": 2}) == {"steps": 1}


def test_a_training_runs_key_changes_with_its_preset_not_with_an_unrelated_new_option(
        monkeypatch):
    args = ["--env-id", "Hopper-v5", "--seed", "3"]
    key = train_key(2, args)
    assert key[:-1] == [2, *args]
    assert key[-1]["preset"] == "mujoco" and key[-1]["num_steps"] == 1024   # 2,048 over 2 ranks
    assert key[-1]["value_net"] == "separate"                           # the preset's
    assert "sync_mode" not in key[-1] and "run_dir" not in key[-1]      # at their defaults
    assert train_key(2, args) == key and train_key(1, args) != key
    mujoco = presets.load("ppo", "mujoco")
    changed = type(mujoco)(**{**vars(mujoco), "options": {**mujoco.options, "update_epochs": 5}})
    monkeypatch.setattr(presets, "for_env", lambda algo, env_id: changed)
    monkeypatch.setattr(presets, "load", lambda algo, name: changed)
    assert train_key(2, args)[-1]["update_epochs"] == 5                 # the preset was edited
