"""Synchronous data-parallel PPO over MPI ranks.

Every rank steps its own vector env and holds a replica of the actor-critic. Each update:

    rollout    T steps x E envs on this rank (T*E*N steps over all N ranks)
    GAE        advantages per rank; normalised with the mean/std of ALL ranks' advantages
               (with --tasks: of the ranks of the rank's task)
    epochs     for each minibatch: loss -> backward -> Allreduce-average the flat gradient
               -> clip by the global norm of the averaged gradient -> identical Adam step
    bookkeeping  merged observation statistics, global episode stats, evaluation, checkpoints

Because every replica starts from rank 0's parameters and optimizer state and applies the same
averaged gradient, replicas stay bit-identical; a periodic checksum comparison proves it.

:func:`train` reads top to bottom; its steps are the functions below it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from mpirl import faults
from mpirl.algos.ppo_grad import manual_gradients
from mpirl.algos.replica import Replica, restore_or_start, save_checkpoint
from mpirl.comm.collectives import allreduce_mean, allreduce_mean_std, check_in_sync
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.vec import VecEnv
from mpirl.models.actor_critic import Policy
from mpirl.run import Run
from mpirl.tasks import make_tasks


def train(cfg: Config, world: World, run: Run) -> dict:
    # What this rank trains: --env-id, or (--tasks) one of several tasks, whose statistics are
    # then pooled over the task's group of ranks.
    tasks = make_tasks(cfg, world, run.scoreboard, run.log.print)
    envs = tasks.make_envs(seed=world.rank_seed(cfg.seed, 0))   # each rank its own, seeded
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)

    # The replica: the same initialisation everywhere, then rank 0's copy is broadcast anyway.
    torch.manual_seed(cfg.seed)
    model = tasks.network(envs).to(cfg.device)   # (the envs step on the CPU, whatever the device)
    policy = Policy(model.continuous, model.head.log_std)
    replica = Replica(cfg, world, model, tasks, adam_eps=1e-5)
    value_norm = tasks.value_norm(model)   # multi-task: PopArt per task; otherwise identity
    gradients = ppo_gradients(cfg, model, policy, replica)
    generators = {"sampler": torch.Generator().manual_seed(world.rank_seed(cfg.seed, 1)),
                  "shuffler": np.random.default_rng(replica.shard.shuffle_seed(cfg.seed))}
    run.log.print(f"PPO gradients: {gradients.name}")

    T, E, N = cfg.num_steps, cfg.num_envs, world.size
    steps_per_update = T * E * N
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    restored = restore_or_start(run, replica, envs, generators)
    start_update = restored["update"] if restored else 0
    rollout = Rollout.allocate(T, E, envs.normalizer.out_dim, model)   # (pixels: uint8)

    eval_sampler = torch.Generator()   # --no-eval-deterministic: re-seeded every evaluation

    def act_for_evaluation(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            params, _ = model.split(model(torch.from_numpy(obs).to(cfg.device)).cpu())
            if cfg.eval_deterministic:
                return policy.mode(params).numpy()
            return policy.sample(params, eval_sampler)[0].numpy()

    def evaluate() -> float:
        # the same draws as python -m mpirl.evaluate's with the run's seed (mpirl/evaluate.py)
        eval_sampler.manual_seed(world.rank_seed(cfg.seed + 10_000, 3))
        return evaluator.run_across_ranks(act_for_evaluation, envs.normalizer.normalize)

    run.start(start_update, steps_per_update)
    update = start_update
    for update in range(start_update, num_updates):
        faults.at("update", world.rank, update)
        update_start = time.perf_counter()
        if cfg.anneal_lr:
            replica.optimizer.param_groups[0]["lr"] = \
                cfg.learning_rate * (1.0 - update / num_updates)

        # 1. Rollout: T steps of every env on this rank. None on the ranks of a parked task
        #    (--park-solved-tasks): they go through the update with an empty batch and a zero
        #    gradient, entering the same collectives as the ranks that train.
        faults.at("rollout", world.rank, update)
        training = tasks.training
        collect_rollout(rollout, envs, model, policy, generators["sampler"], value_norm,
                        steps=T if training else 0)
        envs.allreduce_statistics(tasks.group)

        # 2. Advantages and the update's batch (a pipeline's: all its stages' rollouts).
        batch = make_batch(rollout, cfg, value_norm, tasks.group, replica.shard)

        # 3. Epochs of minibatch updates with averaged gradients.
        stats = learn(cfg, batch, gradients, replica, generators["shuffler"], training,
                      tasks.ranks_training, world, update)

        # 4. Bookkeeping: global statistics, desync check, evaluation, logs, checkpoints.
        update += 1
        sync_stats = replica.sync.end_update(update)
        replica.shard.allgather_model()   # pipeline: every rank's whole model current again
        record = {**run.record(update), "learning_rate": replica.optimizer.param_groups[0]["lr"],
                  "comm_time_s": replica.grads.comm_time_s,
                  "update_time_s": time.perf_counter() - update_start, **stats, **sync_stats,
                  **tasks.allreduce_episode_stats(envs.stats)}
        if update % cfg.desync_check_interval == 0 and replica.sync.replicas_identical:
            check_in_sync(world, model)
        if run.end_update(
                update, num_updates, record,
                evaluate=evaluate,
                checkpoint=lambda u: save_checkpoint(run, u, replica, envs, generators,
                                                     meta={"global_step": u * steps_per_update}),
                before_final_checkpoint=replica.sync.average):
            break

    if replica.sync.replicas_identical:
        check_in_sync(world, model)
    envs.close()
    evaluator.close()
    return run.finish(update, extra=tasks.summary())


# -- the steps of an update -----------------------------------------------------------------
@dataclass
class Rollout:
    """One update's rollout storage on this rank, allocated once."""
    obs: torch.Tensor          # (T, E, obs_dim) normalised observations; (T, E, C, H, W) uint8 pixels
    actions: torch.Tensor      # (T, E) or (T, E, action_dim)
    logp: torch.Tensor         # (T, E) behaviour log-probabilities
    values: np.ndarray         # (T + 1, E): values[t + 1] of the observation after step t
    rewards: np.ndarray        # (T, E)
    terminated: np.ndarray     # (T, E)
    ended: np.ndarray          # (T, E) terminated or truncated
    valid: np.ndarray          # (T, E) False for the reset steps of next-step autoreset

    @classmethod
    def allocate(cls, T: int, E: int, obs_dim: int | tuple, model) -> "Rollout":
        """``obs_dim``: a vector's width, or an image's shape (kept as uint8, never as floats)."""
        action_shape = (model.action_dim,) if model.continuous else ()
        pixels = isinstance(obs_dim, tuple)
        obs = (torch.zeros((T, E) + obs_dim, dtype=torch.uint8) if pixels
               else torch.zeros(T, E, obs_dim))
        return cls(obs, torch.zeros((T, E) + action_shape),
                   torch.zeros(T, E), np.zeros((T + 1, E), np.float32),
                   np.zeros((T, E), np.float32), np.zeros((T, E), np.float32),
                   np.zeros((T, E), np.float32), np.zeros((T, E), bool))


