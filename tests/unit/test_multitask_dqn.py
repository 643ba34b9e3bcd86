"""Multi-task DQN pieces without MPI: Q heads per task with action masks (acting and targets),
zero gradient to other tasks' heads, per-transition task weights, records and normalisation."""
import numpy as np
import pytest
import torch

from mpirl.algos.dqn import actor_epsilon, dqn_loss
from mpirl.config import parse_args
from mpirl.comm.collectives import FlatGradients
from mpirl.comm.sync import AllreduceSync
from mpirl.tasks.sync import TaskWeightedSync
from mpirl.tasks.weights import task_weights
from mpirl.comm.world import World
from mpirl.models.multitask import MultiTaskQNetwork
from mpirl.models.qnet import QNetwork
from mpirl.tasks.pieces import TaskObsNormalizer
from mpirl.tasks.spec import pad_and_tag
from mpirl.replay import ReplayBuffer, transition_dtype

COUNTS = (2, 3, 1)      # actions per task: A = 3
WIDTH = 6               # widest task's observation


def _net(dueling=False, counts=COUNTS, seed=0):
    torch.manual_seed(seed)
    return MultiTaskQNetwork(WIDTH, list(counts), hidden_sizes=(16, 16), dueling=dueling)


def _obs(tasks, seed=0, scale=3.0):
    """Padded observations with their one-hots, rows of ``tasks`` (a list of task ids)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(tasks), WIDTH + len(COUNTS))
    x[:, :WIDTH] = torch.randn(len(tasks), WIDTH, generator=g) * scale
    x[torch.arange(len(tasks)), WIDTH + torch.tensor(tasks)] = 1.0
    return x


@pytest.mark.parametrize("dueling", [False, True])
def test_invalid_actions_are_masked_and_never_chosen_when_acting(dueling):
    net = _net(dueling)
    for k, n in enumerate(COUNTS):
        head = net.heads[k]
        with torch.no_grad():  # make the invalid outputs the largest, were they not masked
            (head.advantage if dueling else head.q).bias[n:] = 1e6
        q = net(_obs([k] * 256, seed=k))
        assert q.shape == (256, 3)
        assert (q[:, n:] == torch.finfo(q.dtype).min).all() and torch.isfinite(q[:, :n]).all()
        assert int(q.argmax(1).max()) < n
    if dueling:  # V is the mean of Q over the task's own actions: the mean leaves the mask out
        x = _obs([1, 0, 0, 2], seed=5)
        h = net.act(net.trunk(x))
        q = net(x)
        for row, k in enumerate([1, 0, 0, 2]):
            torch.testing.assert_close(q[row, :COUNTS[k]].mean(), net.heads[k].value(h[row])[0])


def test_each_row_of_a_mixed_batch_goes_through_its_own_tasks_head():
    net = _net()
    tasks = [0, 2, 1, 1, 0, 2]
    x = _obs(tasks, seed=1)
    mixed = net(x)
    h = net.act(net.trunk(x))
    for row, k in enumerate(tasks):
        own = net.heads[k].q(h[row:row + 1])[0, :COUNTS[k]]
        torch.testing.assert_close(mixed[row, :COUNTS[k]], own)
    assert net.tasks_of(x).tolist() == tasks


@pytest.mark.parametrize("double_q", [True, False])
@pytest.mark.parametrize("dueling", [False, True])
def test_targets_take_max_and_argmax_over_the_tasks_own_actions_only(double_q, dueling):
    """Invalid outputs of the target (and online) heads are made huge before masking: a target
    that looked at them would be ~1e6 off."""
    online, target = _net(dueling, seed=0), _net(dueling, seed=1)
    for net in (online, target):
        with torch.no_grad():
            for k, n in enumerate(COUNTS):
                head = net.heads[k]
                (head.advantage if dueling else head.q).bias[n:] = 1e6
    tasks = [0, 1, 2, 0, 1, 2, 0, 0]
    obs, next_obs = _obs(tasks, seed=2), _obs(tasks, seed=3)
    actions = torch.tensor([a % COUNTS[k] for a, k in zip(range(8), tasks)])
    rewards = torch.linspace(-1, 1, 8)
    dones = torch.tensor([0.0, 0, 0, 1, 0, 0, 0, 0])
    discounts = torch.full((8,), 0.9)
    loss, td_abs, q_taken = dqn_loss(online, target, obs, actions, rewards, next_obs, dones,
                                     discounts, torch.ones(8), double_q)

    def unmasked_valid(net, x, row, k):  # the task's own outputs, computed head by head
        h = net.act(net.trunk(x[row:row + 1]))
        head = net.heads[k]
        if not dueling:
            return head.q(h)[0, :COUNTS[k]]
        adv = head.advantage(h)[0, :COUNTS[k]]
        return head.value(h)[0] + adv - adv.mean()

    with torch.no_grad():
        for row, k in enumerate(tasks):
            next_target = unmasked_valid(target, next_obs, row, k)
            if double_q:
                best = int(unmasked_valid(online, next_obs, row, k).argmax())
                bootstrap = next_target[best]
            else:
                bootstrap = next_target.max()
            y = rewards[row] + discounts[row] * (1 - dones[row]) * bootstrap
            q = unmasked_valid(online, obs, row, k)[actions[row]]
            assert float(q_taken[row]) == pytest.approx(float(q), rel=1e-5)
            assert float(td_abs[row]) == pytest.approx(abs(float(y - q)), rel=1e-4, abs=1e-4)
    assert float(td_abs.max()) < 100 and torch.isfinite(loss)


@pytest.mark.parametrize("dueling", [False, True])
def test_a_batch_of_task_k_gives_zero_gradient_to_other_tasks_heads(dueling):
    online, target = _net(dueling), _net(dueling, seed=1)
    grads = FlatGradients(online.parameters(), World())
    owner = online.owner()
    for k, n in enumerate(COUNTS):
        grads.zero()
        obs, next_obs = _obs([k] * 32, seed=10 + k), _obs([k] * 32, seed=20 + k)
        actions = torch.arange(32) % n
        loss, _, _ = dqn_loss(online, target, obs, actions, torch.ones(32), next_obs,
                              torch.zeros(32), torch.full((32,), 0.9), torch.ones(32), True)
        loss.backward()
        for name, p in online.named_parameters():
            if owner[id(p)] not in (None, k):
                assert not p.grad.any(), (k, name)
            elif not name.endswith(("q.weight", "q.bias", "advantage.weight", "advantage.bias")):
                assert p.grad.any(), (k, name)  # the trunk and the task's own head do learn
        layer = online.heads[k].advantage if dueling else online.heads[k].q
        assert not layer.weight.grad[n:].any()  # ... but not its own invalid outputs
        if n > 1 or not dueling:  # (one action: its advantage minus their mean is 0)
            assert layer.weight.grad[:n].any()


def test_single_task_q_network_is_unchanged_by_the_shared_head_code():
    torch.manual_seed(0)
    net = QNetwork(4, 3, (16, 16), dueling=True)
    obs = torch.randn(5, 4)
    h = net.act(net.trunk(obs))
    adv = net.advantage(h)
    assert torch.equal(net(obs), net.value(h) + adv - adv.mean(1, keepdim=True))
    assert list(dict(net.named_parameters())) == [
        "trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias", "value.weight",
        "value.bias", "advantage.weight", "advantage.bias"]  # checkpoints keep their names


# -- weighting a batch that mixes tasks ----------------------------------------------------------
def test_task_weights_by_hand():
    # a global batch of 8 slots: 6 of task 0, 2 of task 1, none of task 2
    trunk, heads = task_weights([6, 2, 0], 8, "equal")
    np.testing.assert_allclose(trunk, [8 / (2 * 6), 8 / (2 * 2), 0.0])
    np.testing.assert_allclose(heads, [8 / 6, 8 / 2, 0.0])
    # equal: each present task's slots add up to the same weight, total / K'
    assert 6 * trunk[0] == pytest.approx(2 * trunk[1]) == pytest.approx(4.0)
    trunk, heads = task_weights([6, 2, 0], 8, "ranks")
    np.testing.assert_allclose(trunk, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(heads, [8 / 6, 8 / 2, 0.0])
    with pytest.raises(ValueError, match="weighting"):
        task_weights([1], 1, "tasks")


@pytest.mark.parametrize("weighting", ["equal", "ranks"])
def test_weigh_batch_gives_per_transition_loss_weights_and_head_scales(weighting):
    """One process holding the whole mixed batch: the weighted loss's gradient, scaled, is the
    task-weighted mean on the trunk and each task's own mean on its head."""
    online, target = _net(), _net(seed=1)
    grads = FlatGradients(online.parameters(), World())
    sync = TaskWeightedSync(AllreduceSync(World(), grads), grads, online.owner(), 0,
                            [1, 1, 1], weighting)
    tasks = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0])  # task 2 absent
    obs, next_obs = _obs(tasks.tolist(), seed=7), _obs(tasks.tolist(), seed=8)
    actions = torch.tensor([i % COUNTS[k] for i, k in enumerate(tasks)])
    rewards = torch.linspace(-2, 2, len(tasks))

    def loss_of(rows, weights):
        loss, _, _ = dqn_loss(online, target, obs[rows], actions[rows], rewards[rows],
                              next_obs[rows], torch.zeros(len(rows)),
                              torch.full((len(rows),), 0.9), weights, True)
        return loss

    per_task = {}
    for k in (0, 1):
        grads.zero()
        rows = np.flatnonzero(tasks == k)
        loss_of(rows, torch.ones(len(rows))).backward()   # task k's own mean
        per_task[k] = {n: p.grad.clone() for n, p in online.named_parameters()}
    grads.zero()
    weights = sync.weigh_batch(np.bincount(tasks, minlength=3))[tasks]
    loss_of(np.arange(len(tasks)), torch.tensor(weights, dtype=torch.float32)).backward()
    sync.gradients_ready()
    m = np.bincount(tasks)
    for name, p in online.named_parameters():
        if name.startswith("trunk."):
            expected = ((per_task[0][name] + per_task[1][name]) / 2 if weighting == "equal"
                        else (m[0] * per_task[0][name] + m[1] * per_task[1][name]) / m.sum())
        elif name.startswith("heads.2."):
            expected = torch.zeros_like(p)
        else:
            expected = per_task[int(name.split(".")[1])][name]
        torch.testing.assert_close(p.grad, expected, atol=1e-6, rtol=1e-5, msg=name)


