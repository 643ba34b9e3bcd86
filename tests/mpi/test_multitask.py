"""Multi-task collectives at 4 ranks against single-process references: task-weighted gradients
(one Allreduce), task-local observation statistics, PopArt statistics shared by all replicas;
parked tasks (--park-solved-tasks): zero gradient, renormalised weights, idle waiting."""
import time

import numpy as np
import pytest
import torch

from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients, check_in_sync
from mpirl.comm.sync import AllreduceSync
from mpirl.tasks.sync import TaskWeightedSync
from mpirl.models.multitask import MultiTaskActorCritic
from mpirl.config import parse_args
from mpirl.tasks.multi import MultiTask
from mpirl.tasks.pieces import TaskObsNormalizer, TaskValueNorm
from mpirl.tasks.spec import assign_tasks
from mpirl.scoreboard import Scoreboard
from mpirl.train import make_scoreboard

NPROCS = (4,)
TIMEOUT = 120

ACTIONS = [2, 3, 3]          # three tasks at four ranks, round-robin: 2, 1, 1 ranks
WIDTH = 6


def _model(task):
    torch.manual_seed(0)
    model = MultiTaskActorCritic(WIDTH, ACTIONS, hidden_sizes=(16, 16))
    model.task = task
    return model


def _loss(model, rank):
    """A PPO-like scalar from rank ``rank``'s own batch (its task set in ``model.task``)."""
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(24, model.obs_dim, generator=g)
    target = torch.randn(24, generator=g) * (1 + rank)
    logits, value = model.split(model(x))
    return -torch.log_softmax(logits, -1)[:, 0].mean() + ((value - target) ** 2).mean()


def _expected(per_rank, tasks, counts, name, weighting, parked=None):
    """The single-process reference of one parameter's averaged gradient: the trunk's weighted
    mean over the tasks that train (parked ones left out), a head's mean over its task's ranks
    (0 for a parked task's head)."""
    parked = parked or [False] * len(counts)
    training = [k for k in range(len(counts)) if not parked[k]]
    if name.startswith("trunk."):
        if weighting == "equal":
            return sum(sum(per_rank[r][name] for r in range(len(tasks)) if tasks[r] == k)
                       / counts[k] for k in training) / len(training)
        ranks = [r for r in range(len(tasks)) if not parked[tasks[r]]]
        return sum(per_rank[r][name] for r in ranks) / len(ranks)
    k = int(name.split(".")[1])  # heads.<k>.…
    if parked[k]:
        return torch.zeros_like(per_rank[0][name])
    return sum(per_rank[r][name] for r in range(len(tasks)) if tasks[r] == k) / counts[k]


def _grads(model):
    """Every parameter's gradient; zeros where the batch did not reach it (other tasks' heads)."""
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            for name, p in model.named_parameters()}


def _weighted_setup(world, weighting):
    """This rank's model, flat gradients and task-weighted sync; the rank-to-task layout."""
    tasks = assign_tasks(world.size, [1] * len(ACTIONS))
    counts = [tasks.count(k) for k in range(len(ACTIONS))]
    model = _model(tasks[world.rank])
    grads = FlatGradients(model.parameters(), world)
    sync = TaskWeightedSync(AllreduceSync(world, grads), grads, model.owner(), tasks[world.rank],
                            counts, weighting)
    return tasks, counts, model, grads, sync


