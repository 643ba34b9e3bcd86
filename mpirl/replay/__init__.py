"""Experience replay: sum-tree, prioritized memory, frame-once memory for pixels, n-step adder,
rate limiter, sharing.

The names below load with the module that defines them, when first used: the memories themselves
need only numpy, so the pre-flight checks (mpirl.checks) can size one without importing the
sharing modes' MPI and torch.
"""
import importlib

_HOMES = {"ReplayBuffer": "buffer", "anneal_beta": "buffer", "importance_weights": "buffer",
          "transition_dtype": "buffer", "FrameAdder": "frames", "FrameReplay": "frames",
          "RateLimiter": "limiter", "NStepAdder": "nstep", "MODES": "sharing", "Batch": "sharing",
          "SharedReplay": "sharing", "make_shared_replay": "sharing", "SumTree": "sumtree"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'mpirl.replay' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mpirl.replay.{_HOMES[name]}"), name)
