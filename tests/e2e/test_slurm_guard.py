"""The trainer refuses a world that is not the job Slurm started, before doing anything.

No cluster needed: the process gets the environment srun gives each task of a 2-task step, but
(like an MPI without Slurm support) initialises MPI as a world of one rank.
"""
import sys

from tests.launch import run

SRUN_TASK = {"SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "2",
             "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}


def test_single_rank_copy_under_srun_exits_2_with_the_cause(tmp_path):
    run_dir = tmp_path / "run"
    result = run([sys.executable, "-m", "mpirl.train", "--run-dir", str(run_dir),
                  "--total-timesteps", "64"], timeout=60, env=SRUN_TASK)
    assert result.returncode == 2, result.output
    assert "2 separate single-rank copies" in result.output, result.output
    assert result.output.count("single-rank copies") == 1
    assert not run_dir.exists()  # refused before the run dir was made
