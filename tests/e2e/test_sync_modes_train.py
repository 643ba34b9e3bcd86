"""The trainer with --sync-mode overlap and local-sgd, as users run it at 2 ranks."""
import torch

from tests.e2e.conftest import final_params, read_metrics, read_summary
from tests.launch import train

STEPS = ["--total-timesteps", str(10 * 2 * 4 * 16), "--seed", "5"]   # 10 updates at 2 ranks


def test_overlap_trains_to_the_same_parameters_as_allreduce(tmp_path, tiny):
    for mode in ("allreduce", "overlap"):
        train(2, [*tiny, *STEPS, "--sync-mode", mode, "--bucket-mb", "0.002",
                  "--run-dir", str(tmp_path / mode)], timeout=120).check()
    summary = read_summary(tmp_path / "overlap")
    assert summary["status"] == "completed" and summary["global_steps"] == 1280
    # two ranks: every bucket's sum is the same two-term sum as the whole buffer's
    reference, overlapped = final_params(tmp_path / "allreduce"), final_params(tmp_path / "overlap")
    for key in reference:
        torch.testing.assert_close(overlapped[key], reference[key], atol=1e-6, rtol=0)
    assert all(m["comm_time_s"] > 0 for m in read_metrics(tmp_path / "overlap"))


def test_local_sgd_averages_every_k_updates_and_logs_drift(tmp_path, tiny):
    run_dir = tmp_path / "run"
    res = train(2, [*tiny, *STEPS, "--sync-mode", "local-sgd", "--sync-every", "4",
                    "--desync-check-interval", "4", "--run-dir", str(run_dir)], timeout=120).check()
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["global_steps"] == 1280
    metrics = read_metrics(run_dir)
    assert [m["update"] for m in metrics if "drift" in m] == [4, 8]
    assert all(0 < m["drift"] < 1 for m in metrics if "drift" in m)
    # no per-minibatch communication: only the averaging updates spend time averaging
    assert all((m["comm_time_s"] > 0) == ("drift" in m) for m in metrics)
    assert all(m["update_time_s"] > m["comm_time_s"] for m in metrics)
    assert res.output.count("done:") == 1


def test_bad_sync_every_is_reported_once_by_rank_0_with_exit_code_2(tmp_path, tiny):
    run_dir = tmp_path / "run"
    res = train(2, [*tiny, "--sync-mode", "local-sgd", "--sync-every", "0",
                    "--run-dir", str(run_dir)], timeout=60)
    assert res.returncode == 2 and not res.timed_out
    assert res.output.count("--sync-every must be >= 1, not 0") == 1
    assert not run_dir.exists()
