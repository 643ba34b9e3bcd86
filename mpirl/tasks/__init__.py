"""Multi-task collaboration (``--tasks``): one agent, one task per rank.

    spec       --tasks and --task-targets parsed, ranks assigned to tasks (torch-free)
    weights    the arithmetic of task-weighted gradient averaging (pure functions)
    sync       task-weighted averaging through the run's gradient sync, parked heads frozen
    pieces     the task's normaliser, PopArt value normalisation, the evaluator of every task
    single     SingleTask: the plain case (--env-id), the same interface
    multi      MultiTask: this rank's task and the pieces it trains with

:func:`make_tasks` gives a trainer the one it needs.
"""
from __future__ import annotations


def make_tasks(cfg, world, scoreboard, log=print):
    """What this rank trains: the one --env-id (SingleTask), or its share of --tasks (MultiTask,
    which follows the run's ``scoreboard`` for parked tasks)."""
    # (imported here: the checks made before training import tasks.spec without torch)
    if cfg.tasks:
        from mpirl.tasks.multi import MultiTask
        return MultiTask(cfg, world, scoreboard, log)
    from mpirl.tasks.single import SingleTask
    return SingleTask(cfg, world)
