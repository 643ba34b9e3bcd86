"""V-trace (Espeholt et al., 2018, "IMPALA", section 4.1): value targets and policy-gradient
advantages for experience gathered by an older policy, corrected with truncated importance
weights. A pure function of tensors, tested against the paper's sum written out naively.

For a block of T steps with behaviour policy mu and the learner's policy pi::

    rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t))      c_t = min(c_bar, pi / mu)
    delta_t = rho_t (r_t + g_t V(x_{t+1}) - V(x_t))
    v_t = V(x_t) + delta_t + k_t c_t (v_{t+1} - V(x_{t+1})),       v_T = V(x_T)
    A_t = rho_t (r_t + g_t q_{t+1} - V(x_t))

The paper has one discount gamma, zero where an episode ends. Two are kept apart here, as GAE
does in mpirl.algos.ppo: ``g_t`` = gamma unless the episode terminated at t (a truncated one
bootstraps from the value of its last observation), and ``k_t`` = gamma unless it ended at t in
either way (no correction flows back across an episode's end). ``q_{t+1}`` is v_{t+1} within an
episode and V(x_{t+1}) where the episode ended at t. With next-step autoreset x_{t+1} after an
end is the episode's final observation, and step t + 1 only resets: the learner masks it out.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def vtrace(behaviour_logp: torch.Tensor, target_logp: torch.Tensor, rewards: torch.Tensor,
           values: torch.Tensor, bootstrap_value: torch.Tensor, terminated: torch.Tensor,
           ended: torch.Tensor, gamma: float, rho_clip: float = 1.0,
           c_clip: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(value targets v, policy-gradient advantages A), each (T, B).

    ``behaviour_logp``, ``target_logp``, ``rewards``, ``values`` (V(x_t)), ``terminated``,
    ``ended`` (terminated or truncated): (T, B); ``bootstrap_value``: (B,), V(x_T).
    ``rho_clip``/``c_clip``: rho_bar and c_bar (``float("inf")``: no truncation).
    """
    ratio = (target_logp - behaviour_logp).exp()
    rho = ratio.clamp(max=rho_clip)
    c = ratio.clamp(max=c_clip)
    next_values = torch.cat([values[1:], bootstrap_value[None]], 0)      # V(x_{t+1})
    g = gamma * (1.0 - terminated.float())
    k = gamma * (1.0 - ended.float())
    deltas = rho * (rewards + g * next_values - values)
    corrections = torch.zeros_like(values)   # v_t - V(x_t)
    carry = torch.zeros_like(bootstrap_value)
    for t in reversed(range(len(values))):
        carry = deltas[t] + k[t] * c[t] * carry
        corrections[t] = carry
    vs = values + corrections
    next_vs = torch.cat([vs[1:], bootstrap_value[None]], 0)
    q = torch.where(ended.bool(), next_values, next_vs)
    advantages = rho * (rewards + g * q - values)
    return vs, advantages
