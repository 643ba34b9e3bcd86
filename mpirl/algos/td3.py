"""Twin Delayed DDPG (Fujimoto et al., 2018) over MPI ranks: ``--algo td3``. The loop is
mpirl.algos.offpolicy's (each rank's Gaussian exploration noise scaled by its share of the
spread); this module is TD3's losses, CleanRL's ``td3_continuous_action.py`` term for term:

    target       a' = clip(mu'(s') + clip(eps, -c, c) x scale, low, high),  eps ~ N(0, sigma^2)
                 (target policy smoothing: sigma --policy-noise, c --noise-clip, both in units
                 of the action scale (high - low) / 2)
                 y = r^(n) + g^n (1 - done) min_j Q'_j(s', a')
    critic       loss = mean_i w_i [(Q_1(s, a) - y)^2 + (Q_2(s, a) - y)^2]
    actor        every --policy-frequency steps (delayed): loss = -mean Q_1(s, mu(s)), the
                 critics held still; the targets follow (--target-network-frequency, the same 2)
"""
from __future__ import annotations

import torch

from mpirl.algos import offpolicy
from mpirl.algos.offpolicy import twin_critic_loss
from mpirl.algos.replayed import Transitions
from mpirl.algos.sac import held_still
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.models.continuous import DeterministicActor, OffPolicyAgent, TwinQ
from mpirl.run import Run


def train(cfg: Config, world: World, run: Run) -> dict:
    def losses(agent, targets, batch, update_actor, generator):
        return td3_losses(agent, targets, batch, update_actor, generator, cfg.policy_noise,
                          cfg.noise_clip)
    return offpolicy.train(cfg, world, run, losses)


def smoothed_target_actions(target_actor: DeterministicActor, next_obs: torch.Tensor,
                            noise: torch.Tensor, policy_noise: float,
                            noise_clip: float) -> torch.Tensor:
    """a' = clip(mu'(s') + clip(policy_noise x noise, -c, c) x scale, low, high) for standard
    normal ``noise`` of a' 's shape."""
    bounds = target_actor.bounds
    smoothing = (noise * policy_noise).clamp(-noise_clip, noise_clip) * bounds.scale
    low, high = bounds.bias - bounds.scale, bounds.bias + bounds.scale
    return torch.max(torch.min(target_actor(next_obs) + smoothing, high), low)


def td3_target(target_actor: DeterministicActor, target_critic: TwinQ, batch: Transitions,
               noise: torch.Tensor, policy_noise: float, noise_clip: float) -> torch.Tensor:
    """y = r + g^n (1 - done) min_j Q'_j(s', a') with the smoothed target action a'."""
    with torch.no_grad():
        next_actions = smoothed_target_actions(target_actor, batch.next_obs, noise,
                                               policy_noise, noise_clip)
        next_q = torch.min(*target_critic(batch.next_obs, next_actions))
        return batch.rewards + batch.discounts * (1.0 - batch.dones) * next_q


def td3_losses(agent: OffPolicyAgent, targets: dict, batch: Transitions, update_actor: bool,
               generator: torch.Generator | None, policy_noise: float, noise_clip: float):
    """TD3's loss on a batch (the critics', plus the actor's on a policy step), |TD error| (B,)
    as new priorities, and statistics."""
    noise = torch.randn(batch.actions.shape, generator=generator, dtype=batch.actions.dtype)
    target = td3_target(targets["target_actor"], targets["target_critic"], batch, noise,
                        policy_noise, noise_clip)
    loss, td_abs, stats = twin_critic_loss(agent, batch, target)
    if update_actor:
        with held_still(agent.critic):
            q1_pi = agent.critic.first(batch.obs, agent.actor(batch.obs))
        actor_loss = -q1_pi.mean()
        loss = loss + actor_loss
        stats["actor_loss"] = actor_loss.item()
    return loss, td_abs, stats
