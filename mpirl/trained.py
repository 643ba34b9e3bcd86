"""A trained policy from a run dir, for your own scripts and notebooks: no MPI, no trainer.

    import gymnasium as gym
    import mpirl

    policy = mpirl.load("runs/lunar", checkpoint="best")      # or "latest", or a .pt path
    env = gym.make(policy.env_id)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        done = terminated or truncated

The network and the observation normaliser are rebuilt from the run's config.yaml and the
checkpoint alone (read with ``torch.load(weights_only=True)``: a checkpoint cannot run code).
:meth:`TrainedPolicy.act` takes one observation or a batch, as the env gives them, and returns
what the env takes: the deterministic action by default (as mpirl's evaluation acts), actions
clipped to a Box space's bounds.
"""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch
import yaml

from mpirl.checkpoint import CheckpointError, Checkpoints
from mpirl.config import Config, convert
from mpirl.device import uses_bf16
from mpirl.envs.atari import Preprocessing, is_atari
from mpirl.envs.make import clip_to_space, is_image, make_vec, normalizer_for
from mpirl.errors import ConfigError
from mpirl.models import network
from mpirl.models.actor_critic import Policy
from mpirl.models.qnet import q_actions
from mpirl.tasks.spec import pad_and_tag, parse_tasks, task_spaces


def read_config(run_dir: str) -> Config:
    """The configuration a run trained with, from its config.yaml."""
    path = os.path.join(run_dir, "config.yaml")
    try:
        with open(path) as fh:
            values = yaml.safe_load(fh)
        return Config(**{name: convert(name, value) for name, value in values.items()})
    except (OSError, yaml.YAMLError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{run_dir} is not an mpirl run dir: cannot read {path} ({exc})") \
            from None


def read_checkpoint(run_dir: str, checkpoint: str = "best") -> tuple[dict, str]:
    """A run's checkpoint: ``latest`` (the newest that verifies), ``best`` (the best evaluation
    so far), or a path. Returns (its contents, its path)."""
    checkpoints = Checkpoints(run_dir)
    try:
        if checkpoint == "latest":
            return checkpoints.load_latest(warn=lambda message: None)
        path = checkpoints.best_path() if checkpoint == "best" else checkpoint
        if checkpoint == "best" and not os.path.exists(path):
            raise CheckpointError(f"{run_dir} has no best checkpoint (a run keeps one from its "
                                  "first evaluation on): try checkpoint='latest'")
        return Checkpoints.read(path), path
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from None


class TrainedPolicy:
    """The policy of a run's checkpoint: :meth:`act` on observations as the env gives them."""

    def __init__(self, cfg: Config, state: dict, step: int, path: str, task: str | None = None):
        self.config, self.step, self.path = cfg, step, path
        ids = [env_id for env_id, _ in parse_tasks(cfg.tasks)] if cfg.tasks else [cfg.env_id]
        if task is None and len(ids) > 1:
            raise ConfigError(f"the run trained {len(ids)} tasks ({', '.join(ids)}): say which "
                              f"one to act in, e.g. task={ids[0]!r}")
        self.env_id = task or ids[0]
        if self.env_id not in ids:
            raise ConfigError(f"task {self.env_id!r} is not one of the run's ({', '.join(ids)})")
        # the spaces the network saw: an Atari game's are those of its preprocessed vector env
        env = make_vec(self.env_id, 1, preprocessing=Preprocessing.of(cfg)) \
            if is_atari(self.env_id) else gym.make(self.env_id)
        self.observation_space = getattr(env, "single_observation_space", env.observation_space)
        self.action_space = getattr(env, "single_action_space", env.action_space)
        env.close()
        cfg.autocast = "bf16" if uses_bf16(cfg.autocast, "cpu") else "off"   # (on this CPU)
        self.pixels = is_image(self.observation_space)
        width = self.observation_space.shape if self.pixels else int(self.observation_space.shape[0])
        statistics = state["normalizer"]
        if cfg.tasks:   # the padded, tagged observations of every task; this one's statistics
            spaces = [task_spaces(i, Preprocessing.of(cfg)) for i in ids]
            self.task, self.num_tasks = ids.index(self.env_id), len(ids)
            # (Atari games: their frame stacks' shape, neither padded nor tagged)
            self.width = width if self.pixels else max(w for w, _ in spaces)
            self.model = network(cfg, self.width, None, [n for _, n in spaces], self.task)
            statistics = {} if self.pixels else statistics[self.env_id]
        else:
            self.task = None
            self.model = network(cfg, width, self.action_space)
        self.normalizer = normalizer_for(self.observation_space, cfg.normalize_obs, cfg.clip_obs)
        self.normalizer.load_state_dict(statistics)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ConfigError(f"the checkpoint {path} does not fit the network its run's "
                              f"config.yaml describes ({str(exc).splitlines()[0]})") from None
        self.model.eval()
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        self.policy = (Policy(self.continuous, self.model.head.log_std)
                       if cfg.algo in ("ppo", "impala") else None)

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """A batch of the env's observations as the network takes them: normalised with the
        run's statistics (multi-task: padded and tagged with the task)."""
        x = self.normalizer.normalize(obs)
        if self.task is None or self.pixels:
            return x
        return pad_and_tag(x, self.width, self.task, self.num_tasks)

    def act_on(self, x: np.ndarray, deterministic: bool = True,
               generator: torch.Generator | None = None) -> np.ndarray:
        """Actions for a batch of observations already through :meth:`observe`."""
        with torch.no_grad():
            if self.config.algo in ("sac", "td3"):        # the actor's deterministic action
                return self.model.actor.mode(torch.from_numpy(x)).numpy()
            out = self.model(torch.from_numpy(x))
            if self.policy is None:                       # DQN: the greedy action (or not)
                return q_actions(out, deterministic, generator or torch.Generator())
            params, _ = self.model.split(out)
            if deterministic:
                return self.policy.mode(params).numpy()
            return self.policy.sample(params, generator or torch.Generator())[0].numpy()

    def act(self, obs, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """The action for one observation (shape of the space) or a batch (leading dimension),
        as the env takes it (Box actions clipped to the space); ``deterministic=False`` samples
        from the policy (PPO, IMPALA) or explores with epsilon 0.05 (DQN)."""
        obs = np.asarray(obs)
        single = obs.ndim == len(self.observation_space.shape)
        x = self.observe(obs[None] if single else obs)
        actions = clip_to_space(self.act_on(x, deterministic, generator), self.action_space)
        return actions[0] if single else actions


def load(run_dir: str, checkpoint: str = "best", task: str | None = None) -> TrainedPolicy:
    """The policy a run trained: ``checkpoint`` ``best`` (its best evaluation), ``latest``, or
    a checkpoint's path; ``task``: which of a multi-task run's tasks to act in."""
    cfg = read_config(run_dir)
    saved, path = read_checkpoint(run_dir, checkpoint)
    return TrainedPolicy(cfg, saved["shared"], int(saved["meta"].get("global_step", 0)), path,
                         task)