@torch.inference_mode()
def collect_rollout(rollout: Rollout, envs: VecEnv, model, policy: Policy,
                    sampler: torch.Generator, value_norm, steps: int) -> None:
    """``steps`` steps of every env on this rank into ``rollout``, and the value of the
    observation after the last, in return units. On a GPU only the forward pass runs there:
    actions are sampled on the CPU with the rank's generator, as on a CPU-only run."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rollout.valid[:] = False
    for t in range(steps):
        obs = torch.from_numpy(envs.observe())
        params, value = model.split(model(obs.to(device)).cpu())
        action, logp = policy.sample(params, sampler)
        rollout.obs[t], rollout.actions[t], rollout.logp[t] = obs, action, logp
        rollout.values[t] = value.numpy()
        rollout.rewards[t], term, trunc, rollout.valid[t] = envs.step(action.numpy())
        rollout.terminated[t], rollout.ended[t] = term, term | trunc
    last_obs = torch.from_numpy(envs.normalizer(envs.raw_obs, False)).to(device)
    _, last_value = model.split(model(last_obs).cpu())
    rollout.values[len(rollout.rewards)] = last_value.numpy()
    value_norm.denormalize_(rollout.values)  # PopArt heads -> return units


@dataclass
class Batch:
    """An update's training rows (the reset steps of autoreset left out)."""
    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    advantages: torch.Tensor
    values: torch.Tensor
    returns: torch.Tensor

    def __len__(self) -> int:
        return len(self.obs)

    def columns(self) -> tuple[torch.Tensor, ...]:
        """The columns in field order (that of ManualPPOGradients.forward_backward's arguments)."""
        return tuple(getattr(self, field.name) for field in fields(self))