# -- replay records and their normalisation ------------------------------------------------------
def test_records_carry_their_task_and_keep_the_single_task_layout_without():
    single = transition_dtype((4,))
    assert "task" not in single.names and single.itemsize == 56       # unchanged
    multi = transition_dtype((6,), task=True)
    assert multi["task"] == np.int64 and multi["obs"].shape == (6,)
    memory = ReplayBuffer(8, multi, prioritized=False)
    records = np.zeros(3, multi)
    records["task"] = [2, 0, 1]
    memory.add(records)
    assert memory.storage["task"][:3].tolist() == [2, 0, 1]


def test_stored_observations_are_normalised_with_each_records_own_task():
    dims, ids = [4, 6], ["A", "B"]
    norm = TaskObsNormalizer(4, 6, 0, ids, World(), all_tasks=True, obs_dims=dims)
    rng = np.random.default_rng(0)
    raw_a = rng.normal(5, 2, (64, 4)).astype(np.float32)
    acting = norm(raw_a)                       # records task A's statistics for the sync
    norm.allreduce_statistics(World())
    # task B's statistics as if merged from its ranks (one process: set them directly)
    raw_b = rng.normal(-3, 0.5, (64, 6)).astype(np.float32)
    norm.task_rms[1].merge(64, raw_b.astype(np.float64).sum(0),
                        np.square(raw_b.astype(np.float64)).sum(0))
    norm._refresh()
    stored = np.concatenate([norm.for_replay(raw_a[:3]), norm.for_replay(raw_b[:2])])
    assert stored.shape == (5, 6) and not stored[:3, 4:].any()        # zero-padded
    out = norm.normalize_replayed(stored, np.array([0, 0, 0, 1, 1]))
    assert out.shape == (5, 8)
    np.testing.assert_array_equal(out[:3], norm(raw_a[:3], accumulate=False))  # as when acting
    b_mean, b_std = raw_b.mean(0), raw_b.std(0)
    np.testing.assert_allclose(out[3:, :6], (raw_b[:2] - b_mean) / b_std, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out[:, 6:], [[1, 0]] * 3 + [[0, 1]] * 2)
    assert not np.allclose(acting[:3], norm(raw_a[:3], accumulate=False))  # stats did move
    # checkpoints restore every task's statistics (a checkpoint holds every task's: each
    # task's ranks add theirs; one process here, so task B's is added by hand)
    state = {**norm.allgather_state_dict(), "B": norm.task_rms[1].state_dict()}
    fresh = TaskObsNormalizer(4, 6, 0, ids, World(), all_tasks=True, obs_dims=dims)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.normalize_replayed(stored, np.array([0, 0, 0, 1, 1])), out)


def test_padding_is_the_same_for_acting_and_for_stored_records():
    norm = TaskObsNormalizer(4, 6, 1, ["A", "B"], World(), enabled=False, all_tasks=True,
                             obs_dims=[6, 4])
    raw = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(norm.normalize_replayed(norm.for_replay(raw), np.array([1, 1])),
                                  pad_and_tag(raw, 6, 1, 2))


def test_ape_x_rates_spread_over_each_tasks_ranks():
    """Rank j of a task's n ranks explores with 0.4^(1 + 7 j / (n - 1)), so each task gets the
    whole range (world ranks interleave the tasks: task 1 of two would get neither 0.4 nor the
    next rates); a task's only rank anneals linearly, as a single-rank run does."""
    from types import SimpleNamespace as Group
    cfg = parse_args(["--algo", "dqn"])
    assert actor_epsilon(cfg, Group(rank=0, size=2)) == pytest.approx(0.4)
    assert actor_epsilon(cfg, Group(rank=1, size=2)) == pytest.approx(0.4 ** 8)
    assert actor_epsilon(cfg, Group(rank=1, size=3)) == pytest.approx(0.4 ** 4.5)
    assert actor_epsilon(cfg, Group(rank=0, size=1)) is None
