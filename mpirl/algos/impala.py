"""IMPALA (Espeholt et al., 2018): actors that never wait for a learner, V-trace for their lag.

    roles     world ranks 0..L-1 learn (--learners L), the others act; actor r serves learner
              (r - L) mod L. The learners are data-parallel among themselves: one Allreduce of the
              flat gradient per update, as PPO's replicas.
    actors    step their vector env with a local copy of the policy and send each block of
              --num-steps x --num-envs steps (raw observations, actions, behaviour
              log-probabilities, rewards, terminations, truncations, the policy version, the
              bootstrap observation) to their learner, several in flight, through a bounded
              queue (mpirl.comm.stream); parameters are taken between blocks as they arrive
    learners  take --blocks-per-update blocks, compute V-trace targets and advantages
              (mpirl.algos.vtrace) under the current policy, take one gradient step, and send
              the parameters (with the observation statistics) every --publish-interval updates
    books     only the learners keep the run's books: evaluation, metrics, checkpoints, stop
              signals. At the end they stop the actors and discard the blocks still in flight.

Observations travel raw; the learners keep the normaliser (merged over learners every update)
and send its statistics with the parameters, so actors act on what the learner would see,
lagged like the parameters, and V-trace corrects for both.

:func:`train` reads top to bottom; the learner's and the actor's loops follow it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from mpirl import faults
from mpirl.algos.replica import Replica, restore_or_start, save_checkpoint
from mpirl.algos.vtrace import vtrace
from mpirl.comm.collectives import (allreduce_max, allreduce_mean_std, allreduce_sum,
                                    check_in_sync)
from mpirl.comm.stream import ActorLink, LearnerLink, Layout, Message
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.episodes import episode_sums, stats_from_sums
from mpirl.envs.normalize import RewardScaler
from mpirl.envs.vec import VecEnv
from mpirl.models.actor_critic import Policy
from mpirl.optim import flatten_params
from mpirl.run import Run
from mpirl.tasks import make_tasks

LAG_BINS = 256   # the lag histogram's bins: 0, 1, ..., 254 learner updates, and 255 or more


def train(cfg: Config, world: World, run: Run) -> dict:
    L = cfg.learners
    is_learner = world.rank < L
    group = world.split(color=0 if is_learner else 1)   # the learners; the actors
    stream = world.dup()                                  # blocks and parameters, apart
    tasks = make_tasks(cfg, group, run.scoreboard, run.log.print)
    envs = tasks.make_envs(seed=world.rank_seed(cfg.seed, 0))
    torch.manual_seed(cfg.seed)
    model = tasks.network(envs)
    policy = Policy(model.continuous, model.head.log_std)
    layouts = Layouts.of(cfg, envs, sum(p.numel() for p in model.parameters()))
    if is_learner:
        actors = [r for r in range(L, world.size) if (r - L) % L == world.rank]
        return learner(cfg, world, group, stream, run, tasks, envs, model, policy, layouts,
                       actors)
    return actor(cfg, world, stream, run, envs, model, policy, layouts,
                 learner_rank=(world.rank - L) % L)


@dataclass
class Layouts:
    """The two message layouts: a trajectory block and a parameter message."""
    block: Layout
    params: Layout

    @classmethod
    def of(cls, cfg: Config, envs: VecEnv, n_params: int) -> "Layouts":
        T, E = cfg.num_steps, cfg.num_envs
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        continuous = action_space.shape != ()
        # the observation statistics that travel with the parameters (none for pixels)
        width = envs.normalizer.out_dim if envs.normalizer.enabled else 0
        block = Layout({
            "obs": (obs_space.dtype, (T + 1, E) + obs_space.shape),   # [T]: the bootstrap obs
            "actions": ((np.float32, (T, E) + action_space.shape) if continuous
                        else (np.int64, (T, E))),
            "logp": (np.float32, (T, E)),          # behaviour log-probabilities
            "rewards": (np.float32, (T, E)),
            "terminated": (np.bool_, (T, E)),
            "truncated": (np.bool_, (T, E)),
            "valid": (np.bool_, (T, E)),           # False: a reset step of next-step autoreset
            "version": (np.int64, (1,)),           # the learner update the policy came from
            "seq": (np.int64, (1,)),               # the actor's block number
            "episodes": (np.float64, (4,)),        # episode_sums of the episodes ended in it
        })
        params = Layout({"version": (np.int64, (1,)), "params": (np.float32, (n_params,)),
                         "obs_count": (np.float64, (1,)), "obs_mean": (np.float64, (width,)),
                         "obs_var": (np.float64, (width,))})
        return cls(block, params)


# -- the learner -------------------------------------------------------------------------------
def learner(cfg: Config, world: World, group: World, stream: World, run: Run, tasks,
            envs: VecEnv, model, policy: Policy, layouts: Layouts, actors: list[int]) -> dict:
    run.narrow(group)   # the learners keep the books: evaluation, metrics, checkpoints, signals
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)
    replica = Replica(cfg, group, model, tasks, adam_eps=1e-5)
    normalizer = envs.normalizer   # the learners' (their envs only supply the spaces)
    T, E, B = cfg.num_steps, cfg.num_envs, cfg.blocks_per_update
    # --normalize-reward: rewards travel raw and the learner scales them, keeping each actor's
    # envs' discounted returns (its blocks arrive in order); the statistics, merged over the
    # learners, are checkpointed as the envs' scaler's
    scaler = envs.reward_scaler = (RewardScaler(E * len(actors), cfg.gamma, clip=cfg.clip_reward)
                                   if cfg.normalize_reward else None)
    columns = {a: slice(j * E, (j + 1) * E) for j, a in enumerate(actors)}
    restored = restore_or_start(run, replica, envs, generators={})
    start_update = restored["update"] if restored else 0
    steps_per_update = group.size * B * T * E
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    link = LearnerLink(stream, actors, layouts.block, layouts.params, cfg.queue_depth)
    batch = BlockBatch.allocate(layouts.block, B)
    lag_histogram = np.zeros(LAG_BINS, np.int64)
    run.log.print(f"IMPALA: {group.size} learner(s), {world.size - group.size} actor(s); blocks "
                  f"of {T} steps x {E} envs, {B} per update; parameters every "
                  f"{cfg.publish_interval} update(s)")

    def send_params(version: int) -> None:
        link.send_params(lambda m: write_params(m, version, replica.optimizer.flat, normalizer))

    def act_deterministic(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            params, _ = model.split(model(torch.from_numpy(obs)))
            return policy.mode(params).numpy()

    send_params(start_update)
    run.start(start_update, steps_per_update)
    update = start_update
    for update in range(start_update, num_updates):
        faults.at("update", world.rank, update)
        started, waited = time.perf_counter(), link.wait_s
        if cfg.anneal_lr:
            replica.optimizer.param_groups[0]["lr"] = \
                cfg.learning_rate * (1.0 - update / num_updates)

        # 1. The update's blocks, from whichever actors have them ready.
        for i in range(B):
            def consume(actor: int, message: Message, i: int = i) -> None:
                batch.put(i, message)
                if scaler is not None:
                    batch.scale_rewards(i, scaler, columns[actor])
            link.recv_block(consume)
        lags = update - batch.versions
        lag_histogram += np.bincount(np.minimum(lags, LAG_BINS - 1), minlength=LAG_BINS)

        # 2. One gradient step on V-trace's targets, averaged over the learners.
        stats = learn_from_blocks(cfg, batch, model, policy, normalizer, replica, group,
                                  poison=faults.at("loss", world.rank, update))

        # 3. The new parameters and statistics out to the actors.
        update += 1
        normalizer.allreduce_statistics(group)
        if scaler is not None:
            scaler.allreduce_statistics(group)
        if update % cfg.publish_interval == 0:
            send_params(update)

        # 4. Bookkeeping: lag, utilisation, episodes, evaluation, logs, checkpoints.
        elapsed, wait = time.perf_counter() - started, link.wait_s - waited
        lag_sum, lag_n, wait_sum, elapsed_sum, *episodes = allreduce_sum(
            group, [lags.sum(), len(lags), wait, elapsed, *batch.episodes])
        record = {**run.record(update), "learning_rate": replica.optimizer.param_groups[0]["lr"],
                  "policy_lag_mean": lag_sum / lag_n,
                  "policy_lag_max": int(allreduce_max(group, [lags.max()])[0]),
                  "learner_utilisation": 1.0 - wait_sum / elapsed_sum,
                  "learner_wait_s": wait_sum / group.size, "update_time_s": elapsed,
                  **stats, **stats_from_sums(episodes)}
        if update % cfg.desync_check_interval == 0:
            check_in_sync(group, model)
        if run.end_update(
                update, num_updates, record,
                evaluate=lambda: evaluator.run_across_ranks(act_deterministic, normalizer.normalize),
                checkpoint=lambda u: save_checkpoint(run, u, replica, envs, {},
                                                     meta={"global_step": u * steps_per_update})):
            break

    # The actors stop; what they had in flight is received and discarded, never learned from.
    discarded = int(allreduce_sum(group, [link.stop_and_drain()])[0])
    run.log.print(f"stopped the actors: {discarded} block(s) in flight discarded (not learned "
                  "from)")
    check_in_sync(group, model)
    envs.close()
    evaluator.close()
    histogram = allreduce_sum(group, lag_histogram).astype(np.int64)
    blocks_from = {str(a): n for received in group.allgather_obj(link.blocks_received)
                   for a, n in received.items()}   # (learned from or discarded)
    return run.finish(update, extra={"learners": group.size, "actors": world.size - group.size,
                                     "blocks_from_actor": blocks_from,
                                     "blocks_discarded": discarded,
                                     "policy_lag_histogram": np.trim_zeros(histogram,
                                                                           "b").tolist()})


@dataclass
class BlockBatch:
    """One learner update's blocks side by side: B blocks of E envs make B * E columns."""
    obs: np.ndarray          # (T + 1, B * E, ...) raw
    actions: np.ndarray
    logp: np.ndarray         # (T, B * E) behaviour log-probabilities
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    versions: np.ndarray     # (B,) each block's policy version
    block_episodes: np.ndarray   # (B, 4) each block's episode_sums

    @classmethod
    def allocate(cls, layout: Layout, B: int) -> "BlockBatch":
        def wide(name):   # the block field with its env axis (1) B times as wide
            dtype, shape = layout.fields[name]
            return np.zeros((shape[0], shape[1] * B) + shape[2:], dtype)
        return cls(*(wide(n) for n in ("obs", "actions", "logp", "rewards", "terminated",
                                       "truncated", "valid")),
                   np.zeros(B, np.int64), np.zeros((B, 4)))

    def put(self, i: int, block: Message) -> None:
        columns = slice(i * self.E, (i + 1) * self.E)
        for name in ("obs", "actions", "logp", "rewards", "terminated", "truncated", "valid"):
            getattr(self, name)[:, columns] = block[name]
        self.versions[i] = block["version"][0]
        self.block_episodes[i] = block["episodes"]

    def scale_rewards(self, i: int, scaler: RewardScaler, envs: slice) -> None:
        """Block i's rewards scaled, step by step, by ``scaler``'s ``envs`` (its actor's)."""
        columns = slice(i * self.E, (i + 1) * self.E)
        ended = self.terminated[:, columns] | self.truncated[:, columns]
        for t in range(len(self.rewards)):
            self.rewards[t, columns] = scaler(self.rewards[t, columns], ended[t],
                                              self.valid[t, columns], envs)

    @property
    def E(self) -> int:
        return self.rewards.shape[1] // len(self.versions)

    @property
    def episodes(self) -> np.ndarray:
        return self.block_episodes.sum(0)


