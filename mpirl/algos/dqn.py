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
empty and learning waits until it holds learning_starts transitions again, unless --save-replay
kept it (each rank writes its memory, records or frames, to run_dir/replay/ at every checkpoint;
a resumed run then goes on bit for bit where its envs can be restored).

Pixels (Atari): the Nature CNN's Q-network on uint8 frame stacks, and a replay memory that stores
each frame once and rebuilds the stacks of a sampled batch from indices (mpirl.replay.frames);
what the sharing modes move and the learner reads are the same records as for vector
observations.

Multi-task (--tasks; mpirl.tasks, the same pieces as PPO's): each rank acts in its task; the
Q-network has a shared trunk and a Q head per task, reading each row's task from its one-hot;
records carry their task id (raw observations padded to the widest task), so a replayed batch
may mix tasks, each transition normalised with its task's statistics and scored by its task's
head; each transition is weighted by its task in the loss and each head scaled by its task's
share of the global batch (--task-weighting; mpirl.tasks.sync), still one Allreduce.

:func:`train` reads top to bottom: an actor step and a learner step with the rate limiter between
them (Acme's split); the pieces follow it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mpirl import faults
from mpirl.algos.replayed import Transitions, restore_memory, step_into_replay
from mpirl.algos.replica import Replica, restore_or_start, save_checkpoint, update_target
from mpirl.comm.collectives import check_in_sync
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.make import is_image
from mpirl.envs.normalize import ObsNormalizer
from mpirl.envs.vec import VecEnv
from mpirl.models.qnet import QNetwork, q_actions
from mpirl.replay import (FrameAdder, FrameReplay, NStepAdder, RateLimiter, ReplayBuffer,
                          anneal_beta, make_shared_replay)
from mpirl.replay.sharing import SharedReplay
from mpirl.replay.snapshot import save_replay
from mpirl.run import Run
from mpirl.tasks import make_tasks


def train(cfg: Config, world: World, run: Run) -> dict:
    # What this rank trains: --env-id, or (--tasks) one of several tasks.
    tasks = make_tasks(cfg, world, run.scoreboard, run.log.print)
    # Each rank its own envs, seeded; (multi-task) every task's statistics on every rank, for
    # replayed batches that mix tasks.
    envs = tasks.make_envs(seed=world.rank_seed(cfg.seed, 0), replay=True)
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)

    # The replica and its target network: the same initialisation everywhere, rank 0's broadcast.
    torch.manual_seed(cfg.seed)
    q_network, target_network = tasks.network(envs), tasks.network(envs)
    replica = Replica(cfg, world, q_network, tasks, followers={"target": target_network})
    generators = {"explorer": np.random.default_rng(world.rank_seed(cfg.seed, 1))}

    # Replay: this rank's memory, shared as --replay-sharing says; records built n steps late
    # (pixels: each frame stored once, the stacks rebuilt when sampled).
    memory, adder = replay_memory(cfg, world, envs, tasks)
    replay = make_shared_replay(cfg.replay_sharing, world, memory, cfg.seed)

    E, N, B = cfg.num_envs, world.size, cfg.batch_size
    steps_per_update = cfg.train_frequency * E * N          # global env steps per update
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    limiter = rate_limiter(cfg, N, steps_per_update)
    actor = Actor(envs, q_network, generators["explorer"], adder, replay,
                  epsilon=actor_epsilon(cfg, tasks.group))
    learner = Learner(cfg, replica, target_network, replay, envs.normalizer, tasks, limiter)

    restored = restore_or_start(run, replica, envs, generators)
    start_update, learn_from_step = 0, cfg.learning_starts
    eval_explorer = torch.Generator()   # --no-eval-deterministic: re-seeded every evaluation

    def evaluate() -> float:
        # the same draws as python -m mpirl.evaluate's with the run's seed (mpirl/evaluate.py)
        eval_explorer.manual_seed(world.rank_seed(cfg.seed + 10_000, 3))
        return evaluator.run_across_ranks(
            lambda obs: evaluation_actions(q_network, obs, cfg.eval_deterministic, eval_explorer),
            envs.normalizer.normalize)

    if restored is None:
        update_target(target_network, q_network, tau=1.0)
    else:
        start_update, learner.gradient_steps = restored["update"], restored["gradient_steps"]
        if restore_memory(cfg, world, run, replay, adder, restored):
            if limiter is not None:
                limiter.load_state_dict(restored["limiter"])
        else:
            learn_from_step = start_update * steps_per_update + cfg.learning_starts

    def checkpoint(u: int) -> None:
        save_checkpoint(run, u, replica, envs, generators,
                        meta={"global_step": u * steps_per_update,
                              "gradient_steps": learner.gradient_steps,
                              "limiter": limiter.state_dict() if limiter else None})
        if cfg.save_replay:
            save_replay(cfg.run_dir, world.rank, u, replay, adder)

    run.start(start_update, steps_per_update)
    update = start_update
    global_step = start_update * steps_per_update
    stats: dict = {}
    for update in range(start_update, num_updates):
        faults.at("update", world.rank, update)
        replica.grads.comm_time_s = 0.0
        learner.steps_this_update = 0
        epsilon = actor.epsilon if actor.epsilon is not None else linear_schedule(
            cfg.start_e, cfg.end_e, cfg.exploration_fraction * cfg.total_timesteps, global_step)
        beta = anneal_beta(cfg.per_beta, global_step / cfg.total_timesteps)

        # 1. Actor: train_frequency epsilon-greedy steps of every env on this rank. The rate
        #    limiter holds each back while learning lags behind: learner steps come first.
        for _ in range(cfg.train_frequency):
            while limiter is not None and not limiter.can_insert(E * N):
                stats = learner.step(beta, update)
            actor.step(epsilon, random_play=global_step < learn_from_step)
            global_step += E * N
            if limiter is not None:
                limiter.insert(E * N)
        envs.allreduce_statistics(tasks.group)

        # 2. Learner: as far as the rate limiter allows (or gradient_steps, with no limiter).
        if limiter is not None:
            while limiter.can_sample(N * B):
                stats = learner.step(beta, update)
        elif global_step >= learn_from_step:
            for _ in range(cfg.gradient_steps):
                stats = learner.step(beta, update)

        # 3. Bookkeeping: global statistics, desync check, evaluation, logs, checkpoints.
        update += 1
        record = {**run.record(update), "epsilon": epsilon, "beta": beta,
                  "gradient_steps": learner.gradient_steps,
                  "learned_this_update": learner.steps_this_update, "replay_size": len(memory),
                  "comm_time_s": replica.grads.comm_time_s, **stats,
                  **tasks.allreduce_episode_stats(envs.stats)}
        if limiter is not None:
            record["samples_per_insert"] = limiter.ratio
        if update % cfg.desync_check_interval == 0:
            check_in_sync(world, q_network)
        if run.end_update(
                update, num_updates, record,
                evaluate=evaluate, checkpoint=checkpoint):
            break

    check_in_sync(world, q_network)
    envs.close()
    evaluator.close()
    return run.finish(update, extra={"replay_sharing": cfg.replay_sharing,
                                     "gradient_steps": learner.gradient_steps,
                                     "samples_per_insert": limiter.ratio if limiter else None,
                                     **tasks.summary()})


def replay_memory(cfg: Config, world: World, envs: VecEnv, tasks):
    """This rank's replay memory and what turns env steps into its rows: n-step records of
    whole observations, or (stacked pixel frames) a :class:`FrameReplay` of lanes, one per env
    whose steps it keeps (allgather: every rank's envs)."""
    space = envs.single_observation_space
    if is_image(space):
        E, N = cfg.num_envs, world.size
        everyone = cfg.replay_sharing == "allgather"
        memory = FrameReplay(cfg.buffer_size, E * N if everyone else E, space.shape, cfg.n_step,
                             cfg.gamma, cfg.prioritized, cfg.per_alpha)
        return memory, FrameAdder(E, space.shape, lane_offset=world.rank * E if everyone else 0)
    memory = ReplayBuffer(cfg.buffer_size, tasks.transition_dtype(envs), cfg.prioritized,
                          cfg.per_alpha)
    return memory, NStepAdder(cfg.num_envs, cfg.n_step, cfg.gamma, memory.storage.dtype,
                              task=tasks.record_task)


# -- actor, learner and the rate limiter between them ----------------------------------------
def greedy_actions(q_network: QNetwork, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return q_network(torch.from_numpy(obs)).argmax(dim=1).numpy()


def evaluation_actions(q_network: QNetwork, obs: np.ndarray, deterministic: bool,
                       explorer: torch.Generator) -> np.ndarray:
    """Greedy, or (``deterministic`` False) epsilon-greedy with the evaluation's epsilon."""
    with torch.no_grad():
        return q_actions(q_network(torch.from_numpy(obs)), deterministic, explorer)


class Actor:
    """Epsilon-greedy steps of this rank's envs; their n-step records go to the replay memory.

    ``epsilon``: this rank's fixed Ape-X rate, or None for the linear schedule (a rank that acts
    alone)."""

    def __init__(self, envs: VecEnv, q_network: QNetwork, explorer: np.random.Generator,
                 adder: NStepAdder, replay: SharedReplay, epsilon: float | None):
        self.envs, self.q_network, self.explorer = envs, q_network, explorer
        self.adder, self.replay, self.epsilon = adder, replay, epsilon
        self.n_actions = int(envs.single_action_space.n)   # this rank's (its random ones)

    def step(self, epsilon: float, random_play: bool) -> None:
        """One step of every env (``random_play``: uniformly random actions, to fill the
        memory before learning starts). Collective: the replay's insert."""
        envs, explorer = self.envs, self.explorer
        actions = greedy_actions(self.q_network, envs.observe())
        explore = explorer.random(envs.num_envs) < epsilon
        if random_play:
            explore[:] = True
        actions[explore] = explorer.integers(0, self.n_actions, int(explore.sum()))
        step_into_replay(envs, actions, self.adder, self.replay)


class Learner:
    """Gradient steps on this rank's slice of global batches of N x B replayed transitions,
    averaged over ranks; the target network follows every target_network_frequency steps."""

    def __init__(self, cfg: Config, replica: Replica, target_network: QNetwork,
                 replay: SharedReplay, normalizer: ObsNormalizer, tasks,
                 limiter: RateLimiter | None):
        self.cfg, self.replica, self.target_network = cfg, replica, target_network
        self.replay, self.normalizer, self.tasks, self.limiter = replay, normalizer, tasks, limiter
        self.gradient_steps = 0      # over the whole run
        self.steps_this_update = 0

    def step(self, beta: float, update: int) -> dict:
        """One gradient step (collective: sampling, the task weights, the Allreduce)."""
        cfg, replica, world = self.cfg, self.replica, self.replica.world
        batch = self.replay.sample(cfg.batch_size, beta)
        r = batch.records
        # multi-task: each transition weighted by its task (and the heads scaled to match)
        weights = batch.weights * self.tasks.allreduce_transition_weights(r)
        t = Transitions.of(r, self.normalizer, weights)
        loss, td_abs, q_taken = dqn_loss(
            replica.model, self.target_network, t.obs, t.actions, t.rewards, t.next_obs,
            t.dones, t.discounts, t.weights, cfg.double_q)
        if faults.at("loss", world.rank, update):
            loss = loss * float("nan")
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"non-finite loss ({loss.item()}) at update {update}")
        replica.grads.zero()
        loss.backward()
        replica.sync.gradients_ready()  # the Allreduce average (multi-task: task-weighted)
        grad_norm = replica.grads.clip_(cfg.max_grad_norm)
        replica.optimizer.step()
        self.replay.update_priorities(batch, td_abs.numpy())
        self.gradient_steps += 1
        self.steps_this_update += 1
        if self.limiter is not None:
            self.limiter.sample(world.size * cfg.batch_size)
        if self.gradient_steps % cfg.target_network_frequency == 0:
            update_target(self.target_network, replica.model, cfg.tau)
        return {"td_loss": loss.item(), "q_mean": q_taken.mean().item(), "grad_norm": grad_norm}


def rate_limiter(cfg: Config, n_ranks: int, steps_per_update: int) -> RateLimiter | None:
    """Samples per insert pinned over all ranks (None: --samples-per-insert 0, CleanRL-style
    fixed gradient_steps per update instead)."""
    if cfg.samples_per_insert <= 0:
        return None
    batch = n_ranks * cfg.batch_size
    return RateLimiter(cfg.samples_per_insert, min_size=max(cfg.learning_starts, batch),
                       tolerance=cfg.spi_tolerance, sample_chunk=batch,
                       insert_chunk=steps_per_update)


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
    linear schedule (a rank that acts alone, or --exploration linear)."""
    if group.size == 1 or cfg.exploration == "linear":
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
