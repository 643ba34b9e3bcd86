"""One validation pass: every problem a training configuration has, for a given world size.

    problems(cfg, n_ranks)   -> list[str]: the options' values, the environments, the parallel
                             layout, the tasks, the pipeline, the Slurm world, the run dir
    check(cfg, n_ranks)      raises ConfigError listing them all

The trainer calls :func:`check` on rank 0 before any rank trains: bad input is reported once,
all of it at once, and every rank exits with code 2 (mpirl.cli). Nothing here imports torch or
speaks MPI, so the answer comes in a fraction of a second.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import fields

import gymnasium as gym
import yaml

from mpirl import presets
from mpirl.config import Config
from mpirl.device import device_problem, gpu_path_covers
from mpirl.envs.atari import is_atari
from mpirl.envs.make import env_spec, is_image
from mpirl.errors import ConfigError, Problems
from mpirl.numerics import trains_a_cnn
from mpirl.pipeline.partition import parse_explicit
from mpirl.slurm import check_world_size
from mpirl.tasks.spec import env_ids, parse_targets, parse_tasks, rank_counts

# The env families whose packages come with an extra of mpirl's (setup.cfg).
EXTRAS = ("box2d", "mujoco", "atari")
# The action spaces each algorithm handles.
ACTION_SPACES = {"ppo": (gym.spaces.Discrete, gym.spaces.Box), "dqn": (gym.spaces.Discrete,),
                 "sac": (gym.spaces.Box,), "td3": (gym.spaces.Box,),
                 "impala": (gym.spaces.Discrete, gym.spaces.Box)}
OFF_POLICY = ("sac", "td3")

# Config fields that decide what a checkpoint holds: a resumed run must agree on all of them.
# (Not the pipeline layout: checkpoints always hold the whole model, whatever the stages.)
MUST_MATCH = ("algo", "env_id", "tasks", "hidden_sizes", "activation", "encoder", "num_envs",
              "normalize_obs", "normalize_reward", "dueling", "frame_stack", "screen_size")


def check(cfg: Config, n_ranks: int, ranks_on_node: int | None = None) -> None:
    """Raise ConfigError listing every problem of ``cfg`` at ``n_ranks`` ranks, ``ranks_on_node``
    of them on this node (default: all), or return."""
    found = problems(cfg, n_ranks, ranks_on_node)
    if len(found) == 1:
        raise ConfigError(found[0])
    if found:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(found))


def problems(cfg: Config, n_ranks: int, ranks_on_node: int | None = None) -> list[str]:
    found = slurm_problems(n_ranks) + option_problems(cfg)
    if cfg.algo in ACTION_SPACES:
        env_found = []
        for env_id in env_ids(cfg):
            env_found += env_problems(env_id, cfg.algo, multitask=bool(cfg.tasks),
                                      encoder=cfg.encoder, stages=cfg.pipeline_stages,
                                      value_net=cfg.value_net)
        found += env_found
        if not env_found:
            found += replay_memory_problems(cfg, ranks_on_node or n_ranks)
    if cfg.pipeline_stages >= 1:
        found += layout_problems(cfg, n_ranks)
    found += task_problems(cfg, n_ranks) + off_policy_problems(cfg, n_ranks)
    found += impala_problems(cfg, n_ranks)
    found += run_dir_problems(cfg, n_ranks)
    return list(dict.fromkeys(found))   # a problem two checks find is listed once


# -- the Slurm world -----------------------------------------------------------------------------
def slurm_problems(n_ranks: int) -> list[str]:
    """Under Slurm: one job of SLURM_NTASKS ranks, not N single-rank copies (mpirl.slurm)."""
    try:
        check_world_size(n_ranks)
    except ConfigError as exc:
        return [str(exc)]
    return []


# -- each option's value -------------------------------------------------------------------------
def option_problems(cfg: Config) -> list[str]:
    """Values out of range, unknown choices, and options that do not go together; no MPI world
    or environment needed."""
    problems = Problems()
    need = problems.need
    for f in fields(Config):
        choices = f.metadata["choices"]
        value = getattr(cfg, f.name)
        if choices and value not in choices:
            need(False, f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)}, "
                        f"not {value!r}")
    for name in ("total_timesteps", "num_envs", "eval_episodes", "eval_interval", "log_interval",
                 "checkpoint_interval", "keep_checkpoints", "desync_check_interval", "num_steps",
                 "num_minibatches", "update_epochs", "buffer_size", "batch_size",
                 "train_frequency", "gradient_steps", "target_network_frequency", "n_step",
                 "sync_every", "pipeline_stages", "micro_batches", "frame_skip", "frame_stack"):
        need(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, "
                                      f"not {getattr(cfg, name)}")
    need(math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0,
         f"--learning-rate must be > 0, not {cfg.learning_rate}")
    need(0 <= cfg.learning_starts, f"--learning-starts must be >= 0, not {cfg.learning_starts}")
    need(cfg.noop_max >= 0, f"--noop-max must be >= 0, not {cfg.noop_max}")
    need(0 <= cfg.sticky_actions <= 1, f"--sticky-actions must lie in [0, 1], not "
                                       f"{cfg.sticky_actions}")
    # the Nature CNN's three convolutions (8/4, 4/2, 3/1) need at least 36 pixels a side
    need(cfg.screen_size >= 36, f"--screen-size must be >= 36 (the Nature CNN's convolutions "
                                f"need it), not {cfg.screen_size}")
    need(cfg.seed >= 0, f"--seed must be >= 0, not {cfg.seed}")
    for name in ("gamma", "gae_lambda", "per_alpha", "per_beta", "start_e", "end_e",
                 "apex_epsilon", "exploration_fraction"):
        value = getattr(cfg, name)
        need(0 <= value <= 1, f"--{name.replace('_', '-')} must lie in [0, 1], not {value}")
    need(0 < cfg.tau <= 1, f"--tau must lie in (0, 1], not {cfg.tau}")
    # PopArt's moving-average step (mpirl/models/popart.py): 1 = the latest batch only; above 1
    # overshoots, and <= 0 is no moving average.
    need(0 < cfg.popart_beta <= 1, f"--popart-beta must lie in (0, 1], not {cfg.popart_beta}")
    need(cfg.target_kl is None or (math.isfinite(cfg.target_kl) and cfg.target_kl > 0),
         f"--target-kl must be a finite number > 0 (or none), not {cfg.target_kl}")
    for name in ("clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "apex_alpha",
                 "samples_per_insert", "spi_tolerance"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value >= 0, f"--{name.replace('_', '-')} must be >= 0, "
                                                  f"not {value}")
    problems += device_problems(cfg)
    need(math.isfinite(cfg.hang_timeout) and cfg.hang_timeout >= 0,
         f"--hang-timeout must be >= 0 seconds, not {cfg.hang_timeout}")
    need(cfg.torch_threads >= 0, f"--torch-threads must be >= 0, not {cfg.torch_threads}")
    need(math.isfinite(cfg.bucket_mb) and cfg.bucket_mb > 0,
         f"--bucket-mb must be a finite number > 0, not {cfg.bucket_mb}")
    need(cfg.sync_mode == "allreduce" or cfg.algo == "ppo",
         f"--sync-mode {cfg.sync_mode} is implemented for --algo ppo only "
         f"(--algo {cfg.algo} averages every gradient: use --sync-mode allreduce)")
    need(len(cfg.hidden_sizes) >= 1 and all(h >= 1 for h in cfg.hidden_sizes),
         f"--hidden-sizes needs one or more positive widths, not {cfg.hidden_sizes}")
    if cfg.algo == "ppo" and cfg.pipeline_stages == 1 and cfg.num_envs is not None \
            and min(cfg.num_steps, cfg.num_envs, cfg.num_minibatches) >= 1:
        # (a pipeline cuts the rows of all its stages: pipeline_problems checks that minibatch)
        rows = cfg.num_steps * cfg.num_envs
        need(cfg.num_minibatches <= rows,
             f"--num-minibatches ({cfg.num_minibatches}) must be at most --num-steps x --num-envs "
             f"({cfg.num_steps} x {cfg.num_envs} = {rows}), the rows one rank collects per update")
    if cfg.algo in ("dqn",) + OFF_POLICY:
        need(cfg.buffer_size >= cfg.batch_size,
             f"--buffer-size ({cfg.buffer_size}) must be at least --batch-size ({cfg.batch_size})")
    for name in ("clip_obs", "clip_reward"):
        value = getattr(cfg, name)
        need(value > 0, f"--{name.replace('_', '-')} must be > 0, not {value}")
    need(not cfg.normalize_reward or cfg.algo in ("ppo", "impala"),
         f"--normalize-reward is implemented for --algo ppo and impala, not --algo {cfg.algo}")
    need(not (cfg.normalize_reward and cfg.tasks),
         "--normalize-reward cannot be combined with --tasks (PopArt normalises each task's "
         "values: --popart)")
    need(cfg.tasks or not cfg.park_solved_tasks,
         "--park-solved-tasks applies to multi-task runs (--tasks); a single-task run's "
         "analogue is --stop-on-solve")
    if cfg.value_net == "separate":
        need(cfg.algo in ("ppo", "impala"),
             f"--value-net separate is an actor-critic's (--algo ppo or impala), not --algo "
             f"{cfg.algo}'s")
        need(not cfg.tasks, "--value-net separate cannot be combined with --tasks (one trunk "
                            "serves every task's policy and value heads)")
        need(cfg.pipeline_stages == 1, "--value-net separate cannot be cut into --pipeline-stages "
                                       "(two networks side by side are not one sequence of layers)")
    if cfg.tasks:
        problems += task_option_problems(cfg)
    if cfg.pipeline_stages > 1:
        problems += pipeline_problems(cfg)
    if cfg.resume:
        need(cfg.run_dir is not None, "--resume needs --run-dir: the run to continue")
    return problems


# -- the device ------------------------------------------------------------------------------------
def device_problems(cfg: Config) -> list[str]:
    """--device: a name that parses, a GPU that is there (torch is asked only then), and a run
    the GPU path covers: single-task PPO averaging every update."""
    cuda = cfg.device.startswith("cuda")
    if cuda:
        import torch   # (only for --device cuda: everything else is answered without torch)
    problem = device_problem(cfg.device, torch.cuda.device_count() if cuda else 0)
    if problem:
        return [problem]
    if cuda and not gpu_path_covers(cfg):
        return [f"--device {cfg.device} is implemented for single-task --algo ppo with "
                "--sync-mode allreduce and no --pipeline-stages; this run trains on the CPU "
                "(--device cpu or auto)"]
    return []


# -- SAC and TD3 -----------------------------------------------------------------------------------
def off_policy_problems(cfg: Config, n_ranks: int) -> list[str]:
    """--algo sac / td3: a global batch the ranks can split and the memory can fill, a ratio of
    gradient steps that can be met, noise that makes sense."""
    if cfg.algo not in OFF_POLICY:
        return []
    problems = Problems()
    need = problems.need
    need(not cfg.tasks, f"--tasks is implemented for --algo ppo and dqn, not --algo {cfg.algo}")
    need(cfg.batch_size % n_ranks == 0,
         f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of the "
         f"{n_ranks} ranks that split it")
    need(cfg.batch_size <= cfg.learning_starts,
         f"--batch-size {cfg.batch_size} is larger than the {cfg.learning_starts:,} transitions "
         f"the replay memory holds when learning starts (--learning-starts): raise "
         f"--learning-starts or lower --batch-size")
    need(cfg.learning_starts < cfg.total_timesteps,
         f"--learning-starts {cfg.learning_starts:,} is not below --total-timesteps "
         f"{cfg.total_timesteps:,}: the run would never learn")
    need(math.isfinite(cfg.utd) and cfg.utd > 0,
         f"--utd must be a finite number > 0 (gradient steps per global env step), not {cfg.utd}")
    if math.isfinite(cfg.utd) and cfg.utd > 0 and cfg.learning_starts < cfg.total_timesteps:
        need(cfg.utd * (cfg.total_timesteps - cfg.learning_starts) >= 1,
             f"--utd {cfg.utd} cannot be met: it asks for less than one gradient step in the "
             f"{cfg.total_timesteps - cfg.learning_starts:,} steps after --learning-starts")
    need(cfg.policy_frequency >= 1, f"--policy-frequency must be >= 1, not {cfg.policy_frequency}")
    need(math.isfinite(cfg.noise_spread) and cfg.noise_spread >= 1,
         f"--noise-spread must be >= 1 (1: every rank alike), not {cfg.noise_spread}")
    need(math.isfinite(cfg.alpha) and cfg.alpha > 0, f"--alpha must be > 0, not {cfg.alpha}")
    for name in ("exploration_noise", "policy_noise", "noise_clip"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value >= 0,
             f"--{name.replace('_', '-')} must be >= 0, not {value}")
    return problems


def replay_memory_problems(cfg: Config, ranks_on_node: int) -> list[str]:
    """DQN, SAC, TD3: each rank's replay memory fits its share of the node's memory. (numpy
    allocates it lazily: a memory too large would otherwise end the run hours later, when it
    fills.)"""
    if cfg.algo not in ("dqn",) + OFF_POLICY or cfg.buffer_size < 1 or cfg.tasks:
        return []
    available = available_memory_bytes()
    if available is None:
        return []
    share = available / ranks_on_node
    needed = replay_bytes(cfg)
    if needed(cfg.buffer_size) <= share:
        return []
    fits, too_many = 0, cfg.buffer_size           # the largest size that fits, by bisection
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        fits, too_many = (middle, too_many) if needed(middle) <= share else (fits, middle)
    gb = 1e9
    return [f"--buffer-size {cfg.buffer_size:,}: each rank's replay memory of {cfg.env_id} "
            f"needs {needed(cfg.buffer_size) / gb:.1f} GB, but this node has "
            f"{available / gb:.1f} GB available for its {ranks_on_node} rank(s) "
            f"({share / gb:.1f} GB each): lower --buffer-size to at most {fits:,}, or run "
            f"fewer ranks per node"]


def replay_bytes(cfg: Config):
    """bytes(capacity): what a rank's replay memory of ``cfg.env_id`` holds at that capacity."""
    from mpirl.replay.buffer import transition_dtype   # (numpy only)
    from mpirl.replay.frames import memory_bytes
    from mpirl.replay.sumtree import SumTree
    if is_atari(cfg.env_id):
        return lambda capacity: memory_bytes((cfg.screen_size, cfg.screen_size), capacity)
    env = gym.make(cfg.env_id)
    obs, act = env.observation_space, env.action_space
    env.close()
    if is_image(obs):
        return lambda capacity: memory_bytes(obs.shape[1:], capacity)
    record = transition_dtype(obs.shape, action_shape=act.shape if isinstance(
        act, gym.spaces.Box) else ())
    # the records, and a sum-tree over them (its leaves padded to a power of two, inner nodes)
    return lambda capacity: record.itemsize * capacity + SumTree.bytes_for(capacity)


