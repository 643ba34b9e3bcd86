"""Atari (#18, the first slice): the ALE's vector env with the standard preprocessing, real game
scores (whole games, unclipped) in the episode statistics while the learner sees the rewards'
signs, the Nature CNN on uint8 pixels, and a rollout that never holds a float observation."""
import numpy as np
import pytest
import torch

pytest.importorskip("ale_py", reason="the atari extra (make setup installs it)")

from mpirl.config import parse_args  # noqa: E402
from mpirl.envs.atari import game_of, make_atari_vec  # noqa: E402
from mpirl.envs.vec import VecEnv  # noqa: E402
from mpirl.models import network  # noqa: E402
from mpirl.models.nature_cnn import NatureCNNActorCritic  # noqa: E402


def test_rom_names_of_ale_ids():
    assert game_of("ALE/Breakout-v5") == "breakout"
    assert game_of("ALE/SpaceInvaders-v5") == "space_invaders"
    assert game_of("ALE/MontezumaRevenge-v5") == "montezuma_revenge"


@pytest.mark.parametrize("mode", ["native", "sync"])
def test_preprocessed_observations_are_stacked_uint8_frames(mode):
    envs = make_atari_vec("ALE/Breakout-v5", 2, mode)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert envs.single_observation_space.shape == (4, 84, 84)
    envs.close()


def test_episode_returns_are_game_scores_over_lives_and_learning_sees_signs():
    """SpaceInvaders pays 5 to 30 points an invader and gives 3 lives: a life lost does not end
    the episode, the logged return is the sum of the game's points, and with --sign-rewards the
    learner's rewards are their signs."""
    raw_envs = make_atari_vec("ALE/SpaceInvaders-v5", 2)
    envs = VecEnv(raw_envs, seed=3, sign_rewards=True)
    rng = np.random.default_rng(0)
    seen_rewards, score, lives_lost_without_end = [], np.zeros(2), False
    lives = None
    for _ in range(4000):
        reward, term, trunc, valid = envs.step(rng.integers(0, 6, size=2))
        raw = envs.last_raw_reward
        seen_rewards.append(reward)
        score += raw * valid
        now = envs.last_info["lives"]
        if lives is not None and (now < lives).any() and not (term | trunc)[now < lives].any():
            lives_lost_without_end = True
        lives = now
        if (term | trunc).any():
            break
    assert lives_lost_without_end
    seen = np.concatenate(seen_rewards)
    assert set(np.unique(seen)) <= {-1.0, 0.0, 1.0} and (seen == 1.0).any()
    assert envs.stats.returns, "a whole game ended within 4,000 steps"
    ended = int(np.flatnonzero(term | trunc)[0])
    assert envs.stats.returns[0] == pytest.approx(score[ended])
    assert envs.stats.returns[0] > 30   # points, not the count of rewarded steps
    raw_envs.close()


def test_the_nature_cnn_takes_uint8_and_is_chosen_by_the_observation():
    cfg = parse_args(["--env-id", "ALE/Breakout-v5"])
    import gymnasium as gym
    model = network(cfg, (4, 84, 84), gym.spaces.Discrete(4))
    assert isinstance(model, NatureCNNActorCritic)
    assert sum(p.numel() for p in model.parameters()) == 1_686_693   # Mnih et al.'s, 4 actions
    out = model(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    params, value = model.split(out)
    assert params.shape == (3, 4) and value.shape == (3,)
    # the preset that applies: CleanRL's ppo_atari settings
    assert cfg.preset == "atari" and cfg.clip_coef == 0.1 and cfg.sign_rewards
    assert (cfg.num_envs, cfg.num_steps) == (8, 128) and not cfg.normalize_obs


def test_a_pixel_rollout_holds_uint8_observations_only():
    from mpirl.algos.ppo import Rollout
    import gymnasium as gym
    model = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(4))
    rollout = Rollout.allocate(128, 8, (4, 84, 84), model)
    assert rollout.obs.dtype == torch.uint8 and rollout.obs.shape == (128, 8, 4, 84, 84)
    floats = [name for name, value in vars(rollout).items()
              if hasattr(value, "dtype") and value.dtype in (torch.float32, np.float32)
              and value.shape[2:] == (4, 84, 84)]
    assert not floats


def test_dqn_on_pixels_gets_the_nature_dqn_and_a_uint8_frame_memory():
    """The Q-network is Mnih et al.'s (1,686,180 parameters for 4 actions: the trunk and 512 x 4
    + 4), takes uint8; the replay memory keeps one uint8 frame per transition and returns uint8
    stacks; the atari preset is rl-zoo's."""
    import gymnasium as gym
    from mpirl.models.nature_cnn import NatureCNNQNetwork
    from mpirl.replay.frames import FrameReplay
    cfg = parse_args(["--algo", "dqn", "--env-id", "ALE/Breakout-v5"])
    assert cfg.preset == "atari" and cfg.buffer_size == 100_000 and cfg.n_step == 1
    assert cfg.exploration == "linear" and cfg.sign_rewards and not cfg.eval_deterministic
    model = network(cfg, (4, 84, 84), gym.spaces.Discrete(4))
    assert isinstance(model, NatureCNNQNetwork)
    assert sum(p.numel() for p in model.parameters()) == 1_686_180
    assert model(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 4)
    dueling = network(parse_args(["--algo", "dqn", "--env-id", "ALE/Breakout-v5", "--dueling"]),
                      (4, 84, 84), gym.spaces.Discrete(4))
    assert dueling(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 4)
    memory = FrameReplay(1_000, 2, (4, 84, 84), 1, 0.99)
    assert memory.frames.dtype == np.uint8 and memory.frames.shape == (2, 500, 84, 84)
    assert memory.record_dtype["obs"] == np.dtype((np.uint8, (4, 84, 84)))


