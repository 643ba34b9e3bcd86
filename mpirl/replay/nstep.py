"""Turning a vector env's one-step transitions into n-step transition records, at insert time.

Each env keeps its last ``n`` steps. Once a step is ``n`` steps old it leaves as the record
(obs_t, a_t, sum_k g^k r_{t+k}, obs_{t+n}, terminated, g^n); when an episode ends (terminated or
truncated) every step still waiting leaves at once with its shorter return and discount g^k.
A truncated episode keeps ``done = False``, so its last observation is bootstrapped from.

Every step that acted yields exactly one record sooner or later. The reset steps of next-step
autoreset (``valid`` False) yield none, so counting env steps, as DQN's rate limiter does to
stay free of communication, over-counts inserts by one step per finished episode.
"""
from __future__ import annotations

import numpy as np


class NStepAdder:
    """Accumulates steps of ``num_envs`` envs; :meth:`add` returns the records that are complete
    (with ``task``, each marked as that task's)."""

    def __init__(self, num_envs: int, n: int, gamma: float, dtype: np.dtype,
                 task: int | None = None):
        if n < 1:
            raise ValueError(f"n-step length must be >= 1, not {n}")
        self.n, self.gamma, self.dtype = n, gamma, dtype
        self.task = task   # multi-task: the task id every record carries (its ``task`` field)
        # history[k, e]: env e's step k places back from the newest (k = n-1 is the newest)
        self.history = np.zeros((n, num_envs), dtype=dtype)
        self.pending = np.zeros(num_envs, dtype=np.int64)   # steps waiting for their return
        # discounts[k] = g^k, and the bootstrap discount of a step at history position k
        self.powers = gamma ** np.arange(n + 1, dtype=np.float64)

    def add(self, obs, action, reward, next_obs, terminated, truncated, valid=None) -> np.ndarray:
        """One step of every env: arrays with leading dimension num_envs.

        ``next_obs`` must be the true next observation (the final one where an episode ended,
        not the first of the next episode). ``valid`` (bool, num_envs) marks the envs that really
        acted; the others (the reset steps of next-step autoreset) are left out entirely.
        Returns the completed records, shape (M,).
        """
        valid = np.ones(self.pending.shape, bool) if valid is None else np.asarray(valid, bool)
        self.history[:, valid] = np.roll(self.history[:, valid], -1, axis=0)
        newest = self.history[-1]
        newest["obs"][valid] = np.asarray(obs)[valid]
        newest["action"][valid] = np.asarray(action)[valid]
        newest["reward"][valid] = np.asarray(reward)[valid]
        self.pending = np.where(valid, np.minimum(self.pending + 1, self.n), self.pending)
        ended = np.logical_or(terminated, truncated) & valid

        # returns of every history position: R_k = r_k + g R_{k+1}, over the newest n steps
        rewards = self.history["reward"].astype(np.float64)
        returns = np.zeros_like(rewards)
        running = np.zeros(rewards.shape[1])
        for k in range(self.n - 1, -1, -1):
            running = rewards[k] + self.gamma * running
            returns[k] = running

        # which (position, env) leave now: the oldest of a full window, or all of an ended episode
        position = np.arange(self.n)[:, None]
        waiting = (position >= (self.n - self.pending)[None, :]) & valid[None, :]
        leaving = waiting & (ended[None, :] | (position == 0))
        ks, es = np.nonzero(leaving)
        out = np.empty(ks.size, dtype=self.dtype)
        out["obs"] = self.history["obs"][ks, es]
        out["action"] = self.history["action"][ks, es]
        out["reward"] = returns[ks, es]
        out["next_obs"] = np.asarray(next_obs)[es]
        out["done"] = np.asarray(terminated, dtype=bool)[es]
        out["discount"] = self.powers[self.n - ks]
        if self.task is not None:
            out["task"] = self.task

        self.pending = np.where(ended, 0, self.pending - leaving[0])
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The steps still waiting for their n-step return."""
        return {"history": self.history, "pending": self.pending}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.history[...] = state["history"]
        self.pending[...] = state["pending"]