def make_batch(rollout: Rollout, cfg: Config, value_norm, group: World, shard) -> Batch:
    """GAE advantages, the rows that acted, values and returns in value-head units, advantages
    normalised over ``group``'s ranks; a pipeline's batch holds all its stages' rows."""
    T, E = rollout.rewards.shape
    adv = compute_gae(rollout.rewards, rollout.values, rollout.terminated, rollout.ended,
                      cfg.gamma, cfg.gae_lambda)
    keep = torch.from_numpy(rollout.valid.reshape(-1).nonzero()[0])
    b_obs = rollout.obs.reshape((T * E,) + rollout.obs.shape[2:])[keep]
    b_act = rollout.actions.reshape((T * E,) + rollout.actions.shape[2:])[keep]
    b_logp = rollout.logp.reshape(-1)[keep]
    b_adv = torch.from_numpy(adv.reshape(-1))[keep]
    b_values = torch.from_numpy(rollout.values[:T].reshape(-1))[keep]
    b_returns = b_adv + b_values
    b_values, b_returns = value_norm.allreduce_update(b_values, b_returns)  # value-head units
    if cfg.norm_adv:
        mean, std = allreduce_mean_std(group, b_adv)
        b_adv = (b_adv - mean) / (std + 1e-8)
    rows = shard.allgather_batch(b_obs, b_act, b_logp, b_adv, b_values, b_returns)
    return Batch(*(t.to(cfg.device) for t in rows))   # learning runs where the model is


def learn(cfg: Config, batch: Batch, gradients, replica: Replica, shuffler: np.random.Generator,
          training: bool, ranks_training: int, world: World, update: int) -> dict:
    """``cfg.update_epochs`` epochs of minibatch steps on averaged gradients (stopped early
    when the approximate KL of the training ranks passes --target-kl); returns the last
    minibatch's diagnostics."""
    replica.grads.comm_time_s = 0.0
    stats: dict = {}
    for epoch in range(cfg.update_epochs):
        # Diagnostics where they are read: the logged last epoch, or each under --target-kl.
        with_stats = epoch == cfg.update_epochs - 1 or cfg.target_kl is not None
        order = shuffler.permutation(len(batch))
        for part, rows, size in gradients.minibatches(batch, order, cfg.num_minibatches):
            if training and size:
                loss, stats = gradients.forward_backward(
                    part, rows, with_stats, poison=faults.at("loss", world.rank, update))
                if not math.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss ({loss}) at update {update}")
            else:  # parked, or a minibatch emptied by dropped reset steps: nothing to learn
                replica.grads.zero()
            replica.sync.gradients_ready()
            stats["grad_norm"] = replica.shard.clip_(cfg.max_grad_norm)
            if not math.isfinite(stats["grad_norm"]):
                raise FloatingPointError(f"non-finite averaged gradient at update {update}")
            replica.optimizer.step()
        if cfg.target_kl is not None and allreduce_mean(
                world, stats.get("approx_kl", 0.0), count=ranks_training) > cfg.target_kl:
            break
    return stats