def _every_rank_gradients(world, tasks):
    """One process: every rank's own gradient, each parameter's (zeros where not reached)."""
    per_rank = []
    for r in range(world.size):
        reference = _model(tasks[r])
        _loss(reference, r).backward()
        per_rank.append(_grads(reference))
    return per_rank


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("weighting", ["equal", "ranks"])
def test_trunk_gradient_is_the_task_weighted_mean_and_heads_the_per_task_means(weighting):
    world = World()
    tasks, counts, model, grads, sync = _weighted_setup(world, weighting)
    _loss(model, world.rank).backward()
    sync.gradients_ready()

    per_rank = _every_rank_gradients(world, tasks)  # then the weighted means by hand
    for name, p in model.named_parameters():
        expected = _expected(per_rank, tasks, counts, name, weighting)
        torch.testing.assert_close(p.grad, expected, atol=1e-6, rtol=1e-5, msg=name)
    if weighting == "equal" and world.size == 4:  # the two weightings really differ here
        ranks_mean = sum(g["trunk.0.0.weight"] for g in per_rank) / world.size
        assert not torch.allclose(model.trunk[0][0].weight.grad, ranks_mean, atol=1e-4)


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize("weighting", ["equal", "ranks"])
@pytest.mark.parametrize("parked", [[False, True, False], [True, False, False]])
def test_parked_tasks_add_zero_gradient_and_the_rest_keep_their_exact_weighted_mean(weighting,
                                                                                   parked):
    """Three tasks at 4 ranks (2, 1, 1 ranks), one parked: its ranks still enter the Allreduce,
    holding a real gradient of their own, and add nothing; the trunk gets the weighted mean over
    the two tasks that train, their heads their own means, the parked head exactly 0."""
    world = World()
    tasks, counts, model, grads, sync = _weighted_setup(world, weighting)
    sync.set_parked(parked)
    _loss(model, world.rank).backward()  # a parked rank's gradient must not count either
    assert grads.flat.abs().sum() > 0
    sync.gradients_ready()
    averaged = {name: p.grad.clone() for name, p in model.named_parameters()}
    every = world.allgather_obj(grads.flat.numpy().tobytes())
    # Unparked again: the plain weighting, through the blocking Allreduce as before.
    sync.set_parked([False] * len(ACTIONS))
    grads.zero()
    _loss(model, world.rank).backward()
    sync.gradients_ready()
    # (every collective is behind us: a failing check below cannot leave a rank waiting)

    per_rank = _every_rank_gradients(world, tasks)
    for name, grad in averaged.items():
        expected = _expected(per_rank, tasks, counts, name, weighting, parked)
        torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5, msg=name)
        if not name.startswith("trunk.") and parked[int(name.split(".")[1])]:
            assert not grad.any(), name
    # ... and it is not the mean without parking (the parked task's gradient really is left out)
    unparked = _expected(per_rank, tasks, counts, "trunk.0.0.weight", weighting)
    assert not torch.allclose(averaged["trunk.0.0.weight"], unparked, atol=1e-4)
    assert all(b == every[0] for b in every)  # every replica: the same gradient, bit for bit
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, _expected(per_rank, tasks, counts, name, weighting),
                                   atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.mpi(min_size=2)
def test_a_parked_tasks_head_holds_still_while_adams_momentum_would_move_it():
    from mpirl.optim import FlatAdam
    world = World()
    tasks = assign_tasks(world.size, [1] * len(ACTIONS))
    model = _model(tasks[world.rank])
    grads = FlatGradients(model.parameters(), world)
    optimizer = FlatAdam(grads, lr=1e-2)
    sync = TaskWeightedSync(AllreduceSync(world, grads), grads, model.owner(), tasks[world.rank],
                            [tasks.count(k) for k in range(len(ACTIONS))], "equal", optimizer)

    def update(parked):
        sync.set_parked(parked)
        grads.zero()
        if not parked[tasks[world.rank]]:
            _loss(model, world.rank).backward()
        sync.gradients_ready()
        optimizer.step()

    heads = {name: p for name, p in model.named_parameters() if name.startswith("heads.")}
    for _ in range(3):   # momentum builds up in every head
        update([False] * len(ACTIONS))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for _ in range(3):   # task 1 parked: its head gets a zero gradient
        update([False, True, False])
    for name, p in heads.items():
        moved = not torch.equal(p, before[name])
        assert moved == (not name.startswith("heads.1.")), name
    assert not torch.equal(dict(model.named_parameters())["trunk.0.0.weight"],
                           before["trunk.0.0.weight"])
    check_in_sync(world, model)
    update([False] * len(ACTIONS))   # trains again: moves again
    assert all(not torch.equal(p, before[n]) for n, p in heads.items() if n.startswith("heads.1."))