def learn_from_blocks(cfg: Config, batch: BlockBatch, model, policy: Policy, normalizer,
                      replica: Replica, group: World, poison: bool = False) -> dict:
    """One gradient step of the V-trace actor-critic loss on ``batch``: policy gradient with
    V-trace advantages, value regression on V-trace targets, entropy bonus; reset steps of
    autoreset left out. The gradient is averaged over the learners and clipped."""
    T, N = batch.rewards.shape
    x = np.concatenate([normalizer(batch.obs[:T].reshape((T * N,) + batch.obs.shape[2:])),
                        normalizer.normalize(batch.obs[T])])   # (the first T: into the statistics)
    params, values = model.split(model(torch.from_numpy(x)))
    values = values.view(T + 1, N)
    actions = torch.from_numpy(batch.actions.reshape((T * N,) + batch.actions.shape[2:]))
    logp, entropy = policy.logp_entropy(params[:T * N], actions)
    logp, entropy = logp.view(T, N), entropy.view(T, N)
    behaviour_logp = torch.from_numpy(batch.logp)
    vs, advantages = vtrace(behaviour_logp, logp.detach(), torch.from_numpy(batch.rewards),
                            values[:T].detach(), values[T].detach(),
                            torch.from_numpy(batch.terminated),
                            torch.from_numpy(batch.terminated | batch.truncated), cfg.gamma,
                            cfg.vtrace_rho_clip, cfg.vtrace_c_clip)
    mask = torch.from_numpy(batch.valid).float()
    rows = mask.sum().clamp(min=1.0)
    if cfg.norm_adv:   # as PPO's: mean and std of the learners' advantages of acting steps
        mean, std = allreduce_mean_std(group, advantages[mask.bool()])
        advantages = (advantages - mean) / (std + 1e-8)
    pg_loss = -(advantages * logp * mask).sum() / rows
    v_loss = 0.5 * ((vs - values[:T]).pow(2) * mask).sum() / rows
    entropy_mean = (entropy * mask).sum() / rows
    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy_mean
    if poison:
        loss = loss * float("nan")
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"non-finite loss ({loss.item()})")
    replica.grads.zero()
    loss.backward()
    replica.sync.gradients_ready()   # the learners' Allreduce
    grad_norm = replica.grads.clip_(cfg.max_grad_norm)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite averaged gradient ({grad_norm})")
    replica.optimizer.step()
    with torch.no_grad():
        ratio = (logp - behaviour_logp).exp()
        stats = {"loss": loss.item(), "policy_loss": pg_loss.item(), "value_loss": v_loss.item(),
                 "entropy": entropy_mean.item(), "grad_norm": grad_norm,
                 "importance_weight_mean": float((ratio * mask).sum() / rows),
                 "rho_clipped_fraction": float(((ratio > cfg.vtrace_rho_clip).float() * mask).sum()
                                               / rows)}
    return stats


