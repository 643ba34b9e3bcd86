"""Every batch script in jobs/, submitted to a real Slurm cluster with a short budget.

What a user relies on: the job completes, its run directory (named after the job) holds a
summary.json from a run of the expected number of ranks; an array gives one run per seed; a
preemptible job stopped mid-run checkpoints, requeues itself, resumes and finishes the whole
budget; a trainer started without a launcher in a multi-task job is refused; the MDP solver runs
over the allocation with V shared within the node.
"""
import json
import sys
from pathlib import Path

import pytest

from tests.slurm.cluster import read_logs, show, slurm, submit, wait

pytestmark = pytest.mark.slurm

# A short but real training budget: 2 envs x 16 steps per rank per update, one epoch, a slow
# learner (short evaluation episodes).
STEPS = 2048
TRAIN = ["--total-timesteps", str(STEPS), "--num-envs", "2", "--num-steps", "16",
         "--update-epochs", "1", "--learning-rate", "1e-4", "--eval-episodes", "2",
         "--eval-interval", "1000", "--log-interval", "8", "--no-tensorboard"]
TIMEOUT = 240  # seconds for one job, start-up of every rank on 2 cores included (pytest: 300)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def completed(jobdir: Path, job_id: str, timeout: float = TIMEOUT) -> None:
    tasks = wait(job_id, timeout, logs=jobdir)
    assert [t.state for t in tasks] == ["COMPLETED"] * len(tasks), read_logs(jobdir)


def test_train_job_runs_one_mpi_job_of_n_ranks(jobdir):
    job = submit("train.sbatch", TRAIN, ["--ntasks=4"], cwd=jobdir)
    completed(jobdir, job)
    run = summary(jobdir / "runs" / f"train_{job}")
    assert run["n_ranks"] == 4 and run["status"] == "completed"
    assert run["global_steps"] >= STEPS
    log = (jobdir / f"train_{job}.out").read_text()
    assert "launcher=srun" in log and "done: " in log


def test_train_job_runs_impala_with_two_learners_and_their_actors(jobdir):
    """The same script for an actor-learner job: 2 learners, 2 actors, one MPI job."""
    job = submit("train.sbatch", ["--algo", "impala", "--learners", "2", "--num-envs", "2",
                                  "--num-steps", "16", "--total-timesteps", str(STEPS),
                                  "--eval-episodes", "2", "--no-tensorboard"],
                 ["--ntasks=4"], cwd=jobdir)
    completed(jobdir, job)
    run = summary(jobdir / "runs" / f"train_{job}")
    assert run["n_ranks"] == 4 and run["status"] == "completed"
    assert run["learners"] == 2 and run["actors"] == 2 and run["global_steps"] >= STEPS
    log = (jobdir / f"train_{job}.out").read_text()
    assert "IMPALA: 2 learner(s), 2 actor(s)" in log and "stopped the actors:" in log


def test_mdp_job_solves_over_the_allocation_with_v_shared_in_memory(jobdir):
    job = submit("mdp.sbatch", ["--random-states", "20000", "--eval-episodes", "4"],
                 ["--ntasks=4"], cwd=jobdir)
    completed(jobdir, job)
    run = summary(jobdir / "runs" / f"mdp_{job}")
    assert run["ranks"] == 4 and run["converged"] and run["exchange"] == "shared"
    assert (jobdir / "runs" / f"mdp_{job}" / "mdp.npz").exists()
    assert "launcher=srun" in (jobdir / f"mdp_{job}.out").read_text()


# Both launchers: srun --mpi=pmix (the default) and MPIRL_LAUNCHER=mpiexec inside the allocation.
@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_multinode_job_spans_nodes_times_tasks(jobdir, launcher):
    nodes = min(2, len(slurm("sinfo", "-h", "-N", "-o", "%N").split()))
    job = submit("multinode.sbatch", TRAIN, [f"--nodes={nodes}", "--ntasks-per-node=2"],
                 cwd=jobdir, env={"MPIRL_LAUNCHER": launcher})
    completed(jobdir, job)
    assert summary(jobdir / "runs" / f"multinode_{job}")["n_ranks"] == nodes * 2
    log = (jobdir / f"multinode_{job}.out").read_text()
    assert f"nodes: {nodes} x 2 tasks" in log, log


def test_seeds_array_leaves_one_distinct_run_per_seed(jobdir):
    job = submit("seeds.sbatch", TRAIN, ["--array=0-2", "--ntasks=1"], cwd=jobdir)
    completed(jobdir, job)
    runs = [summary(jobdir / "runs" / f"seeds_{job}_{seed}") for seed in range(3)]
    assert [r["n_ranks"] for r in runs] == [1, 1, 1]
    for seed in range(3):
        assert (jobdir / f"seeds_{job}_{seed}.out").exists()
    # Different seeds, different results: each task trained its own seed, from its own
    # initial weights and episodes, so the first update's losses differ between every pair.
    assert [r["seed"] for r in runs] == [0, 1, 2]
    first = [first_update(jobdir / "runs" / f"seeds_{job}_{seed}") for seed in range(3)]
    assert len({json.dumps(f, sort_keys=True) for f in first}) == 3, first


