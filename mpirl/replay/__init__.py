"""Experience replay: sum-tree, prioritized memory, frame-once memory for pixels, n-step adder,
rate limiter, sharing."""
from mpirl.replay.buffer import ReplayBuffer, anneal_beta, importance_weights, transition_dtype
from mpirl.replay.frames import FrameAdder, FrameReplay
from mpirl.replay.limiter import RateLimiter
from mpirl.replay.nstep import NStepAdder
from mpirl.replay.sharing import MODES, Batch, SharedReplay, make_shared_replay
from mpirl.replay.sumtree import SumTree

__all__ = ["Batch", "FrameAdder", "FrameReplay", "MODES", "NStepAdder", "RateLimiter", "ReplayBuffer", "SharedReplay",
           "SumTree", "anneal_beta", "importance_weights", "make_shared_replay", "transition_dtype"]
