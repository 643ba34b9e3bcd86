"""Multi-task pieces without MPI: parsing, rank assignment, padding, masks, head gradients."""
import numpy as np
import pytest
import torch

from mpirl.errors import ConfigError
from mpirl.comm.collectives import FlatGradients
from mpirl.tasks.weights import task_gradient_scale
from mpirl.comm.world import World
from mpirl.models.actor_critic import Policy
from mpirl.models.multitask import MultiTaskActorCritic, action_mask
from mpirl.tasks.spec import pad_and_tag
from mpirl.tasks.spec import assign_tasks, parse_targets, parse_tasks, rank_counts
from tests.configs import validated


# -- parsing ------------------------------------------------------------------------------------
def test_tasks_parse_with_and_without_weights():
    assert parse_tasks("CartPole-v1,Acrobot-v1") == [("CartPole-v1", 1), ("Acrobot-v1", 1)]
    assert parse_tasks("CartPole-v1:4, Acrobot-v1:2") == [("CartPole-v1", 4), ("Acrobot-v1", 2)]


@pytest.mark.parametrize("text,why", [
    ("CartPole-v1:x", "malformed weight 'x'"), ("CartPole-v1:0", "malformed weight '0'"),
    ("CartPole-v1:-2", "malformed weight"), ("CartPole-v1:1.5", "malformed weight"),
    ("CartPole-v1:", "malformed weight ''"), ("CartPole-v1,,Acrobot-v1", "comma-separated"),
    ("", "comma-separated"), ("CartPole-v1,CartPole-v1", "more than once")])
def test_malformed_tasks_are_config_errors(text, why):
    with pytest.raises(ConfigError, match=why):
        parse_tasks(text)


def test_targets_parse_and_must_name_tasks():
    ids = ["CartPole-v1", "Acrobot-v1"]
    assert parse_targets("Acrobot-v1:-80.5", ids) == {"Acrobot-v1": -80.5}
    assert parse_targets(None, ids) == {}
    with pytest.raises(ConfigError, match="not one of --tasks"):
        parse_targets("MountainCar-v0:-110", ids)
    with pytest.raises(ConfigError, match="malformed entry"):
        parse_targets("CartPole-v1=475", ids)


def test_config_validation_reports_multitask_problems_once():
    with pytest.raises(ConfigError) as err:
        validated(["--tasks", "CartPole-v1:abc", "--sync-mode", "local-sgd",
                    "--popart-beta", "0"])
    text = str(err.value)
    for part in ("malformed weight", "--sync-mode local-sgd", "--popart-beta"):
        assert part in text
    assert validated(["--tasks", "CartPole-v1,Acrobot-v1", "--algo", "dqn"], 2).algo == "dqn"
    with pytest.raises(ConfigError, match="--park-solved-tasks is implemented for --algo ppo "
                                          "only, not --algo dqn"):
        validated(["--tasks", "CartPole-v1,Acrobot-v1", "--algo", "dqn", "--park-solved-tasks"], 2)
    with pytest.raises(ConfigError, match="not one of --tasks"):
        validated(["--tasks", "CartPole-v1", "--task-targets", "Acrobot-v1:-100"])
    assert validated(["--tasks", "CartPole-v1,Acrobot-v1"], 2).tasks == "CartPole-v1,Acrobot-v1"


def test_world_size_and_action_space_checks():
    argv = ["--tasks", "CartPole-v1,Acrobot-v1,MountainCar-v0"]
    with pytest.raises(ConfigError, match="3 tasks but only 2 rank"):
        validated(argv, n_ranks=2)
    validated(argv, n_ranks=3)
    with pytest.raises(ConfigError, match="Pendulum-v1 has a Box action space"):
        validated(["--tasks", "CartPole-v1,Pendulum-v1"], n_ranks=2)


# -- assignment ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_ranks", range(1, 13))
@pytest.mark.parametrize("n_tasks", [1, 2, 3, 5])
def test_round_robin_covers_every_task_with_counts_within_one(n_ranks, n_tasks):
    if n_tasks > n_ranks:
        with pytest.raises(ConfigError, match="every task needs at least one rank"):
            assign_tasks(n_ranks, [1] * n_tasks)
        return
    tasks = assign_tasks(n_ranks, [1] * n_tasks)
    counts = np.bincount(tasks, minlength=n_tasks)
    assert len(tasks) == n_ranks and counts.min() >= 1
    assert counts.max() - counts.min() <= 1
    assert tasks == [r % n_tasks for r in range(n_ranks)]  # round-robin


def test_weights_give_proportional_rank_counts():
    assert rank_counts(6, [4, 2]) == [4, 2]
    assert rank_counts(12, [4, 2]) == [8, 4]
    assert rank_counts(8, [4, 2]) == [5, 3]            # 5.33, 2.67: largest remainder
    assert sorted(assign_tasks(6, [4, 2])) == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ConfigError, match="without a rank"):
        rank_counts(3, [10, 1, 1])


# -- observations and actions -------------------------------------------------------------------
def test_padding_and_one_hot():
    obs = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = pad_and_tag(obs, width=4, task=1, num_tasks=3)
    np.testing.assert_array_equal(out, [[1, 2, 0, 0, 0, 1, 0], [3, 4, 0, 0, 0, 1, 0]])
    assert out.dtype == np.float32