def available_memory_bytes() -> float | None:
    """The memory this node can still give: MemAvailable, or less where a cgroup (a Slurm job's
    --mem) limits the job; None when it cannot be told."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as fh, open(usage) as gh:
                found.append(int(fh.read().strip()) - int(gh.read().strip()))
        except (OSError, ValueError):   # no such cgroup, or "max": no limit
            pass
    return float(min(found)) if found else None


# -- IMPALA ----------------------------------------------------------------------------------------
def impala_problems(cfg: Config, n_ranks: int) -> list[str]:
    """--algo impala: learners and actors that the ranks can form, queues that hold a block."""
    if cfg.algo != "impala":
        return []
    problems = Problems()
    need = problems.need
    for name in ("learners", "blocks_per_update", "queue_depth", "actor_in_flight",
                 "publish_interval"):
        need(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, "
                                      f"not {getattr(cfg, name)}")
    for name in ("vtrace_rho_clip", "vtrace_c_clip"):
        value = getattr(cfg, name)
        need(value > 0, f"--{name.replace('_', '-')} must be > 0 (inf: no truncation), "
                        f"not {value}")
    L = cfg.learners
    if L >= 1:
        need(n_ranks >= L + 1,
             f"--algo impala with --learners {L} needs at least {L + 1} ranks (the learners and "
             f"at least one actor), not {n_ranks}")
        need(n_ranks < L + 1 or (n_ranks - L) % L == 0,
             f"--learners {L}: the {n_ranks - L} actors of {n_ranks} ranks do not divide evenly "
             f"among {L} learners (use a multiple of {L} ranks, at least {2 * L})")
    need(not cfg.tasks, "--tasks is implemented for --algo ppo and dqn, not --algo impala")
    return problems


# -- the environments ----------------------------------------------------------------------------
def env_problems(env_id: str, algo: str, multitask: bool = False, encoder: str = "auto",
                 stages: int = 1, value_net: str = "shared") -> list[str]:
    """The env exists, builds, and has spaces the algorithm handles (``multitask``: Discrete
    actions, for per-task action masks), and the encoder (and ``value_net``) fits its
    observations."""
    try:
        env_spec(env_id)
    except ConfigError as exc:
        return [str(exc)]
    try:
        env = gym.make(env_id)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        return [missing_package(env_id, exc)]
    except Exception as exc:  # noqa: BLE001 - any construction failure is bad input
        return [f"cannot create environment {env_id!r}: {exc}"]
    obs, act = env.observation_space, env.action_space
    env.close()
    if is_atari(env_id) or is_image(obs):   # (an ALE env's own space: the raw RGB screen)
        if encoder == "mlp":
            return [f"--encoder mlp does not fit {env_id}'s image observations: use "
                    "--encoder nature-cnn (or auto)"]
        if algo not in ("ppo", "impala", "dqn"):
            return [f"{env_id}: pixel observations are implemented for --algo ppo, impala and "
                    f"dqn, not --algo {algo}"]
        if multitask and algo != "ppo":
            return [f"--tasks over Atari games is implemented for --algo ppo in this version, "
                    f"not --algo {algo}"]
        if value_net == "separate":
            return [f"--value-net separate is implemented for MLP trunks; {env_id}'s image "
                    "observations take the Nature CNN, whose trunk the value head shares"]
    elif not (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1):
        return [f"{env_id}: only flat vector observations are supported, not {obs}"]
    elif encoder == "nature-cnn":
        return [f"--encoder nature-cnn does not fit {env_id}'s vector observations {obs.shape}: "
                "use --encoder mlp (or auto)"]
    if not isinstance(act, ACTION_SPACES[algo]):
        kinds = " or ".join(k.__name__ for k in ACTION_SPACES[algo])
        return [f"{env_id} has a {type(act).__name__} action space; --algo {algo} needs {kinds}"]
    if multitask and not isinstance(act, gym.spaces.Discrete):
        return [f"--tasks: {env_id} has a {type(act).__name__} action space; multi-task runs "
                "need Discrete actions (per-task action masks)"]
    return []


def missing_package(env_id: str, exc: Exception) -> str:
    """The message for an env whose package is not installed: which of mpirl's extras has it."""
    extra = presets.family(env_id)
    if extra in EXTRAS:
        return (f"{env_id} needs the {extra} extra, which is not installed: pip install "
                f"'mpirl[{extra}]' (or 'mpirl[all]'; make setup installs them) ({exc})")
    return f"cannot create environment {env_id!r}: a package it needs is missing ({exc})"


