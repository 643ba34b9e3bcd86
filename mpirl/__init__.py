"""mpirl: reinforcement learning that trains on HPC clusters with MPI."""
__version__ = "0.1.0"


def load(run_dir: str, checkpoint: str = "best", task: str | None = None):
    """The policy a run trained, for your own scripts: ``policy.act(obs)``. No MPI is needed.
    ``checkpoint``: ``best`` (its best evaluation), ``latest``, or a checkpoint's path; ``task``:
    which of a multi-task run's tasks to act in. See mpirl.trained."""
    from mpirl.trained import load as load_trained   # (torch loads only when asked for)
    return load_trained(run_dir, checkpoint, task)
