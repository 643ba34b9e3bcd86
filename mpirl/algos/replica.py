"""The path every algorithm builds, restores and checkpoints its model through.

A :class:`Replica` is this rank's copy of the model being trained and what trains it: the shard it
owns (the whole model, or its pipeline stage: :func:`~mpirl.pipeline.shard.model_shard`), the flat
gradients and FlatAdam over them, the ``--sync-mode`` strategy (task-weighted with --tasks), and
the networks that follow the model without training (DQN's target network; SAC's and TD3's
targets), moved by :func:`update_target`.

:func:`restore_or_start` and :func:`save_checkpoint` are the two ends of a checkpoint for every
algorithm: the replica, the observation normaliser, and this rank's environment and random
generators, so that a resumed run goes on bit for bit where the environment allows.
"""
from __future__ import annotations

import numpy as np
import torch

from mpirl.comm.collectives import sync_params
from mpirl.comm.sync import make_sync
from mpirl.comm.world import World
from mpirl.config import Config
from mpirl.envs.vec import VecEnv
from mpirl.optim import FlatAdam, module_parts
from mpirl.pipeline.shard import model_shard
from mpirl.run import Run

# A rank's random generators by name: torch.Generator or numpy Generator.
Generators = dict[str, "torch.Generator | np.random.Generator"]


class Replica:
    def __init__(self, cfg: Config, world: World, model: torch.nn.Module, tasks,
                 adam_eps: float = 1e-8, followers: dict[str, torch.nn.Module] | None = None,
                 parts: list[str] | None = None):
        self.world, self.model = world, model
        self.shard = model_shard(cfg, world, model)   # the whole model, or a pipeline stage
        self.grads = self.shard.grads
        # parts: submodules that FlatAdam steps apart (SAC's and TD3's critic, actor, temperature)
        self.optimizer = FlatAdam(self.grads, lr=cfg.learning_rate, eps=adam_eps,
                                  parts=module_parts(model, parts) if parts else None)
        sync = make_sync(cfg.sync_mode, self.shard.data, self.grads, self.shard.module,
                         self.optimizer, cfg.sync_every, cfg.bucket_mb)
        self.sync = tasks.weighted_sync(sync, self.grads, model, self.optimizer)
        self.followers = dict(followers or {})

    def gather_state_dict(self) -> dict:
        """The whole model, its optimizer state and the followers, whatever the pipeline stages
        (collective: a pipeline gathers its stages' parameters and moments); a checkpoint of
        it loads with any --pipeline-stages."""
        self.shard.allgather_model()
        return {"model": self.model.state_dict(),
                "optimizer": self.shard.optimizer_state(self.optimizer),
                **{name: module.state_dict() for name, module in self.followers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.shard.load_optimizer(self.optimizer, state["optimizer"])
        for name, module in self.followers.items():
            module.load_state_dict(state[name])

    def sync_params(self) -> None:
        """Every replica from rank 0's parameters, optimizer state and followers."""
        self.shard.sync_params(self.optimizer)
        for module in self.followers.values():
            sync_params(self.world, module)


def generator_states(generators: Generators) -> dict:
    return {name: (g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state)
            for name, g in generators.items()}


def load_generator_states(generators: Generators, states: dict) -> None:
    for name, g in generators.items():
        if isinstance(g, torch.Generator):
            g.set_state(states[name])
        else:
            g.bit_generator.state = states[name]


def restore_or_start(run: Run, replica: Replica, envs: VecEnv,
                     generators: Generators) -> dict | None:
    """With --resume: the replica, the normaliser, and this rank's env and generators as the
    newest checkpoint holds them; returns the checkpoint's counters and ``envs_restored``
    (whether every rank's envs go on where they were) or None: a fresh start.
    Either way every replica then starts from rank 0's parameters and optimizer state."""
    restored = run.restore()
    if restored is not None:
        replica.load_state_dict(restored.state)
        envs.normalizer.load_state_dict(restored.state["normalizer"])
        if envs.reward_scaler is not None:
            envs.reward_scaler.load_state_dict(restored.state["reward_scaler"])
        env_restored = (restored.rank_state is not None
                        and envs.load_state_dict(restored.rank_state["env"]))
        if env_restored:
            load_generator_states(generators, restored.rank_state)
        env_restored = run.world.all_ranks(env_restored)
        if not env_restored:
            run.log.print("note: environment state not restorable here; resumed with fresh "
                          "episodes (not bitwise identical to an uninterrupted run)")
    replica.sync_params()
    return None if restored is None else {**restored.meta, "envs_restored": env_restored}


def save_checkpoint(run: Run, update: int, replica: Replica, envs: VecEnv,
                    generators: Generators, meta: dict) -> None:
    """Collective: the replica and the normalisers' statistics (the same on every rank), and
    each rank's env and generators (its own), as the checkpoint of ``update``."""
    state = {**replica.gather_state_dict(),
             "normalizer": envs.normalizer.allgather_state_dict()}
    if envs.reward_scaler is not None:
        state["reward_scaler"] = envs.reward_scaler.state_dict()
    rank_state = {"env": envs.state_dict(), **generator_states(generators)}
    run.save_checkpoint(update, state, rank_state, meta)


@torch.no_grad()
def update_target(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """A follower after the network it follows: target <- tau * source + (1 - tau) * target
    (tau = 1: a hard copy, DQN's; SAC and TD3 Polyak-average with a small tau)."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.copy_(s) if tau >= 1.0 else t.lerp_(s, tau)
