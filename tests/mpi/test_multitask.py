"""Multi-task collectives at 4 ranks against single-process references: task-weighted gradients
(one Allreduce), task-local observation statistics, PopArt statistics shared by all replicas."""
import numpy as np
import pytest
import torch

from mpirl.dist import World
from mpirl.dist.collectives import FlatGradients, check_in_sync
from mpirl.dist.sync import AllreduceSync
from mpirl.dist.task_sync import TaskWeightedSync
from mpirl.models.multitask import MultiTaskActorCritic
from mpirl.config import parse_args
from mpirl.multitask import MultiTask, TaskObsNormalizer, TaskValueNorm
from mpirl.taskspec import assign_tasks

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


def _grads(model):
    """Every parameter's gradient; zeros where the batch did not reach it (other tasks' heads)."""
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            for name, p in model.named_parameters()}


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("weighting", ["equal", "ranks"])
def test_trunk_gradient_is_the_task_weighted_mean_and_heads_the_per_task_means(weighting):
    world = World()
    tasks = assign_tasks(world.size, [1] * len(ACTIONS))
    counts = [tasks.count(k) for k in range(len(ACTIONS))]
    model = _model(tasks[world.rank])
    grads = FlatGradients(model.parameters(), world)
    sync = TaskWeightedSync(AllreduceSync(world, grads), grads, model.owner(), tasks[world.rank],
                            counts, weighting)
    _loss(model, world.rank).backward()
    sync.gradients_ready()

    # One process: every rank's gradient, then the weighted means by hand.
    per_rank = []
    for r in range(world.size):
        reference = _model(tasks[r])
        _loss(reference, r).backward()
        per_rank.append(_grads(reference))
    K = len(ACTIONS)
    for name, p in model.named_parameters():
        if name.startswith("trunk."):
            if weighting == "equal":
                expected = sum(sum(per_rank[r][name] for r in range(world.size) if tasks[r] == k)
                               / counts[k] for k in range(K)) / K
            else:
                expected = sum(g[name] for g in per_rank) / world.size
        else:
            k = int(name.split(".")[1])  # heads.<k>.…
            own = [per_rank[r][name] for r in range(world.size) if tasks[r] == k]
            expected = sum(own) / counts[k]
        torch.testing.assert_close(p.grad, expected, atol=1e-6, rtol=1e-5, msg=name)
    if weighting == "equal" and world.size == 4:  # the two weightings really differ here
        ranks_mean = sum(g["trunk.0.0.weight"] for g in per_rank) / world.size
        assert not torch.allclose(model.trunk[0][0].weight.grad, ranks_mean, atol=1e-4)


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
    norm.sync(group)
    mine = np.concatenate([d for r, d in enumerate(data) if tasks[r] == task])
    np.testing.assert_allclose(norm.rms.mean, mine.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.rms.var, mine.var(0), rtol=1e-10)
    state = norm.state_dict()
    assert sorted(state) == ["A", "B"] and state[["A", "B"][task]]["count"] == len(mine)


@pytest.mark.mpi(min_size=2)
def test_popart_statistics_are_per_task_and_identical_on_every_replica():
    world = World()
    tasks = assign_tasks(world.size, [1, 1, 1][:min(3, world.size)])
    task = tasks[world.rank]
    model = _model(task)
    value_norm = TaskValueNorm(world, task, model, learn=True)
    returns = torch.full((40,), 1000.0 ** task) + torch.arange(40.0) * world.rank
    values, norm_returns = value_norm.update(returns.clone(), returns)
    check_in_sync(world, model)                       # every replica rescaled the same way
    mean = world.allgather_obj(model.popart.mean.numpy().copy())
    for other in mean[1:]:
        np.testing.assert_array_equal(other, mean[0])
    for k in set(tasks):                              # first update: the plain mean of the task
        pooled = torch.cat([torch.full((40,), 1000.0 ** k) + torch.arange(40.0) * r
                            for r in range(world.size) if tasks[r] == k])
        assert float(model.popart.mean[k]) == pytest.approx(float(pooled.mean()), rel=1e-9)
    assert abs(float(norm_returns.mean())) < 5       # targets reach the head at unit scale


# -- per-task bookkeeping (both tasks' evaluation results set by hand) --------------------------
class _Run:
    target, solved_at_step, solved_at_time_s = 475.0, None, None

    class log:
        print = staticmethod(lambda *a: None)

    @staticmethod
    def clock():
        return 12.5


@pytest.mark.mpi(min_size=2)
def test_each_task_is_solved_on_its_own_target_and_the_run_when_all_are():
    run = _Run()
    cfg = parse_args(["--tasks", "CartPole-v1,Acrobot-v1", "--task-targets", "Acrobot-v1:-90"])
    tasks = MultiTask(cfg, World(), run)
    assert run.target is None and tasks.targets == [475.0, -90.0]
    tasks.latest_train_returns = [480.0, None]
    assert tasks.reached_target_in_training()
    tasks.make_evaluator(seed=0).returns = np.array([500.0, -95.0])
    record = {}
    tasks.record_eval(record, global_step=1000)
    assert record == {"CartPole-v1/eval_return_mean": 500.0, "CartPole-v1/solved": True,
                      "Acrobot-v1/eval_return_mean": -95.0, "Acrobot-v1/solved": False}
    assert run.solved_at_step is None and not tasks.reached_target_in_training()  # now solved
    tasks.latest_train_returns = [400.0, -80.0]
    assert tasks.reached_target_in_training()
    tasks.evaluator.returns = np.array([300.0, -85.0])   # CartPole slipped: stays solved
    tasks.record_eval(record, global_step=2000)
    assert run.solved_at_step == 2000 and run.solved_at_time_s == 12.5
    summary = tasks.summary()["tasks"]
    assert summary["CartPole-v1"]["solved_at_step"] == 1000
    assert summary["Acrobot-v1"] == {"ranks": World().size // 2, "target_return": -90.0,
                                     "eval_return_mean": -85.0,
                                     "episode_return_mean": None, "solved": True,
                                     "solved_at_step": 2000, "solved_at_time_s": 12.5}