@pytest.mark.mpi(min_size=2)
def test_parked_ranks_wait_for_the_others_without_spinning_a_core():
    """The training ranks take 1 s to arrive (a rollout); the parked ranks, there at once, spend
    that second asleep rather than polling MPI (a blocking Allreduce with yield_when_idle burns
    nearly all of it here: nothing else wants the cores). Both collectives the parked ranks wait
    in are covered: the gradient Allreduce and PopArt's statistics."""
    world = World()
    tasks = assign_tasks(world.size, [1, 1])
    task = tasks[world.rank]
    parked = [False, True]
    torch.manual_seed(0)
    model = MultiTaskActorCritic(WIDTH, [2, 3], hidden_sizes=(16, 16))
    model.task = task
    grads = FlatGradients(model.parameters(), world)
    sync = TaskWeightedSync(AllreduceSync(world, grads), grads, model.owner(), task,
                            [tasks.count(k) for k in range(2)], "equal")
    sync.set_parked(parked)
    value_norm = TaskValueNorm(world, task, model, learn=True)
    value_norm.parked = parked
    times = []
    for step in (lambda: sync.gradients_ready(),
                 lambda: value_norm.allreduce_update(torch.zeros(0), torch.full((8,), float(task)))
                 if not parked[task] else value_norm.allreduce_update(torch.zeros(0), torch.zeros(0))):
        world.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        if not parked[task]:
            time.sleep(1.0)
        step()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    check_in_sync(world, model)
    every = world.allgather_obj(times)  # checked on every rank: none is left waiting
    for r, rank_times in enumerate(every):
        if parked[tasks[r]]:
            for wall, cpu in rank_times:
                assert wall > 0.9 and cpu < 0.2 * wall, (r, wall, cpu)
    assert float(model.popart.mean[1]) == 0.0 and int(model.popart.updates[1]) == 0  # untouched
    assert float(model.popart.mean[0]) == pytest.approx(0.0) and int(model.popart.updates[0]) == 1


@pytest.mark.mpi(min_size=2)
def test_observation_statistics_are_task_local_and_checkpoints_hold_every_task():
    world = World()
    tasks = assign_tasks(world.size, [1, 1])
    task = tasks[world.rank]
    group = world.split(color=task)
    dims = [3, 5]
    norm = TaskObsNormalizer(dims[task], max(dims), task, ["A", "B"], world)
    data = [np.random.default_rng(r).normal(10 * tasks[r], 1 + r, (50, dims[tasks[r]]))
            for r in range(world.size)]
    out = norm(data[world.rank])
    assert out.shape == (50, 5 + 2) and (out[:, 5 + task] == 1).all()
    norm.allreduce_statistics(group)
    mine = np.concatenate([d for r, d in enumerate(data) if tasks[r] == task])
    np.testing.assert_allclose(norm.rms.mean, mine.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.rms.var, mine.var(0), rtol=1e-10)
    state = norm.allgather_state_dict()
    assert sorted(state) == ["A", "B"] and state[["A", "B"][task]]["count"] == len(mine)


@pytest.mark.mpi(min_size=2)
def test_popart_statistics_are_per_task_and_identical_on_every_replica():
    world = World()
    tasks = assign_tasks(world.size, [1, 1, 1][:min(3, world.size)])
    task = tasks[world.rank]
    model = _model(task)
    value_norm = TaskValueNorm(world, task, model, learn=True)
    returns = torch.full((40,), 1000.0 ** task) + torch.arange(40.0) * world.rank
    values, norm_returns = value_norm.allreduce_update(returns.clone(), returns)
    check_in_sync(world, model)                       # every replica rescaled the same way
    mean = world.allgather_obj(model.popart.mean.numpy().copy())
    for other in mean[1:]:
        np.testing.assert_array_equal(other, mean[0])
    for k in set(tasks):                              # first update: the plain mean of the task
        pooled = torch.cat([torch.full((40,), 1000.0 ** k) + torch.arange(40.0) * r
                            for r in range(world.size) if tasks[r] == k])
        assert float(model.popart.mean[k]) == pytest.approx(float(pooled.mean()), rel=1e-9)
    assert abs(float(norm_returns.mean())) < 5       # targets reach the head at unit scale


# -- per-task bookkeeping on the run's scoreboard (both tasks' evaluation results set by hand) ----
def _quiet(*parts):
    pass


def _board_and_tasks(cfg, world):
    scoreboard = make_scoreboard(cfg, world.size)
    scoreboard.log = _quiet
    return scoreboard, MultiTask(cfg, world, scoreboard, log=_quiet)


