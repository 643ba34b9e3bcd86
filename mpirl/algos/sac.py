"""Soft Actor-Critic (Haarnoja et al., 2018, with the automatic temperature of the second paper)
over MPI ranks: ``--algo sac``. The loop (acting with a spread of exploration over the ranks, the
shared replay memory, one Allreduce per gradient step) is mpirl.algos.offpolicy's; this module is
SAC's losses, CleanRL's ``sac_continuous_action.py`` term for term:

    critic       y = r^(n) + g^n (1 - done) (min_j Q'_j(s', a') - alpha log pi(a'|s')),
                 a' ~ pi(.|s');  loss = mean_i w_i [(Q_1(s, a) - y)^2 + (Q_2(s, a) - y)^2]
    actor        a~ ~ pi(.|s) reparameterised;  loss = mean[alpha log pi(a~|s) - min_j Q_j(s, a~)]
                 (its gradient reaches the actor only: the critics are held still for it)
    temperature  loss = mean[-alpha (log pi(a~|s) + target_entropy)],  target_entropy = -dim(A)

(w: prioritized replay's importance weights, ones when uniform; r^(n), g^n: n-step returns.) The
actor and temperature losses are taken every --policy-frequency gradient steps (SB3: 1), alpha as
it stands before the step in every loss.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from mpirl.algos import offpolicy
from mpirl.algos.offpolicy import twin_critic_loss
from mpirl.algos.replayed import Transitions
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.models.continuous import OffPolicyAgent
from mpirl.run import Run


def train(cfg: Config, world: World, run: Run) -> dict:
    return offpolicy.train(cfg, world, run, sac_losses)


@contextmanager
def held_still(module: torch.nn.Module):
    """``module``'s parameters take no gradient inside (the critics, under the actor's loss)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def sac_losses(agent: OffPolicyAgent, targets: dict, batch: Transitions, update_actor: bool,
               generator: torch.Generator | None = None):
    """SAC's loss on a batch: its sum over the parts (each part's gradient is its own loss's),
    |TD error| (B,) as new priorities (the mean of the two critics'), and statistics."""
    alpha = agent.alpha()
    with torch.no_grad():
        next_actions, next_log_prob = agent.actor(batch.next_obs, generator)
        next_q1, next_q2 = targets["target_critic"](batch.next_obs, next_actions)
        next_value = torch.min(next_q1, next_q2) - alpha * next_log_prob
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_value
    loss, td_abs, stats = twin_critic_loss(agent, batch, target)
    if update_actor:
        actions, log_prob = agent.actor(batch.obs, generator)
        with held_still(agent.critic):
            q_pi = torch.min(*agent.critic(batch.obs, actions))
        actor_loss = (alpha * log_prob - q_pi).mean()
        loss = loss + actor_loss
        stats.update(actor_loss=actor_loss.item(), entropy=-log_prob.mean().item())
        if hasattr(agent, "temperature"):
            target_entropy = -float(actions.shape[1])
            alpha_loss = (-agent.temperature() * (log_prob.detach() + target_entropy)).mean()
            loss = loss + alpha_loss
    return loss, td_abs, stats