# -- the parallel layout ---------------------------------------------------------------------------
def layout_problems(cfg: Config, n_ranks: int) -> list[str]:
    """Parallel layouts that cannot work with this many ranks."""
    problems = []
    if n_ranks % cfg.pipeline_stages:
        problems.append(f"{n_ranks} ranks cannot form pipelines of --pipeline-stages "
                        f"{cfg.pipeline_stages} (ranks must be a multiple of the stages)")
    if cfg.pipeline_stages > 1 and cfg.algo != "ppo":
        problems.append("--pipeline-stages > 1 is implemented for --algo ppo only")
    blocks, what = model_blocks(cfg)
    if cfg.pipeline_stages > 1 and cfg.pipeline_stages > blocks:
        problems.append(f"--pipeline-stages {cfg.pipeline_stages} exceeds the model's {blocks} "
                        f"layers ({what})")
    if cfg.sync_mode == "overlap" and cfg.pipeline_stages > 1:
        problems.append("--sync-mode overlap does not support --pipeline-stages > 1")
    return problems


def pipelined_minibatch_rows(cfg: Config) -> int:
    """Rows of one pipelined PPO minibatch before the reset steps of autoreset are dropped: the
    rollouts of all the pipeline's ranks, cut into --num-minibatches."""
    return cfg.num_steps * cfg.num_envs * cfg.pipeline_stages // max(cfg.num_minibatches, 1)