def write_params(message: Message, version: int, flat: torch.Tensor, normalizer) -> None:
    """The learner's parameters and observation statistics, as of ``version`` updates."""
    message["version"][0] = version
    message["params"][:] = flat.numpy()
    if not message["obs_mean"].size:   # pixels, or --no-normalize-obs: no statistics
        return
    message["obs_count"][0] = normalizer.rms.count
    message["obs_mean"][:] = normalizer.rms.mean
    message["obs_var"][:] = normalizer.rms.var


# -- the actor ---------------------------------------------------------------------------------
def actor(cfg: Config, world: World, stream: World, run: Run, envs: VecEnv, model,
          policy: Policy, layouts: Layouts, learner_rank: int) -> dict:
    envs.reward_scaler = None   # rewards travel raw: the learner scales them
    flat = flatten_params(list(model.parameters()))
    link = ActorLink(stream, learner_rank, layouts.block, layouts.params, cfg.actor_in_flight)
    version = -1

    def load(message: Message) -> None:   # a complete message: never a half-written one
        nonlocal version
        version = int(message["version"][0])
        flat.copy_(torch.from_numpy(message["params"]))
        if message["obs_mean"].size:
            envs.normalizer.load_state_dict({"count": message["obs_count"][0],
                                             "mean": message["obs_mean"],
                                             "var": message["obs_var"]})

    link.recv_params(load, block=True)   # the first parameters (or, at once, the stop)
    sampler = torch.Generator().manual_seed(world.rank_seed(cfg.seed, 1))
    blocks = 0
    while (block := link.free_slot(load)) is not None:
        faults.at("update", world.rank, blocks)
        faults.at("rollout", world.rank, blocks)
        collect_block(block, envs, model, policy, sampler)
        block["version"][0], block["seq"][0] = version, blocks
        block["episodes"][:] = episode_sums(*envs.stats.drain())
        link.send_block()
        blocks += 1
        run.watchdog.beat()
        link.recv_params(load)   # newer parameters, if they have come
    link.finish()
    run.watchdog.stop()
    envs.close()
    return {"role": "actor", "blocks_sent": blocks, "wait_s": link.wait_s}


@torch.inference_mode()
def collect_block(block: Message, envs: VecEnv, model, policy: Policy,
                  sampler: torch.Generator) -> None:
    """T steps of every env into ``block``: the raw observations (and the one after the last),
    the actions sampled from the local policy and their log-probabilities, what the env gave."""
    T = len(block["rewards"])
    for t in range(T):
        raw = envs.raw_obs
        block["obs"][t] = raw
        params, _ = model.split(model(torch.from_numpy(envs.normalizer.normalize(raw))))
        action, logp = policy.sample(params, sampler)
        block["actions"][t], block["logp"][t] = action.numpy(), logp.numpy()
        (block["rewards"][t], block["terminated"][t], block["truncated"][t],
         block["valid"][t]) = envs.step(action.numpy())
    block["obs"][T] = envs.raw_obs
