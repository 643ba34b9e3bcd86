"""PPO's minibatch loss and its exact gradient for the plain actor-critic, written out by hand.

For the model of every single-task run (Linear + Tanh or ReLU hidden blocks, then the packed
``[pi | v]`` head of :mod:`mpirl.models.actor_critic`; with ``--value-net separate``, two such
towers, the policy's and the value's) the loss of a minibatch and its gradient
are some forty tensor operations. autograd does the same arithmetic but also records a graph and
replays it op by op; for 256 samples through 64x64 layers that bookkeeping costs more than the
arithmetic, and learning is most of a PPO update's time. Here the forward pass keeps what the
backward pass needs, and every gradient is written straight into its ``param.grad``, a view of
the flat buffer the Allreduce averages.

The derivatives, per sample i of a batch of B (g_x = d loss / d x):

    loss  = mean_i max(-A r, -A clip(r, 1-e, 1+e)) - c_H mean_i H + c_V 0.5 mean_i (v - R)^2
    g_logp_i   = -A_i r_i / B where the unclipped term is the larger (else 0: the clipped term
                 is flat outside the clip range, and equal to the other inside it)
    Discrete:  g_z = g_logp (onehot(a) - p) + c_H / B p (log p + H)        (z the logits)
    Box:       g_mu = g_logp (a - mu) / s^2,  g_log_s = sum_i g_logp_i ((a - mu)^2 / s^2 - 1) - c_H
    g_v_i      = c_V (v_i - R_i) / B, or with --clip-vloss through the larger of the two terms
    hidden:    g_pre = g_h (1 - h^2)  (h = tanh(pre)), or g_h [h > 0] (h = relu(pre)),
               g_W = g_pre^T x,   g_x = g_pre W

Ties of the two clipped terms (autograd halves them) give the same sums, so the gradients equal
autograd's to float32 rounding: tests/unit/test_ppo_grad.py holds them to it for Discrete and Box
actions, with and without value clipping. Anything else (multi-task heads, pipeline stages,
other layer types) keeps autograd's path, and so does ``--sync-mode overlap``, whose buckets start
from autograd's per-parameter hooks while backward runs: see :func:`manual_gradients`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mpirl.config import Config
from mpirl.models.actor_critic import ActorCritic, SeparateActorCritic

threshold_backward = torch.ops.aten.threshold_backward   # g [h > 0]  (h = relu(pre))
tanh_backward = torch.ops.aten.tanh_backward             # g (1 - h^2)  (h = tanh(pre))


def manual_gradients(model: nn.Module, cfg: Config) -> "ManualPPOGradients | None":
    """The hand-written loss and gradient for ``model``, or None where only autograd applies."""
    if cfg.pipeline_stages > 1 or cfg.sync_mode == "overlap":
        return None
    if type(model) is ActorCritic:
        towers = [list(model)[:-1]]                       # one trunk feeds both heads
    elif type(model) is SeparateActorCritic:
        towers = [list(model.actor), list(model.critic)]  # the policy's, the value's
    else:
        return None
    for block in (block for tower in towers for block in tower):
        if not (isinstance(block, nn.Sequential) and len(block) == 2
                and type(block[0]) is nn.Linear and type(block[1]) in (nn.Tanh, nn.ReLU)):
            return None
    return ManualPPOGradients(model, cfg, [Tower(tower) for tower in towers])


class Tower:
    """Hidden blocks (Linear, then Tanh or ReLU): their forward pass keeping each block's input,
    and the backward pass writing each Linear's gradient."""

    def __init__(self, blocks: list[nn.Sequential]):
        self.linears = [block[0] for block in blocks]
        self.relu = [type(block[1]) is nn.ReLU for block in blocks]   # else tanh

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features of ``x``, and every block's input (what the backward pass needs)."""
        inputs = []
        for linear, relu in zip(self.linears, self.relu):
            inputs.append(x)
            x = torch.addmm(linear.bias, x, linear.weight.t())
            x = x.relu_() if relu else x.tanh_()
        return x, inputs

    def backward(self, g_x: torch.Tensor, x: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        """From ``g_x`` = d loss / d features ``x``, every block's gradients."""
        for k in range(len(self.linears) - 1, -1, -1):
            linear = self.linears[k]
            # autograd's own kernels for the two derivatives: one pass each, where
            # g_x.mul_(x > 0) takes three (the mask, its cast to float, the product)
            g_pre = threshold_backward(g_x, x, 0) if self.relu[k] else tanh_backward(g_x, x)
            x = inputs[k]
            weight_grad(g_pre, x, linear.weight.grad)
            torch.sum(g_pre, 0, out=linear.bias.grad)
            if k:
                g_x = g_pre @ linear.weight


class ManualPPOGradients:
    """Loss, diagnostics and gradients of PPO minibatches for one :class:`ActorCritic` (one
    tower, feeding both heads) or :class:`SeparateActorCritic` (the policy's tower and the
    value's)."""

    def __init__(self, model: ActorCritic | SeparateActorCritic, cfg: Config,
                 towers: list[Tower]):
        self.towers = towers
        self.head = model.head
        self.continuous = model.continuous
        self.cfg = cfg

    @torch.no_grad()
    def forward_backward(self, obs, actions, old_logp, adv, old_value, returns,
                         with_stats: bool = True) -> tuple[float, dict]:
        """Write d loss / d param into every ``param.grad``; return (loss, diagnostics), the
        diagnostics as :func:`mpirl.algos.ppo.ppo_loss` gives them (empty without stats)."""
        cfg, head, B = self.cfg, self.head, len(obs)
        # forward, keeping every layer's input
        x, inputs = self.towers[0].forward(obs)
        x_v, inputs_v = self.towers[-1].forward(obs) if len(self.towers) > 1 else (x, inputs)
        pi = torch.addmm(head.policy.bias, x, head.policy.weight.t())
        value = torch.addmm(head.value.bias, x_v, head.value.weight.t()).squeeze(1)

        # log-probabilities and entropies
        if self.continuous:
            log_std = head.log_std
            inv_var = (-2.0 * log_std).exp()                               # 1 / s^2
            diff = actions - pi
            z2 = diff.square() * inv_var                                   # ((a - mu) / s)^2
            logp = (-0.5 * z2 - log_std).sum(1) - 0.5 * math.log(2 * math.pi) * pi.shape[1]
            entropy_mean = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum()
        else:
            logp_all = torch.log_softmax(pi, 1)
            p = logp_all.exp()
            entropy = -(p * logp_all).sum(1)
            taken = actions.long().unsqueeze(1)
            logp = logp_all.gather(1, taken).squeeze(1)
            entropy_mean = entropy.mean()

        # the clipped surrogate and its gradient with respect to logp
        log_ratio = logp - old_logp
        ratio = log_ratio.exp()
        surrogate = -adv * ratio
        surrogate_clipped = -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)
        pg_loss = torch.maximum(surrogate, surrogate_clipped).mean()
        g_logp = surrogate.mul_(surrogate >= surrogate_clipped).div_(B)   # (reuses surrogate)

        # the value loss and its gradient with respect to v
        error = value - returns
        if cfg.clip_vloss:
            change = value - old_value
            error_clipped = old_value + change.clamp(-cfg.clip_coef, cfg.clip_coef) - returns
            sq, sq_clipped = error.square(), error_clipped.square()
            v_loss = 0.5 * torch.maximum(sq, sq_clipped).mean()
            inside = change.abs() <= cfg.clip_coef     # where the clamp passes gradient
            tie = 0.5 * (sq == sq_clipped)
            g_value = error * ((sq > sq_clipped) + tie) \
                + error_clipped * inside * ((sq < sq_clipped) + tie)
        else:
            v_loss = 0.5 * error.square().mean()
            g_value = error
        g_value = g_value * (cfg.vf_coef / B)

        # back through the head
        if self.continuous:
            g_pi = diff.mul_(inv_var).mul_(g_logp.unsqueeze(1))
            torch.sum(z2.sub_(1.0).mul_(g_logp.unsqueeze(1)), 0, out=log_std.grad)
            log_std.grad.sub_(cfg.ent_coef)
        else:
            g_pi = p * ((cfg.ent_coef / B) * (logp_all + entropy.unsqueeze(1))
                        - g_logp.unsqueeze(1))
            g_pi.scatter_add_(1, taken, g_logp.unsqueeze(1))
        weight_grad(g_pi, x, head.policy.weight.grad)
        torch.sum(g_pi, 0, out=head.policy.bias.grad)
        weight_grad(g_value.unsqueeze(1), x_v, head.value.weight.grad)
        head.value.bias.grad.fill_(g_value.sum())

        # back through the hidden blocks
        if len(self.towers) == 1:
            self.towers[0].backward(torch.addr(g_pi @ head.policy.weight, g_value,
                                               head.value.weight[0]), x, inputs)
        else:
            self.towers[0].backward(g_pi @ head.policy.weight, x, inputs)
            self.towers[1].backward(torch.outer(g_value, head.value.weight[0]), x_v, inputs_v)

        loss = pg_loss - cfg.ent_coef * entropy_mean + cfg.vf_coef * v_loss
        if not with_stats:
            return loss.item(), {}
        figures = torch.stack([loss, pg_loss, v_loss, entropy_mean,
                               ((ratio - 1) - log_ratio).mean(),
                               ((ratio - 1).abs() > cfg.clip_coef).float().mean()]).tolist()
        return figures[0], dict(zip(("policy_loss", "value_loss", "entropy", "approx_kl",
                                     "clipfrac"), figures[1:]))


def weight_grad(g_out: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` = g_out^T x, a Linear weight's gradient (out_features, in_features).

    MKL is slow at (F, B) x (B, k) with few columns k: for the 64 x 4 first layer of CartPole,
    (x^T g_out)^T is 3x faster (7 us against 22 us here); for square or wide shapes the direct
    product is the faster one."""
    if x.shape[1] < g_out.shape[1]:
        out.copy_((x.t() @ g_out).t())
    else:
        torch.mm(g_out.t(), x, out=out)