def pipeline_problems(cfg: Config) -> list[str]:
    """--pipeline-stages > 1: micro-batches that divide the minibatch, an explicit partition
    that fits the model."""
    problems = []
    if cfg.tasks:
        problems.append("--tasks cannot be combined with --pipeline-stages > 1")
    rows = pipelined_minibatch_rows(cfg)
    if cfg.micro_batches >= 1 and (cfg.micro_batches > rows or rows % cfg.micro_batches):
        problems.append(f"--micro-batches {cfg.micro_batches} must divide the pipelined minibatch "
                        f"of {rows} rows (--num-steps x --num-envs x --pipeline-stages / "
                        "--num-minibatches)")
    if cfg.partition is not None:
        try:
            parse_explicit(cfg.partition, model_blocks(cfg)[0], cfg.pipeline_stages)
        except ValueError as exc:
            problems.append(f"{exc} ({model_blocks(cfg)[1]})")
    return problems


def model_blocks(cfg: Config) -> tuple[int, str]:
    """The blocks a pipeline can split the actor-critic into (mpirl.pipeline.partition), and
    what they are."""
    if trains_a_cnn(cfg):
        return 5, "the Nature CNN's three convolutions, its 512 features and its head"
    return len(cfg.hidden_sizes) + 1, ("the actor-critic has one per --hidden-sizes width, "
                                       "plus its head: deepen --hidden-sizes for more")


