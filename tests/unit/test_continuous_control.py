"""What continuous control needs (#17), without MPI: reward scaling against a naive loop,
truncated episodes bootstrapping from their final observation, actions clipped to the space
while the log-probability stays the sample's, orthogonal initialisation."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from mpirl.algos.ppo import Rollout, collect_rollout, compute_gae
from mpirl.comm import World
from mpirl.envs.normalize import ObsNormalizer, RewardScaler
from mpirl.envs.vec import VecEnv
from mpirl.models.actor_critic import ActorCritic, Policy
from mpirl.models.popart import IdentityValueNorm


# -- reward scaling -------------------------------------------------------------------------------
def test_reward_scaling_against_a_naive_loop_over_two_rollouts():
    rng = np.random.default_rng(0)
    gamma, E, T = 0.9, 3, 40
    scaler = RewardScaler(E, gamma, clip=5.0)
    rewards = rng.normal(2.0, 3.0, (2, T, E))
    dones = rng.random((2, T, E)) < 0.1
    valid = np.ones((2, T, E), bool)
    valid[:, 1:] = ~dones[:, :-1]                # the step after an episode's end only resets
    valid[1, 0] = ~dones[0, -1]
    running, seen = np.zeros(E), []               # the naive version
    for rollout in range(2):
        std = np.std(seen) if seen else 1.0
        for t in range(T):
            r, d, v = rewards[rollout, t], dones[rollout, t] & valid[rollout, t], valid[rollout, t]
            out = scaler(r, d, v)
            running = np.where(v, running * gamma + r, running)
            seen.extend(running[v])
            running[d] = 0.0
            np.testing.assert_allclose(out, np.clip(r / np.sqrt(std ** 2 + 1e-8), -5, 5),
                                       rtol=1e-5)
        scaler.allreduce_statistics(World())     # one rank: the merge of this rollout's returns
        assert scaler.rms.count == len(seen)
        np.testing.assert_allclose(scaler.rms.var, np.var(seen), rtol=1e-9)


def test_scaled_rewards_are_clipped_and_the_scaler_state_round_trips():
    scaler = RewardScaler(2, 0.99, clip=0.5)
    assert (np.abs(scaler(np.array([100.0, -100.0]), np.zeros(2, bool), np.ones(2, bool)))
            == 0.5).all()
    scaler.allreduce_statistics(World())
    other = RewardScaler(2, 0.99, clip=0.5)
    other.load_state_dict(scaler.state_dict())
    r, d, v = np.array([0.3, -0.2]), np.zeros(2, bool), np.ones(2, bool)
    np.testing.assert_array_equal(other(r, d, v), scaler(r, d, v))


# -- truncation ------------------------------------------------------------------------------------
class Counter(gym.Env):
    """Observation: the episode's step count; reward 1 a step; terminated at ``terminate_at``."""
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=None):
        self.terminate_at, self.t = terminate_at, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return (np.array([self.t], np.float32), 1.0, self.t == self.terminate_at, False, {})


class ValueIsTenTimesTheObservation(torch.nn.Module):
    continuous, action_dim = False, 2

    def forward(self, obs):
        return torch.cat([torch.zeros(len(obs), 2), 10.0 * obs], dim=1)

    def split(self, out):
        return out[:, :2], out[:, 2]


@pytest.mark.parametrize("ends", ["truncated", "terminated"])
def test_a_truncated_step_bootstraps_from_its_final_observation_and_a_terminated_one_does_not(
        ends):
    limit = 3 if ends == "truncated" else 10      # a time limit, or the task ending at step 3
    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.TimeLimit(
        Counter(terminate_at=None if ends == "truncated" else 3), limit)])
    venv = VecEnv(envs, seed=0, normalizer=ObsNormalizer((1,), enabled=False))
    rollout = Rollout.allocate(5, 1, 1, ValueIsTenTimesTheObservation())
    collect_rollout(rollout, venv, ValueIsTenTimesTheObservation(), Policy(False),
                    torch.Generator().manual_seed(0), IdentityValueNorm(), steps=5)
    # steps 0, 1, 2 act from observations 0, 1, 2; step 2's episode ends with observation 3
    assert rollout.ended[2, 0] == 1 and rollout.terminated[2, 0] == (ends == "terminated")
    assert rollout.values[3, 0] == 30.0           # V of the final observation, 3
    assert not rollout.valid[3, 0]                # the step after only resets
    gamma = 0.9
    adv = compute_gae(rollout.rewards, rollout.values, rollout.terminated, rollout.ended,
                      gamma, 0.95)
    bootstrap = gamma * 30.0 if ends == "truncated" else 0.0
    assert adv[2, 0] == pytest.approx(1.0 + bootstrap - 20.0)


# -- actions and initialisation --------------------------------------------------------------------
def test_actions_are_clipped_for_the_env_while_the_log_probability_is_the_samples():
    envs = gym.make_vec("Pendulum-v1", 2, vectorization_mode="sync")
    seen = []
    original = envs.step
    envs.step = lambda actions: (seen.append(actions.copy()), original(actions))[1]
    venv = VecEnv(envs, seed=0, normalizer=ObsNormalizer((3,), enabled=False))
    policy = Policy(True, torch.zeros(1))
    mean = torch.tensor([[5.0], [-5.0]])          # far outside Pendulum's [-2, 2]
    action, logp = policy.sample(mean, torch.Generator().manual_seed(1))
    venv.step(action.numpy())
    np.testing.assert_array_equal(seen[0], np.clip(action.numpy(), -2.0, 2.0))
    assert (np.abs(seen[0]) == 2.0).all()
    z = (action - mean)                            # std 1: the unclipped sample's density
    np.testing.assert_allclose(logp, (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(1), rtol=1e-6)


def test_orthogonal_initialisation_with_the_usual_gains():
    torch.manual_seed(0)
    model = ActorCritic(8, gym.spaces.Discrete(3), (64, 64))
    hidden = model[0][0].weight.detach()           # 64 x 8: orthonormal columns, gain sqrt(2)
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * torch.eye(8), atol=1e-5)
    for layer, gain in ((model.head.policy, 0.01), (model.head.value, 1.0)):
        w = layer.weight.detach()
        np.testing.assert_allclose(w @ w.T, gain ** 2 * torch.eye(len(w)), atol=1e-6)
        assert not layer.bias.any()


def test_a_separate_value_net_keeps_the_value_loss_off_the_policys_features():
    from mpirl.config import Config
    from mpirl.models import network
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    model = network(Config(value_net="separate"), 5, space)
    assert len(model.actor) == len(model.critic) == 2     # two MLPs of --hidden-sizes
    obs = torch.randn(16, 5)
    params, value = model.split(model(obs))
    assert params.shape == (16, 2) and value.shape == (16,)
    value.square().sum().backward()                        # the value alone
    assert all(p.grad is None or not p.grad.any() for p in list(model.actor.parameters())
               + list(model.head.policy.parameters()))
    assert all(p.grad.abs().sum() > 0 for p in model.critic.parameters())
    shared = network(Config(), 5, space)                   # the default: one trunk for both
    shared.split(shared(obs))[1].square().sum().backward()
    assert shared[0][0].weight.grad.abs().sum() > 0
