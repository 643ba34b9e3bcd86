"""Multi-task DQN at 4 ranks against single-process references: the gradient of a replayed global
batch that mixes tasks (task-weighted trunk, per-task heads, one Allreduce), and every task's
observation statistics on every rank."""
import numpy as np
import pytest
import torch

from mpirl.algos.dqn import dqn_loss
from mpirl.config import parse_args
from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients
from mpirl.comm.sync import AllreduceSync
from mpirl.tasks.multi import MultiTask
from mpirl.train import make_scoreboard

NPROCS = (4,)
TIMEOUT = 120

# three tasks at 4 ranks, round-robin: CartPole-v1 2 ranks, Acrobot-v1 and MountainCar-v0 1 each
TASKS = "CartPole-v1,Acrobot-v1,MountainCar-v0"
B = 16                                   # transitions per rank


def _tasks(weighting):
    cfg = parse_args(["--algo", "dqn", "--tasks", TASKS, "--task-weighting", weighting,
                      "--hidden-sizes", "16,16"])
    return MultiTask(cfg, World(), make_scoreboard(cfg, World().size), log=lambda *a: None)


def _networks(tasks):
    torch.manual_seed(0)
    return tasks.network(None), tasks.network(None)


def _global_batch(tasks, composition, n_ranks):
    """The same global batch of n_ranks x B transitions on every rank (torch tensors), and each
    transition's task: pooled (any rank's slice mixes tasks, in unequal shares: allgather,
    sharded) or own (rank r's slice is its task's: --replay-sharing none)."""
    rng = np.random.default_rng(7)
    M = n_ranks * B
    if composition == "pooled":
        task = rng.choice(len(tasks.ids), M, p=[0.6, 0.3, 0.1])
        task[:3] = [0, 1, 2]  # every task present
    else:
        task = np.repeat(tasks.assignment, B)
    x = np.zeros((2, M, tasks.width + len(tasks.ids)), np.float32)
    for k, d in enumerate(tasks.obs_dims):
        rows = task == k
        x[:, rows, :d] = rng.normal(0, 2, (2, rows.sum(), d))
    x[:, np.arange(M), tasks.width + task] = 1.0
    actions = np.array([rng.integers(tasks.action_counts[k]) for k in task])
    batch = dict(obs=torch.from_numpy(x[0]), next_obs=torch.from_numpy(x[1]),
                 actions=torch.from_numpy(actions),
                 rewards=torch.from_numpy(rng.normal(0, 1, M).astype(np.float32)),
                 dones=torch.from_numpy((rng.random(M) < 0.2).astype(np.float32)),
                 discounts=torch.full((M,), 0.97),
                 weights=torch.from_numpy(rng.uniform(0.2, 1.0, M).astype(np.float32)))
    return batch, task