def _model(counts=(2, 3, 1), width=6, seed=0):
    torch.manual_seed(seed)
    return MultiTaskActorCritic(width, list(counts), hidden_sizes=(16, 16))


def test_invalid_actions_are_masked_never_sampled_and_keep_entropy_finite():
    model = _model()
    assert action_mask([2, 3, 1]).tolist() == [[True, True, False], [True, True, True],
                                              [True, False, False]]
    policy = Policy(False)
    x = torch.randn(512, model.obs_dim) * 5
    for task, n in enumerate((2, 3, 1)):
        model.task = task
        logits, value = model.split(model(x))
        assert logits.shape == (512, 3) and value.shape == (512,)
        actions, logp = policy.sample(logits, torch.Generator().manual_seed(task))
        assert int(actions.max()) < n and torch.isfinite(logp).all()
        assert int(policy.mode(logits).max()) < n
        probs = torch.softmax(logits, -1)
        assert (probs[:, n:] == 0).all()
        _, entropy = policy.logp_entropy(logits, actions)
        assert torch.isfinite(entropy).all()
    # a one-action task is deterministic: zero entropy
    assert torch.allclose(entropy, torch.zeros_like(entropy), atol=1e-6)


def test_a_batch_of_task_k_gives_zero_gradient_to_other_tasks_heads():
    model = _model(counts=(2, 3, 2))
    grads = FlatGradients(model.parameters(), World())
    owner = model.owner()
    for task in range(3):
        grads.zero()
        model.task = task
        logits, value = model.split(model(torch.randn(32, model.obs_dim)))
        (torch.log_softmax(logits, -1)[:, 0].sum() + value.pow(2).sum()).backward()
        for p in model.parameters():
            if owner[id(p)] not in (None, task):
                assert not p.grad.any()
            else:
                assert p.grad.any()  # the trunk and the task's own head do learn


def test_gradient_scale_segments():
    owners, sizes = [None, 0, 1, None], [3, 2, 2, 1]
    # 4 ranks: task 0 has 3 of them, task 1 has 1
    equal = task_gradient_scale(owners, sizes, task=1, rank_counts=[3, 1], weighting="equal")
    assert equal.tolist() == [2.0] * 3 + [0.0] * 2 + [4.0] * 2 + [2.0]
    ranks = task_gradient_scale(owners, sizes, task=0, rank_counts=[3, 1], weighting="ranks")
    np.testing.assert_allclose(ranks, [1.0] * 3 + [4 / 3] * 2 + [0.0] * 2 + [1.0], rtol=1e-7)



def test_gradient_scale_renormalises_over_the_tasks_still_training():
    owners, sizes = [None, 0, 1, 2], [2, 1, 1, 1]
    counts = [2, 1, 1]                                   # 4 ranks, task 0 has 2 of them
    parked = [False, True, False]
    # equal: the trunk is the mean of the two training tasks' means -> N / (2 * n_k)
    assert task_gradient_scale(owners, sizes, 0, counts, "equal", parked).tolist() == \
        [1.0, 1.0, 2.0, 0.0, 0.0]
    assert task_gradient_scale(owners, sizes, 2, counts, "equal", parked).tolist() == \
        [2.0, 2.0, 0.0, 0.0, 4.0]
    # ranks: the mean over the 3 training ranks -> N / 3
    np.testing.assert_allclose(task_gradient_scale(owners, sizes, 0, counts, "ranks", parked),
                               [4 / 3, 4 / 3, 2.0, 0.0, 0.0], rtol=1e-7)
    # a parked task's rank adds nothing at all
    for weighting in ("equal", "ranks"):
        assert not task_gradient_scale(owners, sizes, 1, counts, weighting, parked).any()
    # nothing parked is the plain weighting
    assert task_gradient_scale(owners, sizes, 1, counts, "equal", [False] * 3).equal(
        task_gradient_scale(owners, sizes, 1, counts, "equal"))


def test_park_solved_tasks_is_a_multitask_option():
    assert validated(["--tasks", "CartPole-v1,Acrobot-v1", "--park-solved-tasks"], 2) \
        .park_solved_tasks
    assert not validated(["--tasks", "CartPole-v1,Acrobot-v1"], 2).park_solved_tasks
    with pytest.raises(ConfigError, match="--park-solved-tasks applies to multi-task runs"):
        validated(["--park-solved-tasks"])


def test_over_atari_games_the_trunk_is_the_nature_cnn_on_uint8_frames_and_each_game_has_its_heads():
    torch.manual_seed(0)
    counts = (6, 4)   # Pong's and Breakout's minimal action sets
    model = MultiTaskActorCritic((4, 84, 84), list(counts))
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    grads = FlatGradients(model.parameters(), World())
    owner = model.owner()
    for task, n in enumerate(counts):
        grads.zero()
        model.task = task
        logits, value = model.split(model(frames))
        assert logits.shape == (5, 6) and logits.dtype == value.dtype == torch.float32
        assert (torch.softmax(logits, -1)[:, n:] == 0).all()
        (torch.log_softmax(logits, -1)[:, 0].sum() + value.pow(2).sum()).backward()
        for p in model.parameters():
            assert bool(p.grad.any()) == (owner[id(p)] in (None, task))
    # the bf16 trunk keeps float32 parameters and outputs, close to float32's
    model.task, fp32 = 1, model(frames)
    model.bf16 = True
    bf16 = model(frames)
    assert bf16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.allclose(bf16[:, :4], fp32[:, :4], atol=0.05)