# -- the tasks ---------------------------------------------------------------------------------------
def task_option_problems(cfg: Config) -> list[str]:
    """What is wrong with the multi-task options, without building envs."""
    problems, ids = [], []
    try:
        ids = [env_id for env_id, _ in parse_tasks(cfg.tasks)]
        parse_targets(cfg.task_targets, ids)
    except ConfigError as exc:
        problems.append(str(exc))
    if cfg.sync_mode != "allreduce":   # (and one pipeline stage: pipeline_problems)
        problems.append(f"--tasks is implemented with --sync-mode allreduce, not --sync-mode "
                        f"{cfg.sync_mode}")
    if len({is_atari(env_id) for env_id in ids}) > 1:
        problems.append(f"--tasks {cfg.tasks} mixes Atari games with vector-observation "
                        "environments: one network takes one kind of observation (train the "
                        "games together and the others together)")
    if cfg.park_solved_tasks and cfg.algo != "ppo":
        problems.append(f"--park-solved-tasks is implemented for --algo ppo only, not --algo "
                        f"{cfg.algo}: DQN's ranks learn from replayed batches that mix every "
                        "task, so a solved task's ranks cannot sit out (--stop-on-solve ends the "
                        "run once every task is solved)")
    return problems


def task_problems(cfg: Config, n_ranks: int) -> list[str]:
    """--tasks at this world size: at least one rank for each task."""
    if not cfg.tasks:
        return []
    try:
        rank_counts(n_ranks, [w for _, w in parse_tasks(cfg.tasks)])
    except ConfigError as exc:
        return [str(exc)]   # (also where --tasks does not parse: reported once)
    return []


