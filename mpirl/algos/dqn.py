"""Ape-X-style DQN over MPI ranks, with a replay memory that spans all ranks.

Every rank steps its own vector env with its own exploration rate and holds a replica of the
Q-network. Each update:

    act        train_frequency steps x E envs on this rank, epsilon-greedy: rank i of N explores
               with eps^(1 + alpha * i / (N - 1)) (Ape-X; multi-task: i of the task's N ranks);
               a single rank (multi-task: a task's only rank) anneals epsilon linearly
    insert     n-step transition records into the replay memory, shared per --replay-sharing
               (allgather: every memory gets every rank's records; sharded: one global memory in
               N shards; none: separate memories)
    learn      as many gradient steps as the rate limiter allows (samples per insert, counted
               over all ranks): a global batch of N x B drawn from the memory, rank k learning from
               slice k; double-DQN n-step targets from the target network; importance-weighted
               Huber loss; gradients averaged (one Allreduce), one identical Adam step everywhere;
               new priorities back to the memory; target network hard-copied or Polyak-averaged
               every target_network_frequency gradient steps
    bookkeeping  as PPO: merged observation statistics, global episode statistics, evaluation,
               checkpoints, stop signals, a periodic check that replicas agree bit for bit

Observations are stored raw and normalised when used (acting and learning), so the merged
statistics may keep moving without making the memory stale. On --resume the replay memory starts
empty (it is not checkpointed) and learning waits until it holds learning_starts transitions again.

Multi-task (--tasks; mpirl.multitask, the same pieces as PPO's): each rank acts in its task; the
Q-network has a shared trunk and a Q head per task, reading each row's task from its one-hot;
records carry their task id (raw observations padded to the widest task), so a replayed batch
may mix tasks, each transition normalised with its task's statistics and scored by its task's
head; each transition is weighted by its task in the loss and each head scaled by its task's
share of the global batch (--task-weighting; mpirl.comm.task_sync), still one Allreduce.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mpirl import faults
from mpirl.config import Config
from mpirl.comm.collectives import FlatGradients, check_in_sync, sync_params
from mpirl.comm.sync import AllreduceSync
from mpirl.comm.world import World
from mpirl.envs.make import make_vec
from mpirl.envs.vec import VecEnv
from mpirl.models.qnet import QNetwork
from mpirl.multitask import make_tasks
from mpirl.optim import FlatAdam
from mpirl.replay import NStepAdder, RateLimiter, ReplayBuffer, anneal_beta, make_shared_replay
from mpirl.run import Run


def linear_schedule(start_e: float, end_e: float, duration: float, t: float) -> float:
    """Epsilon from ``start_e`` to ``end_e`` linearly over ``duration`` steps (CleanRL's)."""
    slope = (end_e - start_e) / max(duration, 1.0)
    return max(slope * t + start_e, end_e)


def apex_epsilon(base: float, alpha: float, rank: int, size: int) -> float:
    """Rank ``rank``'s fixed exploration rate among ``size`` actors: base^(1 + alpha i/(N-1))."""
    return base ** (1.0 + alpha * rank / (size - 1))


def actor_epsilon(cfg: Config, group: World) -> float | None:
    """This rank's fixed Ape-X rate, spread over the ranks that act in the same env (the world;
    multi-task: the task's group, so every task gets the whole range of rates), or None for the
    linear schedule of a rank that acts alone."""
    if group.size == 1:
        return None
    return apex_epsilon(cfg.apex_epsilon, cfg.apex_alpha, group.rank, group.size)


def dqn_loss(q_network: QNetwork, target_network: QNetwork, obs, actions, rewards, next_obs,
             dones, discounts, weights, double_q: bool):
    """Importance-weighted Huber loss of n-step (double) DQN; all inputs have leading dim B.

    target = R + g^k (1 - done) Q_target(s', a*), a* = argmax Q(s', .) (double) or of Q_target.
    Returns (loss, |TD error| (B,) as new priorities, Q(s, a) (B,)).
    """
    with torch.no_grad():
        next_q = target_network(next_obs)
        if double_q:
            next_actions = q_network(next_obs).argmax(dim=1, keepdim=True)
            next_value = next_q.gather(1, next_actions).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        td_target = rewards + discounts * (1.0 - dones) * next_value
    q_taken = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    loss = (weights * F.smooth_l1_loss(q_taken, td_target, reduction="none")).mean()
    return loss, (td_target - q_taken).detach().abs(), q_taken.detach()


@torch.no_grad()
def update_target(target_network: QNetwork, q_network: QNetwork, tau: float) -> None:
    """target <- tau * q + (1 - tau) * target (tau = 1: a hard copy)."""
    for t, q in zip(target_network.parameters(), q_network.parameters()):
        t.copy_(q) if tau >= 1.0 else t.lerp_(q, tau)


def train(cfg: Config, world: World, run: Run) -> dict:
    # What this rank trains: --env-id, or (--tasks) one of several tasks.
    tasks = make_tasks(cfg, world, run)

    # Environments: each rank its own, seeded from (seed, rank).
    vec = make_vec(tasks.env_id, cfg.num_envs, cfg.vector_mode)
    # (multi-task: every task's statistics on every rank, for replayed batches mixing tasks)
    normalizer = tasks.normalizer(vec.single_observation_space.shape[0], every_task=True)
    envs = VecEnv(vec, seed=world.rank_seed(cfg.seed, 0), normalizer=normalizer)
    n_actions = int(envs.single_action_space.n)  # this rank's actions (its random ones)
    obs_dim = normalizer.out_dim  # (multi-task: padded to the widest task + a task one-hot)
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)

    # The replica and its target network: same initialisation everywhere, rank 0's broadcast.
    torch.manual_seed(cfg.seed)
    q_network = tasks.q_network(obs_dim, n_actions).to(cfg.device)
    target_network = tasks.q_network(obs_dim, n_actions).to(cfg.device)
    grads = FlatGradients(q_network.parameters(), world)
    optimizer = FlatAdam(grads, lr=cfg.learning_rate)
    sync = tasks.weighted_sync(AllreduceSync(world, grads), grads, q_network)  # (task-weighted)
    explorer = np.random.default_rng(world.rank_seed(cfg.seed, 1))

    # Replay: this rank's memory, shared as --replay-sharing says; records built n steps late.
    memory = ReplayBuffer(cfg.buffer_size,
                          tasks.transition_dtype(envs.single_observation_space.shape[0]),
                          cfg.prioritized, cfg.per_alpha)
    replay = make_shared_replay(cfg.replay_sharing, world, memory, cfg.seed)
    adder = NStepAdder(cfg.num_envs, cfg.n_step, cfg.gamma, memory.storage.dtype)

    E, N, B = cfg.num_envs, world.size, cfg.batch_size
    steps_per_update = cfg.train_frequency * E * N          # global env steps per update
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    fixed_epsilon = actor_epsilon(cfg, tasks.group)

    def new_limiter() -> RateLimiter | None:
        """Samples per insert pinned over all ranks (None: --samples-per-insert 0, CleanRL-style
        fixed gradient_steps per update instead)."""
        if cfg.samples_per_insert <= 0:
            return None
        return RateLimiter(cfg.samples_per_insert, min_size=max(cfg.learning_starts, N * B),
                           tolerance=cfg.spi_tolerance, sample_chunk=N * B,
                           insert_chunk=steps_per_update)

    limiter = new_limiter()
    start_update, gradient_steps, learn_from_step = 0, 0, cfg.learning_starts
    restored = run.restore()
    if restored is not None:
        start_update = restored.meta["update"]
        gradient_steps = restored.meta["gradient_steps"]
        if world.is_root:
            q_network.load_state_dict(restored.shared["model"])
            target_network.load_state_dict(restored.shared["target"])
            optimizer.load_state_dict(restored.shared["optimizer"])
        normalizer.load_state_dict(world.bcast_obj(restored.shared["normalizer"]
                                                   if world.is_root else None))
        tasks.load_state_dict(world.bcast_obj(restored.shared.get("tasks", {})
                                              if world.is_root else None))
        exact = restored.local is not None and envs.load_state_dict(restored.local["env"])
        if exact:
            explorer.bit_generator.state = restored.local["explorer"]
        if not world.all_ranks(exact):
            run.log.print("note: environment state not restorable here; resumed with fresh "
                          "episodes")
        learn_from_step = start_update * steps_per_update + cfg.learning_starts
        run.log.print(f"note: the replay memory is not checkpointed; it restarts empty and "
                      f"learning resumes after {cfg.learning_starts:,} new global steps")
    sync_params(world, q_network, optimizer)
    if restored is None:
        update_target(target_network, q_network, tau=1.0)
    sync_params(world, target_network)

    def act_greedy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q_network(torch.from_numpy(obs)).argmax(dim=1).numpy()

    def column(records: np.ndarray, name: str, normalise: bool = False) -> torch.Tensor:
        values = np.ascontiguousarray(records[name])
        if normalise:  # (multi-task: each record with its own task's statistics, tagged)
            task = records["task"] if "task" in records.dtype.names else None
            values = normalizer.normalize_replayed(values, task)
        return torch.from_numpy(values)

    def learn(beta: float) -> dict:
        """One gradient step on this rank's slice of a global batch of N x B transitions."""
        nonlocal gradient_steps
        batch = replay.sample(B, beta)
        r = batch.records
        # multi-task: each transition weighted by its task (and the heads scaled to match)
        weights = batch.weights * tasks.sample_weights(r)
        loss, td_abs, q_taken = dqn_loss(
            q_network, target_network, column(r, "obs", True), column(r, "action"),
            column(r, "reward"), column(r, "next_obs", True), column(r, "done").float(),
            column(r, "discount"), torch.from_numpy(weights), cfg.double_q)
        if faults.at("loss", world.rank, update):
            loss = loss * float("nan")
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"non-finite loss ({loss.item()}) at update {update}")
        grads.zero()
        loss.backward()
        sync.gradients_ready()  # the Allreduce average (multi-task: task-weighted)
        grad_norm = grads.clip_(cfg.max_grad_norm)
        optimizer.step()
        replay.update_priorities(batch, td_abs.numpy())
        gradient_steps += 1
        if gradient_steps % cfg.target_network_frequency == 0:
            update_target(target_network, q_network, cfg.tau)
        return {"td_loss": loss.item(), "q_mean": q_taken.mean().item(), "grad_norm": grad_norm}

    def evaluate(record: dict) -> float:
        value = evaluator.run(act_greedy, normalizer)
        tasks.record_eval(record, record["global_step"])  # multi-task: per-task solved flags
        return value

    def checkpoint(update: int) -> None:
        shared = {"model": q_network.state_dict(), "target": target_network.state_dict(),
                  "optimizer": optimizer.state_dict(), "normalizer": normalizer.state_dict(),
                  "tasks": tasks.state_dict()}
        local = {"env": envs.state_dict(), "explorer": explorer.bit_generator.state}
        run.save(update, shared, local, meta={"global_step": update * steps_per_update,
                                              "gradient_steps": gradient_steps})

    run.start(start_update, steps_per_update)
    update = start_update
    global_step = start_update * steps_per_update
    stats: dict = {}
    for update in range(start_update, num_updates):
        faults.at("update", world.rank, update)
        grads.comm_time_s = 0.0
        learned = 0

        # 1. Act: train_frequency epsilon-greedy steps of every env on this rank.
        epsilon = fixed_epsilon if fixed_epsilon is not None else linear_schedule(
            cfg.start_e, cfg.end_e, cfg.exploration_fraction * cfg.total_timesteps, global_step)
        beta = anneal_beta(cfg.per_beta, global_step / cfg.total_timesteps)
        for _ in range(cfg.train_frequency):
            # the rate limiter refuses more inserts while learning lags too far behind
            while limiter is not None and not limiter.can_insert(E * N):
                stats = learn(beta)
                limiter.sample(N * B)
                learned += 1
            raw_obs = normalizer.for_replay(envs.raw_obs)  # (multi-task: padded to the widest)
            actions = act_greedy(envs.observe())
            explore = explorer.random(E) < epsilon
            if global_step < learn_from_step:   # fill the memory with uniformly random play
                explore[:] = True
            actions[explore] = explorer.integers(0, n_actions, int(explore.sum()))
            rewards, terminated, truncated, valid = envs.step(actions)
            replay.add(tasks.tag(adder.add(raw_obs, actions, rewards,
                                           normalizer.for_replay(envs.raw_obs), terminated,
                                           truncated, valid)))
            global_step += E * N
            if limiter is not None:
                limiter.insert(E * N)
        normalizer.allreduce_statistics(tasks.group)

        # 2. Learn: as far as the rate limiter allows (or gradient_steps, with no limiter).
        if limiter is not None:
            while limiter.can_sample(N * B):
                stats = learn(beta)
                limiter.sample(N * B)
                learned += 1
        elif global_step >= learn_from_step:
            for _ in range(cfg.gradient_steps):
                stats = learn(beta)
                learned += 1

        # 3. Bookkeeping: global statistics, desync check, evaluation, logs, checkpoints.
        update += 1
        record = {**run.record(update), "epsilon": epsilon, "beta": beta, "gradient_steps": gradient_steps,
                  "learned_this_update": learned, "replay_size": len(memory),
                  "comm_time_s": grads.comm_time_s, **stats,
                  **tasks.episode_stats(envs.stats)}
        if limiter is not None:
            record["samples_per_insert"] = limiter.ratio
        if update % cfg.desync_check_interval == 0:
            check_in_sync(world, q_network)
        if run.end_update(update, num_updates, record, evaluate, checkpoint,
                          eval_now=tasks.reached_target_in_training()):
            break

    check_in_sync(world, q_network)
    envs.close()
    evaluator.close()
    return run.finish(update, extra={"replay_sharing": cfg.replay_sharing,
                                     "gradient_steps": gradient_steps,
                                     "samples_per_insert": limiter.ratio if limiter else None,
                                     **(tasks.summary() or {})})
