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
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from mpirl import faults
from mpirl.algos.ppo_grad import hand_gradients
from mpirl.config import Config
from mpirl.comm.collectives import allreduce_sum, check_in_sync, global_mean_std
from mpirl.comm.sync import make_sync
from mpirl.comm.world import World
from mpirl.envs.make import make_vec
from mpirl.envs.vec import VecEnv
from mpirl.models.actor_critic import Policy
from mpirl.multitask import make_tasks
from mpirl.optim import FlatAdam
from mpirl.pipeline.shard import model_shard
from mpirl.run import Run


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


# -- training -------------------------------------------------------------------------------
def train(cfg: Config, world: World, run: Run) -> dict:
    # What this rank trains: --env-id, or (--tasks) one of several tasks, whose statistics are
    # then pooled over the task's group of ranks.
    tasks = make_tasks(cfg, world, run)
    group = tasks.group

    # Environments: each rank its own, seeded from (seed, rank).
    vec = make_vec(tasks.env_id, cfg.num_envs, cfg.vector_mode)
    normalizer = tasks.normalizer(vec.single_observation_space.shape[0])
    envs = VecEnv(vec, seed=world.rank_seed(cfg.seed, 0), normalizer=normalizer)
    obs_dim = normalizer.out_dim  # (multi-task: padded to the widest task + a task one-hot)
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)

    # The replica: same initialisation everywhere, then rank 0's copy is broadcast anyway.
    torch.manual_seed(cfg.seed)
    model = tasks.model(obs_dim, envs.single_action_space)
    policy = Policy(model.continuous, model.head.log_std)
    shard = model_shard(cfg, world, model)  # what this rank trains: the model, or a pipeline stage
    grads = shard.grads
    optimizer = FlatAdam(grads, lr=cfg.learning_rate, eps=1e-5)
    sync = make_sync(cfg.sync_mode, shard.data, grads, shard.module, optimizer, cfg.sync_every,
                     cfg.bucket_mb)
    sync = tasks.weighted_sync(sync, grads, model, optimizer)  # multi-task: heads weighted
    value_norm = tasks.value_norm(model)  # multi-task: PopArt per task; otherwise identity
    hand = hand_gradients(model, cfg)  # the loss gradient by hand where it applies; else autograd
    sampler = torch.Generator().manual_seed(world.rank_seed(cfg.seed, 1))
    shuffler = np.random.default_rng(shard.shuffle_seed(cfg.seed))

    T, E, N = cfg.num_steps, cfg.num_envs, world.size
    steps_per_update = T * E * N
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    start_update = 0

    restored = run.restore()
    if restored is not None:
        start_update = restored.meta["update"]
        if world.is_root:
            model.load_state_dict(restored.shared["model"])
        shard.load_optimizer(optimizer, restored.shared["optimizer"] if world.is_root else None)
        normalizer.load_state_dict(world.bcast_obj(restored.shared["normalizer"]
                                                   if world.is_root else None))
        tasks.load_state_dict(world.bcast_obj(restored.shared["tasks"]
                                              if world.is_root else None))
        exact = restored.local is not None and envs.load_state_dict(restored.local["env"])
        if exact:
            sampler.set_state(restored.local["sampler"])
            shuffler.bit_generator.state = restored.local["shuffler"]
        if not world.all_ranks(exact):
            run.log.print("note: environment state not restorable here; resumed with fresh "
                          "episodes (not bitwise identical to an uninterrupted run)")
    shard.sync_params(optimizer)

    # Rollout storage, preallocated once.
    obs_buf = torch.zeros(T, E, obs_dim)
    act_buf = torch.zeros((T, E) + ((model.action_dim,) if model.continuous else ()))
    logp_buf = torch.zeros(T, E)
    values = np.zeros((T + 1, E), np.float32)
    rewards = np.zeros((T, E), np.float32)
    terminated = np.zeros((T, E), np.float32)
    ended = np.zeros((T, E), np.float32)
    valid = np.zeros((T, E), bool)

    def act_deterministic(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            params, _ = model.split(model(torch.from_numpy(obs)))
            return policy.mode(params).numpy()

    def evaluate(record: dict) -> float:
        value = evaluator.run(act_deterministic, normalizer)
        tasks.record_eval(record, record["global_step"])  # multi-task: per-task solved flags
        return value

    def checkpoint(update: int) -> None:
        shard.publish()  # the whole model, whatever the stages: loads with any --pipeline-stages
        shared = {"model": model.state_dict(), "optimizer": shard.optimizer_state(optimizer),
                  "normalizer": normalizer.state_dict(), "tasks": tasks.state_dict()}
        local = {"env": envs.state_dict(), "sampler": sampler.get_state(),
                 "shuffler": shuffler.bit_generator.state}
        run.save(update, shared, local, meta={"global_step": update * steps_per_update})

    run.start(start_update, steps_per_update)
    update = start_update
    for update in range(start_update, num_updates):
        faults.at("update", world.rank, update)
        update_start = time.perf_counter()
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - update / num_updates)

        # 1. Rollout: T steps of every env on this rank. None on the ranks of a parked task
        #    (--park-solved-tasks): they go through the update with an empty batch and a zero
        #    gradient, entering the same collectives as the ranks that train.
        faults.at("rollout", world.rank, update)
        training = tasks.training
        valid[:] = False
        with torch.no_grad():
            for t in range(T if training else 0):
                obs = torch.from_numpy(envs.observe())
                params, value = model.split(model(obs))
                action, logp = policy.sample(params, sampler)
                obs_buf[t], act_buf[t], logp_buf[t] = obs, action, logp
                values[t] = value.numpy()
                rewards[t], term, trunc, valid[t] = envs.step(action.numpy())
                terminated[t], ended[t] = term, term | trunc
            _, last_value = model.split(model(torch.from_numpy(normalizer(envs.raw_obs, False))))
            values[T] = last_value.numpy()
            value_norm.denormalize_(values)  # PopArt heads -> return units
        normalizer.allreduce_statistics(group)

        # 2. Advantages; the reset steps of next-step autoreset are left out of the batch.
        adv = compute_gae(rewards, values, terminated, ended, cfg.gamma, cfg.gae_lambda)
        keep = torch.from_numpy(valid.reshape(-1).nonzero()[0])
        b_obs = obs_buf.reshape(T * E, obs_dim)[keep]
        b_act = act_buf.reshape((T * E,) + act_buf.shape[2:])[keep]
        b_logp = logp_buf.reshape(-1)[keep]
        b_adv = torch.from_numpy(adv.reshape(-1))[keep]
        b_values = torch.from_numpy(values[:T].reshape(-1))[keep]
        b_returns = b_adv + b_values
        b_values, b_returns = value_norm.update(b_values, b_returns)  # value-head units
        if cfg.norm_adv:
            mean, std = global_mean_std(group, b_adv)
            b_adv = (b_adv - mean) / (std + 1e-8)

        # A pipeline trains on the rollouts of all its stages' ranks (identity otherwise).
        b_obs, b_act, b_logp, b_adv, b_values, b_returns = shard.pool(
            b_obs, b_act, b_logp, b_adv, b_values, b_returns)

        def learn(mb: np.ndarray) -> tuple[float, dict]:
            """Loss and stats of batch rows ``mb``; their gradient left in ``grads``."""
            if hand is None:
                return shard.forward_backward(b_obs, mb, minibatch_loss)
            if cfg.num_minibatches == 1:
                mb = slice(None)  # the whole batch: its order does not change the mean
            loss, stats = hand.forward_backward(b_obs[mb], b_act[mb], b_logp[mb], b_adv[mb],
                                                b_values[mb], b_returns[mb], want_stats)
            return (float("nan") if faults.at("loss", world.rank, update) else loss), stats

        def minibatch_loss(out: torch.Tensor, mb: np.ndarray):
            """PPO loss and stats of batch rows ``mb``, given the model's output for them."""
            params, value = model.split(out)
            logp, entropy = policy.logp_entropy(params, b_act[mb])
            loss, stats = ppo_loss(logp, b_logp[mb], b_adv[mb], value, b_values[mb],
                                   b_returns[mb], entropy, cfg, with_stats=want_stats)
            if faults.at("loss", world.rank, update):
                loss = loss * float("nan")
            return loss, stats

        # 3. Epochs of minibatch updates with averaged gradients.
        grads.comm_time_s = 0.0
        stats: dict = {}
        for epoch in range(cfg.update_epochs):
            # Diagnostics where they are read: the logged last epoch, or each under --target-kl.
            want_stats = epoch == cfg.update_epochs - 1 or cfg.target_kl is not None
            for mb in np.array_split(shuffler.permutation(len(b_obs)), cfg.num_minibatches):
                if training and len(mb):
                    loss, stats = learn(mb)
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss ({loss}) at update {update}")
                else:  # parked, or a minibatch emptied by dropped reset steps: nothing to learn
                    grads.zero()
                sync.gradients_ready()
                stats["grad_norm"] = shard.clip_(cfg.max_grad_norm)
                if not math.isfinite(stats["grad_norm"]):
                    raise FloatingPointError(f"non-finite averaged gradient at update {update}")
                optimizer.step()
            if cfg.target_kl is not None and allreduce_sum(
                    world, [stats.get("approx_kl", 0.0)])[0] / tasks.ranks_training > cfg.target_kl:
                break

        # 4. Bookkeeping: global statistics, desync check, evaluation, logs, checkpoints.
        update += 1
        sync_stats = sync.end_update(update)
        shard.publish()  # pipeline: every rank's whole model current again (to act and check)
        record = {**run.record(update), "learning_rate": optimizer.param_groups[0]["lr"],
                  "comm_time_s": grads.comm_time_s,
                  "update_time_s": time.perf_counter() - update_start, **stats, **sync_stats,
                  **tasks.episode_stats(envs.stats)}
        if update % cfg.desync_check_interval == 0 and sync.replicas_identical:
            check_in_sync(world, model)
        if run.end_update(update, num_updates, record, evaluate, checkpoint,
                          eval_now=tasks.reached_target_in_training(),
                          before_final_checkpoint=sync.average):
            break

    if sync.replicas_identical:
        check_in_sync(world, model)
    envs.close()
    evaluator.close()
    return run.finish(update, extra=tasks.summary())