def first_update(run_dir: Path) -> dict:
    """The losses of a run's first update (its seed decides them; timings left out)."""
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {k: record[k] for k in ("policy_loss", "value_loss", "grad_norm")}


def test_scaling_job_runs_the_scaling_benchmark_in_the_allocation(jobdir):
    # --quick: the benchmark's smoke size (1 and 2 ranks); the full run adds 4 and 8.
    job = submit("scaling.sbatch", ["--quick"], cwd=jobdir)
    completed(jobdir, job)
    out = jobdir / "runs" / f"scaling_{job}"
    result = json.loads((out / "scaling.json").read_text())
    assert result["ranks"] == [1, 2]
    assert {row["ranks"] for row in result["rows"]} == {1, 2}
    assert all(row["sps"] > 0 for row in result["rows"])
    assert result["plots"] and all(
        Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result["plots"])
    assert "| 2 |" in (out / "scaling.md").read_text()


def test_requeue_job_checkpoints_requeues_and_finishes_the_budget(jobdir):
    # Long enough to be stopped mid-run: the signal takes a second or so to reach the ranks (the
    # poll below, scancel, slurmd, the batch script's trap, the launcher), and 4 x STEPS were
    # over in that time on a fast machine.
    total = 16 * STEPS
    job = submit("requeue.sbatch", ["--total-timesteps", str(total), *TRAIN[2:]],
                 ["--ntasks=2"], cwd=jobdir)
    run_dir = jobdir / "runs" / f"requeue_{job}"
    metrics = run_dir / "metrics.jsonl"
    # Mid-run: once the trainer has logged its first update, preempt it as Slurm would.
    wait(job, TIMEOUT, logs=jobdir,
         until=lambda tasks: tasks[0].finished or (metrics.exists() and metrics.stat().st_size))
    slurm("scancel", "--signal=USR1", "--batch", job)
    # The job checkpoints, requeues itself, starts again (the local cluster's short credential
    # lifetime keeps Slurm's requeue delay to seconds) and resumes.
    completed(jobdir, job)

    log = (jobdir / f"requeue_{job}.out").read_text()
    assert "got SIGUSR1" in log and f"requeueing job {job}" in log, log
    assert "stopped by signal after" in log and "checkpoint saved" in log, log
    assert "restart 1: resuming" in log, log
    assert show(job)[0].restarts == 1
    run = summary(run_dir)
    assert run["n_ranks"] == 2 and run["status"] == "completed"
    assert run["global_steps"] == total, run


def test_world_size_guard_refuses_a_trainer_started_without_a_launcher(jobdir):
    # `python -m mpirl.train` straight from a 2-task batch script: a world of one rank in a job
    # of two tasks -- what each copy sees when srun starts an MPI without Slurm support.
    command = " ".join([sys.executable, "-m", "mpirl.train", "--run-dir", "runs/bare", *TRAIN])
    job = slurm("sbatch", "--parsable", "--ntasks=2", "--job-name=bare", "--output=%x_%j.out",
                f"--chdir={jobdir}", f"--wrap={command}").strip()
    tasks = wait(job, TIMEOUT, logs=jobdir)
    assert tasks[0].state == "FAILED" and tasks[0].exit_code == 2, read_logs(jobdir)
    log = (jobdir / f"bare_{job}.out").read_text()
    assert "SLURM_NTASKS=2" in log and "single process" in log, log
    assert log.count("SLURM_NTASKS=2") == 1, log  # said once
    assert not (jobdir / "runs" / "bare" / "summary.json").exists()


def test_sweep_runs_its_grid_as_an_array_then_summarises_in_a_dependent_job(jobdir):
    grid = jobdir / "sweep.yaml"
    grid.write_text("options:\n  total-timesteps: 2048\n  num-envs: 2\n  num-steps: 16\n"
                    "  update-epochs: 1\n  eval-episodes: 2\n  tensorboard: false\n"
                    "grid:\n  learning-rate: [1.0e-4, 1.0e-3]\nseeds: [0, 1]\n")
    planner = submit("sweep.sbatch", [str(grid)], ["--ntasks=1"], cwd=jobdir)
    completed(jobdir, planner)
    log = (jobdir / f"sweep_{planner}.out").read_text()
    assert f"sweep of 4 runs in {jobdir}/runs/sweep_{planner}" in log, log
    array = log.split("array job ")[1].split(",")[0]
    summary_job = log.split("summary job ")[1].split()[0]
    completed(jobdir, array)
    completed(jobdir, summary_job)
    sweep = jobdir / "runs" / f"sweep_{planner}"
    runs = sorted(p.name for p in sweep.glob("run_*"))
    assert runs == ["run_000", "run_001", "run_002", "run_003"]
    seeds = [summary(sweep / r)["seed"] for r in runs]
    assert seeds == [0, 1, 0, 1]
    results = json.loads((sweep / "results.json").read_text())
    assert sorted(r["config"] for r in results["rows"]) == ["learning_rate=0.0001",
                                                           "learning_rate=0.001"]
    assert all(r["runs"] == r["finished"] == 2 for r in results["rows"])
    assert "| learning_rate=0.001 | 2 | 2 |" in (sweep / "results.md").read_text()
    assert (sweep / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
