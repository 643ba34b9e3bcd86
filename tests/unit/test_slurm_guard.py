"""The Slurm world-size guard and job naming, as plain functions of (world size, environment).

The environments below are the variables Slurm and the MPI launchers really set (read off the
local cluster: an srun step, a batch shell, mpirun inside an allocation).
"""
import pytest

from mpirl.slurm import SlurmJob, WorldSizeError, check_world_size, expected_world_size

BATCH = {"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "4",
         "SLURM_NPROCS": "4", "SLURM_PROCID": "0"}
SRUN_STEP = {**BATCH, "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NUM_TASKS": "4",
             "PMIX_RANK": "0"}
MPIRUN_IN_JOB = {**BATCH, "OMPI_COMM_WORLD_SIZE": "3", "OMPI_MCA_orte_launch": "1"}


def test_outside_slurm_nothing_is_checked():
    assert expected_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) is None
    check_world_size(1, {})
    check_world_size(7, {"SLURM_NTASKS": "4"})  # a stray variable without a job is not Slurm


def test_srun_step_of_the_right_size_passes():
    assert expected_world_size(SRUN_STEP) == (4, "SLURM_STEP_NUM_TASKS")
    check_world_size(4, SRUN_STEP)


def test_single_rank_copies_under_srun_are_named_as_such():
    with pytest.raises(WorldSizeError) as err:
        check_world_size(1, SRUN_STEP)
    text = str(err.value)
    assert "4 separate single-rank copies" in text and "--mpi=pmix" in text


def test_srun_step_smaller_than_the_allocation_is_fine():
    # `srun -n 2` inside a 4-task job: srun sets the step's own task count.
    step = {**SRUN_STEP, "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2"}
    check_world_size(2, step)


def test_mpirun_inside_the_allocation_is_judged_by_mpirun():
    # mpirun -n 3 in a 4-task job: OMPI_COMM_WORLD_SIZE wins over SLURM_NTASKS.
    assert expected_world_size(MPIRUN_IN_JOB) == (3, "OMPI_COMM_WORLD_SIZE")
    check_world_size(3, MPIRUN_IN_JOB)
    with pytest.raises(WorldSizeError, match="MPI's world has 1 ranks but the launcher started 3"):
        check_world_size(1, MPIRUN_IN_JOB)


def test_python_run_bare_in_a_multi_task_batch_script_is_refused():
    with pytest.raises(WorldSizeError, match="SLURM_NTASKS=4.*single process"):
        check_world_size(1, BATCH)
    check_world_size(1, {**BATCH, "SLURM_NTASKS": "1"})


def test_job_tag_and_run_dir_follow_the_log_names():
    job = SlurmJob.from_env({**BATCH, "SLURM_RESTART_COUNT": "2"})
    assert (job.tag, job.restart_count) == ("42", 2)
    assert job.run_dir("runs") == "runs/train_42"
    array = SlurmJob.from_env({**BATCH, "SLURM_JOB_ID": "43", "SLURM_JOB_NAME": "seeds.sbatch",
                               "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"})
    assert array.tag == "40_3" and array.run_dir("/r") == "/r/seeds_40_3"
    assert SlurmJob.from_env({"PATH": "/bin"}) is None