def test_the_cnn_trunk_in_bfloat16_keeps_outputs_and_gradients_float32(tmp_path):
    """--autocast: the trunk under bf16 autocast, the head, outputs and gradients float32 and
    close to float32's; inputs channels-last, which changes nothing but the summation order;
    auto means bf16 only where the CPU has it natively."""
    import copy

    import gymnasium as gym
    from mpirl.device import computes_bf16_natively, uses_bf16
    torch.manual_seed(0)
    exact = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(4))
    nchw = copy.deepcopy(exact)
    nchw[0].channels_last = False
    fast = copy.deepcopy(exact)
    fast.bf16 = True
    x = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
    outs = {}
    for name, model in (("exact", exact), ("nchw", nchw), ("fast", fast)):
        out = model(x)
        out.square().sum().backward()
        outs[name] = (out.detach(), torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        assert out.dtype == torch.float32
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
                   for p in model.parameters())
    torch.testing.assert_close(outs["nchw"][0], outs["exact"][0], rtol=1e-5, atol=1e-6)
    for name, tol in (("nchw", 1e-5), ("fast", 3e-2)):
        out, grad = outs[name]
        assert ((grad - outs["exact"][1]).norm() / outs["exact"][1].norm()) < tol
        assert ((out - outs["exact"][0]).norm() / outs["exact"][0].norm()) < tol
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16\n")
    assert computes_bf16_natively("cpu", str(cpuinfo))
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert not computes_bf16_natively("cpu", str(cpuinfo))
    assert uses_bf16("bf16", "cpu") and not uses_bf16("off", "cpu")
    cfg = parse_args(["--env-id", "ALE/Breakout-v5", "--autocast", "bf16"])
    assert network(cfg, (4, 84, 84), gym.spaces.Discrete(4)).bf16
    assert not network(parse_args(["--env-id", "ALE/Breakout-v5", "--autocast", "off"]),
                       (4, 84, 84), gym.spaces.Discrete(4)).bf16


def test_an_atari_sync_vector_env_is_restored_exactly_across_episode_ends():
    """--vector-mode sync: the emulator (with its RNG), the env's RNG (no-op starts) and the
    wrappers' lives and frame stacks, through a checkpoint's plain tensors, into a fresh vector
    env seeded otherwise: the same observations, rewards and ends step for step."""
    import io

    from mpirl.envs import state as envstate
    from mpirl.envs.atari import make_atari_vec
    envs = make_atari_vec("ALE/Breakout-v5", 2, "sync")
    envs.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(40):
        envs.step(rng.integers(0, 4, 2))
    buffer = io.BytesIO()
    torch.save(envstate.capture(envs), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    actions = rng.integers(0, 4, (300, 2))
    straight = [envs.step(a) for a in actions]
    fresh = make_atari_vec("ALE/Breakout-v5", 2, "sync")
    fresh.reset(seed=99)
    assert envstate.restore(fresh, saved)
    for one, two in zip(straight, (fresh.step(a) for a in actions)):
        for x, y in zip(one[:4], two[:4]):
            np.testing.assert_array_equal(x, y)
    assert sum(int((t | u).sum()) for _, _, t, u, _ in straight) >= 1   # across an episode end
    assert envstate.capture(make_atari_vec("ALE/Breakout-v5", 2, "auto")) is None   # C++ env


@pytest.mark.parametrize("mode", ["auto", "sync"])
def test_each_part_of_the_preprocessing_is_settable(mode):
    from mpirl.envs.atari import Preprocessing
    from mpirl.envs.make import make_vec
    cfg = parse_args(["--env-id", "ALE/Pong-v5", "--frame-stack", "3", "--screen-size", "48",
                      "--frame-skip", "2", "--noop-max", "0", "--sticky-actions", "0.25",
                      "--no-fire-reset"])
    p = Preprocessing.of(cfg)
    assert p == Preprocessing(frame_skip=2, frame_stack=3, screen_size=48, noop_max=0,
                              fire_reset=False, sticky_actions=0.25)
    envs = make_vec("ALE/Pong-v5", 2, mode, preprocessing=p)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 3, 48, 48) and obs.dtype == np.uint8
    envs.close()


def test_preprocessing_values_that_cannot_work_are_refused():
    from mpirl.checks import problems
    found = problems(parse_args(["--env-id", "ALE/Pong-v5", "--frame-stack", "0",
                                 "--screen-size", "30", "--sticky-actions", "1.5",
                                 "--noop-max", "-1"]), 1)
    for part in ("--frame-stack must be >= 1", "--screen-size must be >= 36",
                 "--sticky-actions must lie in [0, 1]", "--noop-max must be >= 0"):
        assert sum(part in p for p in found) == 1, (part, found)