# -- the loss's gradient: by hand where it applies, else autograd ----------------------------
class ManualGradients:
    """The plain actor-critic's loss and gradient written out (mpirl/algos/ppo_grad.py)."""
    name = "by hand (mpirl/algos/ppo_grad.py)"

    def __init__(self, manual):
        self.manual = manual

    @staticmethod
    def minibatches(batch: Batch, order: np.ndarray, n: int):
        """(batch, rows, size) of each minibatch in turn: contiguous slices of the batch put
        in ``order`` once an epoch (one gather per column, not one per minibatch); one
        minibatch is the whole batch as it stands (its order does not change the mean)."""
        if n == 1:
            yield batch, slice(None), len(batch)
            return
        shuffled = Batch(*(column[torch.from_numpy(order)] for column in batch.columns()))
        for part in np.array_split(np.arange(len(order)), n):
            yield shuffled, slice(part[0], part[-1] + 1) if len(part) else slice(0, 0), len(part)

    def forward_backward(self, batch: Batch, rows, with_stats: bool, poison: bool = False):
        loss, stats = self.manual.forward_backward(
            *(column[rows] for column in batch.columns()), with_stats)
        return (float("nan") if poison else loss), stats


class AutogradGradients:
    """:func:`ppo_loss` through autograd and the shard: any model, pipeline stages, and
    --sync-mode overlap (whose buckets start from autograd's hooks)."""
    name = "autograd"

    def __init__(self, cfg: Config, model, policy: Policy, shard):
        self.cfg, self.model, self.policy, self.shard = cfg, model, policy, shard

    @staticmethod
    def minibatches(batch: Batch, order: np.ndarray, n: int):
        """(batch, rows, size) of each minibatch: row indices into the batch (a pipeline's
        stages agree on them through stage 0's)."""
        for rows in np.array_split(order, n):
            yield batch, rows, len(rows)

    def forward_backward(self, batch: Batch, rows, with_stats: bool, poison: bool = False):
        def minibatch_loss(out: torch.Tensor, part: np.ndarray):
            params, value = self.model.split(out)
            logp, entropy = self.policy.logp_entropy(params, batch.actions[part])
            loss, stats = ppo_loss(logp, batch.logp[part], batch.advantages[part], value,
                                   batch.values[part], batch.returns[part], entropy, self.cfg,
                                   with_stats=with_stats)
            return (loss * float("nan") if poison else loss), stats

        return self.shard.forward_backward(batch.obs, rows, minibatch_loss)


def ppo_gradients(cfg: Config, model, policy: Policy, replica: Replica):
    """The hand-written gradient for the plain actor-critic (same results, a fraction of
    autograd's overhead at RL batch sizes), autograd for everything else."""
    manual = manual_gradients(model, cfg)
    if manual is None:
        return AutogradGradients(cfg, model, policy, replica.shard)
    return ManualGradients(manual)


# -- the two pieces of PPO math, as pure functions (unit-tested against hand computations) -----
def compute_gae(rewards: np.ndarray, values: np.ndarray, terminated: np.ndarray,
                ended: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates, shape (T, E).

    rewards, terminated, ended: (T, E) for steps 0..T-1 (``ended`` = terminated or truncated).
    values: (T+1, E), where values[t+1] is the value of the observation that followed step t.
    A terminated step does not bootstrap; a truncated one bootstraps from the value of its final
    observation (with next-step autoreset that observation is the one the env returned), and
    neither lets advantages flow back across the episode boundary.
    """
    T = len(rewards)
    adv = np.zeros_like(rewards)
    last = np.zeros(rewards.shape[1:], dtype=rewards.dtype)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * values[t + 1] * (1.0 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1.0 - ended[t]) * last
        adv[t] = last
    return adv


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
             value: torch.Tensor, old_value: torch.Tensor, returns: torch.Tensor,
             entropy: torch.Tensor, cfg: Config,
             with_stats: bool = True) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate objective plus value loss minus entropy bonus (all shapes (B,)).

    ``with_stats``: also the diagnostics (losses, approximate KL, clip fraction) — five host
    syncs and a few ops, so the trainer asks only where it reads them.
    """
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    pg_loss = torch.max(-adv * ratio,
                        -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
    if cfg.clip_vloss:
        clipped = old_value + (value - old_value).clamp(-cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * torch.max((value - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((value - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = pg_loss - cfg.ent_coef * entropy_mean + cfg.vf_coef * v_loss
    if not with_stats:
        return loss, {}
    with torch.no_grad():
        stats = {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
                 "entropy": entropy_mean.item(),
                 "approx_kl": ((ratio - 1) - log_ratio).mean().item(),
                 "clipfrac": ((ratio - 1).abs() > cfg.clip_coef).float().mean().item()}
    return loss, stats