def _loss(online, target, batch, rows, weights=None):
    pick = {k: v[rows] for k, v in batch.items()}
    loss, _, _ = dqn_loss(online, target, pick["obs"], pick["actions"], pick["rewards"],
                          pick["next_obs"], pick["dones"], pick["discounts"],
                          pick["weights"] if weights is None else pick["weights"] * weights,
                          double_q=True)
    return loss


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize("composition", ["pooled", "own"])
@pytest.mark.parametrize("weighting", ["equal", "ranks"])
def test_trunk_gradient_is_the_task_weighted_mean_of_a_mixed_batch(weighting, composition):
    """Each rank learns from its slice of one global batch, through the trainer's pieces
    (MultiTask.allreduce_transition_weights: one Allreduce of the batch's task counts; the task-weighted sync:
    one Allreduce of the flat gradient). After them every replica holds, for the trunk, the
    mean over tasks of each task's mean gradient (equal) or the mean over the whole batch
    (ranks), and for head k the mean over task k's transitions; on one process, each task's
    mean gradient is computed from its transitions alone."""
    world = World()
    tasks = _tasks(weighting)
    online, target = _networks(tasks)
    grads = FlatGradients(online.parameters(), world)
    sync = tasks.weighted_sync(AllreduceSync(world, grads), grads, online, optimizer=None)
    batch, task = _global_batch(tasks, composition, world.size)
    mine = np.arange(world.rank * B, (world.rank + 1) * B)
    records = np.zeros(B, tasks.transition_dtype(0))
    records["task"] = task[mine]
    weights = torch.from_numpy(tasks.allreduce_transition_weights(records))
    _loss(online, target, batch, mine, weights).backward()
    sync.gradients_ready()
    every = world.allgather_obj(grads.flat.numpy().tobytes())
    # (every collective is behind us: a failing check below cannot leave a rank waiting)

    reference_online, reference_target = _networks(tasks)
    counts = np.bincount(task, minlength=len(tasks.ids))
    per_task = []
    for k in range(len(tasks.ids)):          # task k's own mean gradient, one process
        reference_online.zero_grad()
        _loss(reference_online, reference_target, batch, np.flatnonzero(task == k)).backward()
        per_task.append({n: p.grad.clone() for n, p in reference_online.named_parameters()})
    for name, p in online.named_parameters():
        if name.startswith("trunk."):
            if weighting == "equal":
                expected = sum(g[name] for g in per_task) / len(per_task)
            else:
                expected = sum(m * g[name] for m, g in zip(counts, per_task)) / counts.sum()
        else:
            expected = per_task[int(name.split(".")[1])][name]
        torch.testing.assert_close(p.grad, expected, atol=2e-6, rtol=1e-5, msg=name)
    if composition == "pooled":  # the two weightings really differ for this batch
        other = (sum(m * g["trunk.0.weight"] for m, g in zip(counts, per_task)) / counts.sum()
                 if weighting == "equal" else
                 sum(g["trunk.0.weight"] for g in per_task) / len(per_task))
        assert not torch.allclose(online.trunk[0].weight.grad, other, atol=1e-4)
    assert all(b == every[0] for b in every)  # every replica: the same gradient, bit for bit


@pytest.mark.mpi(min_size=4)
def test_every_rank_holds_every_tasks_observation_statistics():
    """DQN's normaliser: each task's statistics are those of its ranks' observations only, and
    every rank holds all of them (replayed batches mix tasks); a stored record of any task is
    normalised with its own task's statistics, on every rank alike."""
    world = World()
    tasks = _tasks("equal")
    norm = tasks.make_envs(seed=0, replay=True).normalizer
    data = []
    for r in range(world.size):
        k = tasks.assignment[r]
        data.append(np.random.default_rng(r).normal(10 * k - 5, 1 + r,
                                                     (40 + r, tasks.obs_dims[k])))
    norm(data[world.rank].astype(np.float32))
    norm.allreduce_statistics(tasks.group)
    for k, d in enumerate(tasks.obs_dims):
        pooled = np.concatenate([data[r] for r in range(world.size)
                                 if tasks.assignment[r] == k]).astype(np.float32).astype(float)
        np.testing.assert_allclose(norm.task_rms[k].mean, pooled.mean(0), rtol=1e-9)
        np.testing.assert_allclose(norm.task_rms[k].var, pooled.var(0), rtol=1e-9)
        assert norm.task_rms[k].count == len(pooled)
    raw = np.random.default_rng(99).normal(0, 5, (3, 6)).astype(np.float32)
    stored = norm.for_replay(raw[:, :4])         # CartPole-width observations, padded
    out = norm.normalize_replayed(np.concatenate([stored, raw]), np.array([0, 0, 0, 1, 1, 1]))
    everywhere = world.allgather_obj(out.tobytes())
    state = norm.allgather_state_dict()
    assert all(b == everywhere[0] for b in everywhere)
    cartpole = norm.task_rms[0]
    np.testing.assert_allclose(out[:3, :4], np.clip((raw[:, :4] - cartpole.mean)
                                                    / np.sqrt(cartpole.var + 1e-8), -10, 10),
                               rtol=1e-5, atol=1e-5)
    assert not out[:3, 4:6].any() and (out[:3, 6] == 1).all() and (out[3:, 7] == 1).all()
    assert sorted(state) == sorted(tasks.ids)
