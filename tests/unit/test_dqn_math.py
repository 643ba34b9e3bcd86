"""DQN pieces against hand computations: targets and loss, exploration rates, target updates."""
import numpy as np
import pytest
import torch

from mpirl.algos.dqn import apex_epsilon, dqn_loss, linear_schedule, update_target
from mpirl.models.qnet import QNetwork


class FixedQ(torch.nn.Module):
    """Q-values read from a table: obs is a one-hot row selector."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, obs):
        return obs @ self.table


def _onehot(rows, n=3):
    return torch.eye(n)[rows]


@pytest.mark.parametrize("double_q", [True, False])
def test_nstep_double_dqn_targets_and_weighted_huber_loss(double_q):
    online = FixedQ([[1.0, 2.0], [0.5, 3.0], [4.0, -1.0]])
    target = FixedQ([[0.0, 10.0], [7.0, 1.0], [2.0, 5.0]])
    obs, next_obs = _onehot([0, 1]), _onehot([1, 2])
    actions = torch.tensor([1, 0])
    rewards = torch.tensor([1.0, -2.0])
    dones = torch.tensor([0.0, 1.0])
    discounts = torch.tensor([0.9 ** 3, 0.9])
    weights = torch.tensor([1.0, 0.5])
    loss, td_abs, q_taken = dqn_loss(online, target, obs, actions, rewards, next_obs, dones,
                                     discounts, weights, double_q)
    # sample 0: next state 1; online argmax there is action 1 -> target 1.0 (double) or max 7.0
    bootstrap = 1.0 if double_q else 7.0
    y = np.array([1.0 + 0.9 ** 3 * bootstrap, -2.0])     # sample 1 is terminal: no bootstrap
    q = np.array([2.0, 0.5])
    err = y - q
    huber = np.where(np.abs(err) < 1, 0.5 * err ** 2, np.abs(err) - 0.5)
    assert loss.item() == pytest.approx(float((np.array([1.0, 0.5]) * huber).mean()), rel=1e-6)
    np.testing.assert_allclose(td_abs.numpy(), np.abs(err), rtol=1e-6)
    np.testing.assert_allclose(q_taken.numpy(), q)
    loss.backward()
    assert online.table.grad is not None and target.table.grad is None


def test_apex_epsilons_span_from_base_to_base_to_the_one_plus_alpha():
    eps = [apex_epsilon(0.4, 7.0, i, 8) for i in range(8)]
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4 ** 8)
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert apex_epsilon(0.4, 7.0, 1, 3) == pytest.approx(0.4 ** 4.5)


def test_linear_epsilon_schedule():
    assert linear_schedule(1.0, 0.05, 1000, 0) == 1.0
    assert linear_schedule(1.0, 0.05, 1000, 500) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 1000, 5000) == 0.05


def test_target_update_hard_and_polyak():
    torch.manual_seed(0)
    q, target = QNetwork(3, 2, (8, 8)), QNetwork(3, 2, (8, 8))
    before = [t.detach().clone() for t in target.parameters()]
    update_target(target, q, tau=0.25)
    for t, b, p in zip(target.parameters(), before, q.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * p)
    update_target(target, q, tau=1.0)
    for t, p in zip(target.parameters(), q.parameters()):
        assert torch.equal(t, p)


def test_dueling_head_combines_value_and_centred_advantages():
    torch.manual_seed(0)
    net = QNetwork(4, 3, (16, 16), dueling=True)
    obs = torch.randn(5, 4)
    q = net(obs)
    h = net.act(net.trunk(obs))
    value, adv = net.value(h), net.advantage(h)
    torch.testing.assert_close(q, value + adv - adv.mean(1, keepdim=True))
    torch.testing.assert_close(q.mean(1, keepdim=True), value)   # V is the mean of Q over actions
