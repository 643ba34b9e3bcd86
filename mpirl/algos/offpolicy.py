"""Off-policy continuous control over MPI ranks: the loop SAC and TD3 share (Ape-X's layout).

Every rank steps its own vector env with its own exploration noise and holds a replica of the
agent (twin critics, an actor and, for SAC, the temperature: one module, one flat gradient
buffer). Each update:

    act        train_frequency steps x E envs on this rank (default 50 x 1), each step
               followed by its insert and its learning: uniformly random actions until the job
               has taken learning_starts steps, then the actor's, rank i of N scaling its
               exploration noise by noise_spread^(2i/(N-1) - 1) (from 1/spread to spread; one
               rank: 1, CleanRL's and SB3's behaviour)
    insert     n-step transition records (raw observations, float actions) into the replay
               memory, shared per --replay-sharing as DQN's is
    learn      utd gradient steps per global env step (counted over all ranks, so that the ratio
               means the same at any rank count): a global batch of --batch-size transitions,
               split over the ranks; the algorithm's losses (mpirl.algos.sac / td3) for the
               critics, and on every policy_frequency-th step for the actor (and SAC's
               temperature); every gradient averaged in ONE Allreduce of the flat buffer; each
               part stepped by its own Adam (mpirl.optim.FlatAdam's parts); targets Polyak-
               averaged every target_network_frequency steps
    bookkeeping  as DQN: merged observation statistics (when --normalize-obs), global episode
               statistics, evaluation with the actor's deterministic action, checkpoints, stop
               signals, a periodic check that replicas agree bit for bit

One Allreduce per gradient step means the actor's gradient is taken against the critics as they
were before this step's update (both gradients come from the same parameters), where CleanRL and
SB3 step the critics first and then differentiate the actor through the new critics, which takes
a second Allreduce. The actor then lags the critics by one gradient step out of thousands; the
learning tests and the benchmark hold it to the published figures.

On --resume the replay memory starts empty unless --save-replay kept it (each rank writes its
memory to run_dir/replay/ at every checkpoint; a resumed run then goes on bit for bit).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch

from mpirl import faults
from mpirl.algos.replayed import Transitions, restore_memory, step_into_replay
from mpirl.algos.replica import Replica, restore_or_start, save_checkpoint, update_target
from mpirl.comm.collectives import check_in_sync
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.vec import VecEnv
from mpirl.models.continuous import OffPolicyAgent
from mpirl.replay import NStepAdder, ReplayBuffer, anneal_beta, make_shared_replay
from mpirl.replay.sharing import SharedReplay
from mpirl.replay.snapshot import save_replay
from mpirl.run import Run
from mpirl.tasks import make_tasks

# losses(agent, targets, batch, update_actor, generator) -> (loss, |TD error| (B,), stats)
Losses = Callable[..., "tuple[torch.Tensor, torch.Tensor, dict]"]


def train(cfg: Config, world: World, run: Run, losses: Losses) -> dict:
    tasks = make_tasks(cfg, world, run.scoreboard, run.log.print)
    envs = tasks.make_envs(seed=world.rank_seed(cfg.seed, 0), replay=True)
    evaluator = tasks.make_evaluator(seed=cfg.seed + 10_000)

    # The replica and its targets: the same initialisation everywhere, rank 0's broadcast.
    torch.manual_seed(cfg.seed)
    agent = tasks.network(envs)
    targets = {"target_critic": copy.deepcopy(agent.critic)}
    if cfg.algo == "td3":
        targets["target_actor"] = copy.deepcopy(agent.actor)
    replica = Replica(cfg, world, agent, tasks, followers=targets, parts=agent.parts())
    generators = {"explorer": np.random.default_rng(world.rank_seed(cfg.seed, 1)),
                  "acting": torch.Generator().manual_seed(world.rank_seed(cfg.seed, 2)),
                  "learning": torch.Generator().manual_seed(world.rank_seed(cfg.seed, 3))}

    memory = ReplayBuffer(cfg.buffer_size, tasks.transition_dtype(envs), cfg.prioritized,
                          cfg.per_alpha)
    replay = make_shared_replay(cfg.replay_sharing, world, memory, cfg.seed)
    adder = NStepAdder(cfg.num_envs, cfg.n_step, cfg.gamma, memory.storage.dtype)

    E, N = cfg.num_envs, world.size
    steps_per_update = cfg.train_frequency * E * N           # global env steps per update
    num_updates = math.ceil(cfg.total_timesteps / steps_per_update)
    actor = Actor(envs, agent, generators, adder, replay,
                  noise_scale=rank_noise_scale(cfg.noise_spread, world.rank, N),
                  exploration_noise=cfg.exploration_noise if cfg.algo == "td3" else None)
    learner = Learner(cfg, replica, targets, replay, envs, losses, generators["learning"])

    restored = restore_or_start(run, replica, envs, generators)
    start_update = 0
    if restored is not None:
        start_update, learner.gradient_steps = restored["update"], restored["gradient_steps"]
        learner.owed = restored["owed_gradient_steps"]
        if not restore_memory(cfg, world, run, replay, adder, restored):
            learner.learn_from_step = start_update * steps_per_update + cfg.learning_starts

    def checkpoint(u: int) -> None:
        save_checkpoint(run, u, replica, envs, generators,
                        meta={"global_step": u * steps_per_update,
                              "gradient_steps": learner.gradient_steps,
                              "owed_gradient_steps": learner.owed})
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
        beta = anneal_beta(cfg.per_beta, global_step / cfg.total_timesteps)

        # 1. Act and insert, each step followed by its share of learning.
        for _ in range(cfg.train_frequency):
            actor.step(random_play=global_step < learner.learn_from_step)
            global_step += E * N
            if global_step > learner.learn_from_step:
                stats.update(learner.learn(E * N, beta, update))
        if cfg.normalize_obs:
            envs.allreduce_statistics(world)

        # 2. Bookkeeping: global statistics, desync check, evaluation, logs, checkpoints.
        update += 1
        record = {**run.record(update), **({"beta": beta} if cfg.prioritized else {}),
                  "gradient_steps": learner.gradient_steps,
                  "learned_this_update": learner.steps_this_update, "replay_size": len(memory),
                  "comm_time_s": replica.grads.comm_time_s, **stats,
                  **tasks.allreduce_episode_stats(envs.stats)}
        if update % cfg.desync_check_interval == 0:
            check_in_sync(world, agent)
        if run.end_update(update, num_updates, record,
                          evaluate=lambda: evaluator.run_across_ranks(
                              lambda obs: deterministic_actions(agent, obs),
                              envs.normalizer.normalize),
                          checkpoint=checkpoint):
            break

    check_in_sync(world, agent)
    envs.close()
    evaluator.close()
    return run.finish(update, extra={"replay_sharing": cfg.replay_sharing,
                                     "gradient_steps": learner.gradient_steps})


# -- acting ------------------------------------------------------------------------------------
def rank_noise_scale(spread: float, rank: int, size: int) -> float:
    """Rank ``rank`` of ``size``'s factor on its exploration noise: spread^(2i/(N-1) - 1), a
    geometric spread from 1/spread to spread around 1 (Ape-X's spread of exploration over its
    actors); one rank, or spread 1: 1."""
    if size == 1:
        return 1.0
    return float(spread ** (2.0 * rank / (size - 1) - 1.0))


def deterministic_actions(agent: OffPolicyAgent, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return agent.actor.mode(torch.from_numpy(obs)).numpy()


class Actor:
    """Steps of this rank's envs with its exploration noise; n-step records to the replay memory.

    SAC samples its squashed Gaussian with the standard deviation scaled by ``noise_scale``;
    TD3 adds N(0, (exploration_noise x noise_scale x the action scale)^2) to its deterministic
    action (``exploration_noise`` given: TD3); both clip to the action space's bounds."""

    def __init__(self, envs: VecEnv, agent: OffPolicyAgent, generators: dict, adder: NStepAdder,
                 replay: SharedReplay, noise_scale: float, exploration_noise: float | None):
        self.envs, self.agent, self.adder, self.replay = envs, agent, adder, replay
        self.explorer, self.acting = generators["explorer"], generators["acting"]
        self.noise_scale, self.exploration_noise = noise_scale, exploration_noise
        space = envs.single_action_space
        self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)

    def actions(self, obs: np.ndarray, random_play: bool) -> np.ndarray:
        n = obs.shape[0]
        if random_play:   # the space's uniform distribution (CleanRL: action_space.sample())
            return self.explorer.uniform(self.low, self.high, (n, self.low.size)).astype(
                np.float32)
        x = torch.from_numpy(obs)
        with torch.no_grad():
            if self.exploration_noise is None:
                actions = self.agent.actor.explore(x, self.acting, self.noise_scale).numpy()
            else:
                actions = self.agent.actor(x).numpy()
                scale = (self.high - self.low) / 2 * self.exploration_noise * self.noise_scale
                actions = actions + self.explorer.normal(0.0, 1.0, actions.shape) * scale
        return np.clip(actions, self.low, self.high).astype(np.float32)

    def step(self, random_play: bool) -> None:
        """One step of every env. Collective: the replay's insert."""
        step_into_replay(self.envs, self.actions(self.envs.observe(), random_play), self.adder,
                         self.replay)