@pytest.mark.mpi(min_size=2)
def test_each_task_is_solved_on_its_own_target_and_the_run_when_all_are():
    cfg = parse_args(["--tasks", "CartPole-v1,Acrobot-v1", "--task-targets", "Acrobot-v1:-90"])
    scoreboard, tasks = _board_and_tasks(cfg, World())
    assert scoreboard.target is None and scoreboard.targets == [475.0, -90.0]
    scoreboard.record_training({"CartPole-v1/episode_return_mean": 480.0}, 1, 0)
    assert scoreboard.reached_in_training()
    record = {}
    scoreboard.record_eval(record, 1000, [500.0, -95.0], time_s=12.5)
    assert record == {"eval_return_mean": 202.5,
                      "CartPole-v1/eval_return_mean": 500.0, "CartPole-v1/solved": True,
                      "Acrobot-v1/eval_return_mean": -95.0, "Acrobot-v1/solved": False}
    assert not scoreboard.solved and not scoreboard.reached_in_training()  # now solved
    scoreboard.record_training({"CartPole-v1/episode_return_mean": 400.0,
                                "Acrobot-v1/episode_return_mean": -80.0}, 1, 0)
    assert scoreboard.reached_in_training()
    scoreboard.record_eval(record, 2000, [300.0, -85.0], time_s=12.5)   # CartPole slipped:
    assert scoreboard.run_solved_at_step == 2000                        # it stays solved
    assert scoreboard.run_solved_at_time_s == 12.5
    summary = tasks.summary()["tasks"]
    assert summary["CartPole-v1"]["solved_at_step"] == 1000
    assert summary["Acrobot-v1"] == {"ranks": World().size // 2, "target_return": -90.0,
                                     "eval_return_mean": -85.0,
                                     "episode_return_mean": -80.0, "solved": True,
                                     "solved_at_step": 2000, "solved_at_time_s": 12.5,
                                     "env_steps": 2 * (World().size // 2), "parked": False,
                                     "parked_at_steps": [], "resumed_at_steps": []}
    assert not any(scoreboard.parked) and tasks.training  # without --park-solved-tasks


@pytest.mark.mpi(min_size=2)
def test_tasks_park_at_their_target_train_again_below_it_and_checkpoints_carry_it():
    world = World()
    cfg = parse_args(["--tasks", "CartPole-v1,Acrobot-v1", "--park-solved-tasks"])
    scoreboard, tasks = _board_and_tasks(cfg, world)
    model = tasks.network(None)
    grads = FlatGradients(model.parameters(), world)
    sync = tasks.weighted_sync(AllreduceSync(world, grads), grads, model, optimizer=None)
    value_norm = tasks.value_norm(model)
    plain = sync.scale.clone()

    def evaluate(returns, step):
        record = {}
        scoreboard.record_eval(record, step, returns, time_s=12.5)
        return record

    record = evaluate([480.0, -300.0], 1000)                 # CartPole reaches 475: parked
    assert scoreboard.parked == [True, False] and record["CartPole-v1/parked"] is True
    assert tasks.training == (tasks.task == 1) and tasks.ranks_training == tasks.counts[1]
    assert sync.parked == value_norm.parked == [True, False]
    if tasks.task == 0:
        assert not sync.scale.any()                          # a parked rank adds nothing
    else:                                                    # the trunk: Acrobot alone now
        trunk = torch.tensor([owner is None for owner in sync._owners]).repeat_interleave(
            torch.tensor(sync._sizes))
        np.testing.assert_allclose(sync.scale[trunk], 2 * plain[trunk], rtol=1e-6)
    saved = scoreboard.state_dict()

    evaluate([470.0, -300.0], 2000)                          # slipped below: trains again
    assert scoreboard.parked == [False, False] and tasks.training and sync.scale.equal(plain)
    evaluate([500.0, -80.0], 3000)                           # both at target: both parked
    assert scoreboard.parked == [True, True] and not tasks.training
    assert scoreboard.run_solved_at_step == 3000
    summary = tasks.summary()
    assert summary["park_solved_tasks"] is True
    assert summary["tasks"]["CartPole-v1"]["parked_at_steps"] == [1000, 3000]
    assert summary["tasks"]["CartPole-v1"]["resumed_at_steps"] == [2000]
    assert summary["tasks"]["Acrobot-v1"]["parked_at_steps"] == [3000]

    # A checkpoint carries the parked state (and the sync follows it) ...
    scoreboard.load_state_dict(saved)
    assert scoreboard.parked == [True, False] and sync.parked == [True, False]
    assert tasks.summary()["tasks"]["CartPole-v1"]["parked_at_steps"] == [1000]
    # ... a checkpoint from before parking existed parks nothing ...
    old = {k: saved[k] for k in ("solved_at_step", "solved_at_time_s", "train_returns")}
    scoreboard.load_state_dict(Scoreboard.state_from_earlier_checkpoint(
        {"solved_at_step": None, "solved_at_time_s": None}, {"tasks": old}))
    assert scoreboard.parked == [False, False] and sync.scale.equal(plain)
    # ... and resumed without --park-solved-tasks, every task trains.
    plain_board, plain_tasks = _board_and_tasks(parse_args(["--tasks", "CartPole-v1,Acrobot-v1"]),
                                                world)
    plain_board.load_state_dict(saved)
    assert plain_board.parked == [False, False] and plain_tasks.training
