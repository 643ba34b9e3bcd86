"""A vector env's saved state continues exactly where the original goes."""
import numpy as np
import pytest
import torch

from mpirl.envs.make import make_vec
from mpirl.envs.vec import VecEnv


@pytest.mark.parametrize("env_id,mode", [("CartPole-v1", "native"), ("CartPole-v1", "sync"),
                                         ("Acrobot-v1", "sync"), ("Pendulum-v1", "sync")])
def test_restored_env_reproduces_the_trajectory(env_id, mode):
    rng = np.random.default_rng(0)
    env = VecEnv(make_vec(env_id, 3, mode), seed=1)
    space = env.single_action_space

    def actions():
        if hasattr(space, "n"):
            return rng.integers(0, space.n, size=3)
        return rng.uniform(space.low, space.high, size=(3,) + space.shape).astype(np.float32)

    for _ in range(40):
        env.step(actions())
    saved = env.state_dict()
    rng_saved = rng.bit_generator.state
    ahead = [env.step(actions()) for _ in range(60)]
    final = env.raw_obs.copy()

    # A saved state survives torch.save/load with weights_only=True.
    import io
    buf = io.BytesIO()
    torch.save(saved, buf)
    saved = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)

    other = VecEnv(make_vec(env_id, 3, mode), seed=99)
    assert other.load_state_dict(saved)
    rng.bit_generator.state = rng_saved
    again = [other.step(actions()) for _ in range(60)]
    for a, b in zip(ahead, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(other.raw_obs, final)


def test_async_env_state_is_not_restorable_and_says_so():
    env = VecEnv(make_vec("CartPole-v1", 2, "async"), seed=0)
    try:
        assert env.state_dict()["env"] is None
        assert VecEnv(make_vec("CartPole-v1", 2, "sync"), seed=0).load_state_dict(env.state_dict()) is False
    finally:
        env.close()


@pytest.mark.parametrize("saved_mode,resumed_mode", [("native", "sync"), ("sync", "native")])
def test_a_state_saved_from_another_vector_mode_is_declined_not_a_crash(saved_mode, resumed_mode):
    original = VecEnv(make_vec("CartPole-v1", 2, saved_mode), seed=1)
    original.step(np.array([0, 1]))
    resumed = VecEnv(make_vec("CartPole-v1", 2, resumed_mode), seed=1)
    fresh = resumed.raw_obs.copy()
    assert resumed.load_state_dict(original.state_dict()) is False   # fresh episodes instead
    np.testing.assert_array_equal(resumed.raw_obs, fresh)