# -- learning ------------------------------------------------------------------------------------
class Learner:
    """Gradient steps on this rank's share of global batches, averaged over ranks in one
    Allreduce; each part (critic, actor, temperature) stepped by its own Adam."""

    def __init__(self, cfg: Config, replica: Replica, targets: dict, replay: SharedReplay,
                 envs: VecEnv, losses: Losses, generator: torch.Generator):
        self.cfg, self.replica, self.targets, self.replay = cfg, replica, targets, replay
        self.normalizer, self.losses, self.generator = envs.normalizer, losses, generator
        self.rank_batch = cfg.batch_size // replica.world.size   # mpirl.checks: it divides
        self.learn_from_step = cfg.learning_starts
        self.owed = 0.0              # gradient steps earned (utd per global env step), not taken
        self.gradient_steps = 0      # over the whole run
        self.steps_this_update = 0

    def learn(self, global_steps: int, beta: float, update: int) -> dict:
        """The gradient steps that ``global_steps`` more env steps earn at --utd (a fraction
        carries over); the statistics of the latest (and of the latest actor step)."""
        stats: dict = {}
        self.owed += self.cfg.utd * global_steps
        while self.owed >= 1.0:
            stats.update(self.step(beta, update))
            self.owed -= 1.0
        return stats

    def step(self, beta: float, update: int) -> dict:
        """One gradient step (collective: sampling, the Allreduce)."""
        cfg, replica, world = self.cfg, self.replica, self.replica.world
        agent = replica.model
        batch = self.replay.sample(self.rank_batch, beta)
        r = batch.records
        update_actor = self.gradient_steps % cfg.policy_frequency == 0
        loss, td_abs, stats = self.losses(
            agent, self.targets, Transitions.of(r, self.normalizer, batch.weights),
            update_actor, self.generator)
        if faults.at("loss", world.rank, update):
            loss = loss * float("nan")
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"non-finite loss ({loss.item()}) at update {update}")
        replica.grads.zero()
        loss.backward()
        replica.sync.gradients_ready()   # ONE Allreduce: critic, actor and temperature together
        if cfg.max_grad_norm > 0:
            replica.grads.clip_(cfg.max_grad_norm)
        parts = [p for p in agent.parts() if update_actor or p == "critic"]
        replica.optimizer.step(*parts)
        self.replay.update_priorities(batch, td_abs.numpy())
        self.gradient_steps += 1
        self.steps_this_update += 1
        if self.gradient_steps % cfg.target_network_frequency == 0:
            update_target(self.targets["target_critic"], agent.critic, cfg.tau)
            if "target_actor" in self.targets:
                update_target(self.targets["target_actor"], agent.actor, cfg.tau)
        return {**stats, "alpha": float(agent.alpha())} if agent.algo == "sac" else stats


def twin_critic_loss(agent: OffPolicyAgent, batch: Transitions, target: torch.Tensor):
    """Both algorithms' critic loss mean_i w_i [(Q_1(s, a) - y)^2 + (Q_2(s, a) - y)^2] against the
    target ``y`` (B,), the mean |TD error| of the two critics (B,) as new priorities, and
    statistics."""
    q1, q2 = agent.critic(batch.obs, batch.actions)
    loss = (batch.weights * ((q1 - target).square() + (q2 - target).square())).mean()
    td_abs = ((q1 - target).abs() + (q2 - target).abs()).detach() / 2
    return loss, td_abs, {"critic_loss": loss.item(), "q_mean": q1.mean().item()}