# -- the run dir -----------------------------------------------------------------------------------
def run_dir_problems(cfg: Config, n_ranks: int) -> list[str]:
    """A new run never overwrites an existing one; --resume continues a run of the same setup
    that has a checkpoint and can be written to."""
    path = cfg.run_dir
    if path is None:
        return []
    if not cfg.resume:
        if os.path.isdir(path) and os.listdir(path):
            return [f"run dir {path} already holds a run; choose another --run-dir, or add "
                    "--resume to continue it"]
        return []
    saved_cfg = os.path.join(path, "config.yaml")
    if not os.path.isdir(path):
        return [f"--resume: run dir {path} does not exist"]
    if not os.path.isfile(saved_cfg):
        return [f"--resume: {path} is not an mpirl run (no config.yaml)"]
    try:
        with open(saved_cfg) as fh:
            saved = yaml.safe_load(fh) or {}
        with open(os.path.join(path, "run.json")) as fh:
            saved["n_ranks"] = json.load(fh).get("n_ranks")
    except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError) as exc:
        # (json's errors are ValueErrors; Attribute/TypeError: a file that is not a mapping)
        return [f"--resume: cannot read the run's config.yaml and run.json in {path}: {exc}"]
    now = {**cfg.to_dict(), "n_ranks": n_ranks}
    # (an option newer than the run's config.yaml counts as its default there)
    defaults = {f.name: f.default for f in fields(Config)}
    diff = [f"  {k}: run has {saved.get(k, defaults.get(k))!r}, now {now[k]!r}"
            for k in MUST_MATCH + ("n_ranks",) if saved.get(k, defaults.get(k)) != now[k]]
    if diff:
        return [f"--resume: {path} was trained with a different setup; resuming would mix "
                "incompatible state:\n" + "\n".join(diff)]
    checkpoints = os.path.join(path, "checkpoints")
    if not os.path.isdir(checkpoints) or not any(f.endswith(".pt")
                                                 for f in os.listdir(checkpoints)):
        return [f"--resume: {path} has no checkpoint to resume from"]
    if not os.access(path, os.W_OK):
        return [f"--resume: run dir {path} is not writable"]
    return []
