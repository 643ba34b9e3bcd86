"""Run configuration: one documented dataclass, read from presets, YAML and the command line.

Precedence::

    defaults < defaults for the algorithm and the env's actions < preset < --config FILE < command line

The defaults for PPO follow CleanRL's two files: ``ppo.py`` for Discrete actions and
``ppo_continuous_action.py`` for Box ones (:data:`DEFAULTS`). A preset (mpirl/presets) is chosen by
the env id unless ``--preset`` says otherwise. PPO's rollout is given for the whole job
(``--rollout ENVSxSTEPS``) and split over the ranks, so that the algorithm is the same at any
rank count; ``--num-envs``/``--num-steps`` set a rank's share directly. Whether the values make
sense together, and for a world size, is checked in one place: mpirl.checks. Every field is a
command-line option of the same name with dashes (``total_timesteps`` -> ``--total-timesteps``);
``python -m mpirl.train --help`` lists them all with their defaults, grouped as below.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from mpirl import presets
from mpirl.cli import ArgumentParser
from mpirl.envs.make import action_kind
from mpirl.errors import ConfigError


def opt(default: Any, help: str, group: str = "run", choices: tuple | None = None):
    """A config field with its one-line meaning and its --help group."""
    return field(default=default, metadata={"help": help, "group": group, "choices": choices})


ALGOS = ("ppo", "dqn", "sac", "td3", "impala")
# What SAC and TD3 share: one env per rank, learning after every step, a memory of a million, a
# global batch of 256, Polyak targets, no normalisation or gradient clipping; an update (one
# metrics line, one merge of statistics) is 50 steps of each rank's env, and the intervals count
# such updates (at 2 ranks: a log line every 1,000 global steps, an evaluation every 5,000).
OFF_POLICY = {"rollout": "1x1", "num_envs": 1, "train_frequency": 50, "hidden_sizes": (256, 256),
              "buffer_size": 1_000_000, "batch_size": 256, "tau": 0.005, "n_step": 1,
              "prioritized": False, "normalize_obs": False, "max_grad_norm": 0.0,
              "num_minibatches": 1, "update_epochs": 1, "ent_coef": 0.0, "eval_interval": 50,
              "log_interval": 10, "checkpoint_interval": 250, "desync_check_interval": 10}
IMPALA = {"rollout": "8x32", "num_envs": 8, "num_steps": 32, "num_minibatches": 1,
          "update_epochs": 1, "max_grad_norm": 40.0, "learning_rate": 1e-3}
# Defaults that depend on the algorithm and on the env's action space, as CleanRL's algorithm
# files each have their own (ppo.py, ppo_continuous_action.py, dqn.py). Their fields default to
# None in Config and are filled from here (a Config built directly gets the Discrete column).
DEFAULTS = {
    ("ppo", "discrete"): {"learning_rate": 3e-4, "rollout": "8x128", "num_minibatches": 4,
                          "update_epochs": 4, "ent_coef": 0.01, "max_grad_norm": 0.5},
    ("ppo", "continuous"): {"learning_rate": 3e-4, "rollout": "1x2048", "num_minibatches": 32,
                            "update_epochs": 10, "ent_coef": 0.0, "max_grad_norm": 0.5},
    ("dqn", "discrete"): {"learning_rate": 2.5e-3, "rollout": "8x128", "num_envs": 8,
                          "num_minibatches": 1, "update_epochs": 1, "ent_coef": 0.0,
                          "max_grad_norm": 10.0},
    # CleanRL's sac_continuous_action.py and SB3's SAC where they agree; SB3's one learning rate
    # and its actor step on every gradient step (CleanRL: q_lr 1e-3, the actor every 2nd, twice)
    ("sac", "continuous"): {**OFF_POLICY, "learning_rate": 3e-4, "learning_starts": 5_000,
                            "policy_frequency": 1, "target_network_frequency": 1},
    # CleanRL's td3_continuous_action.py
    ("td3", "continuous"): {**OFF_POLICY, "learning_rate": 3e-4, "learning_starts": 25_000,
                            "policy_frequency": 2, "target_network_frequency": 2},
    # IMPALA: each actor's block is 8 envs x 32 steps (--num-envs x --num-steps, an actor's own,
    # not split over ranks) and a learner update takes one (--blocks-per-update): 256 steps, near
    # TorchBeast's 8 x 80 at its 4 actors' share. One gradient step per block, so the learning
    # rate is Adam's 1e-3 (the paper's RMSProp: 6e-4 on Atari). The paper's and TorchBeast's
    # gradient clipping at norm 40. (Measured on CartPole, Acrobot, LunarLander, HalfCheetah and
    # Hopper, where a second block per update or 5e-4 learned slower: docs/impala.md.)
    ("impala", "discrete"): {**IMPALA, "ent_coef": 0.01},
    ("impala", "continuous"): {**IMPALA, "ent_coef": 0.0},
}
VECTOR_MODES = ("auto", "native", "sync", "async")
ENCODERS = ("auto", "mlp", "nature-cnn")
SYNC_MODES = ("allreduce", "overlap", "local-sgd")
SCHEDULES = ("gpipe", "1f1b")
REPLAY_SHARING = ("allgather", "sharded", "none")
TASK_WEIGHTING = ("equal", "ranks")


@dataclass
class Config:
    # -- the run ---------------------------------------------------------------------------
    env_id: str = opt("CartPole-v1", "gymnasium environment id (any registered id)")
    algo: str = opt("ppo", "algorithm", choices=ALGOS)
    total_timesteps: int = opt(400_000, "environment steps of ALL ranks together")
    num_envs: int | None = opt(None, "environments per rank (default: ppo: the rank's share of "
                                     "--rollout; dqn: 8)")
    seed: int = opt(0, "base seed; rank r derives its own seeds from (seed, r)")
    run_dir: str | None = opt(None, "where outputs go (default runs/<env>__<algo>__<seed>__<time>)")
    resume: bool = opt(False, "continue the run in --run-dir from its latest good checkpoint")
    target_return: float | None = opt(None, "evaluation mean return that counts as solved "
                                            "(default: the env's reward_threshold)")
    stop_on_solve: bool = opt(False, "end training as soon as an evaluation reaches the target")
    eval_episodes: int = opt(10, "episodes per evaluation (split over ranks)")
    eval_deterministic: bool = opt(True, "evaluate with the policy's mode; --no-eval-deterministic "
                                         "samples from it (ppo, impala) or explores with "
                                         "epsilon 0.05 (dqn): as rl-zoo and DQN evaluate "
                                         "Atari, where a greedy policy can stall a game")
    eval_interval: int = opt(10, "evaluate every N updates (and when training returns reach the "
                                 "target, and at the end)")
    hidden_sizes: tuple = opt((64, 64), "hidden layer widths, e.g. 64,64")
    encoder: str = opt("auto", "the network's trunk: auto (the Nature CNN for image "
                               "observations, an MLP of --hidden-sizes for vectors), mlp, or "
                               "nature-cnn", choices=ENCODERS)
    autocast: str = opt("auto", "the Nature CNN's convolutions and features in bfloat16 "
                                "(autocast; inputs channels-last): auto where every rank's "
                                "device computes bf16 natively (a CPU with AVX512-BF16 or AMX, a "
                                "GPU with bf16), bf16, or off; heads, losses, gradients and "
                                "their averaging stay float32", choices=("auto", "bf16", "off"))
    activation: str = opt("tanh", "the hidden layers' activation (ppo; dqn's Q-network uses relu)",
                          choices=("tanh", "relu"))
    device: str = opt("auto", "torch device: auto (each rank the GPU of its node-local rank when "
                              "CUDA is present, else cpu), cpu, cuda (the same rule, required), "
                              "or cuda:N; GPUs train --algo ppo, other algorithms run on cpu")
    torch_threads: int = opt(0, "torch intra-op threads per rank; 0 = auto: the rank's share of "
                                "the cores (SLURM_CPUS_PER_TASK / OMP_NUM_THREADS win), but 1 for "
                                "models under 100k parameters, where threads cost more than "
                                "they give")
    vector_mode: str = opt("auto", "vector env: native (the env's own vectorised implementation), "
                                   "sync, async; auto = native when the env has one",
                           choices=VECTOR_MODES)
    normalize_obs: bool = opt(True, "normalise observations with running statistics merged "
                                    "across ranks")
    clip_obs: float = opt(10.0, "clip normalised observations to [-clip, clip]")
    log_interval: int = opt(5, "print a progress line every N updates")
    checkpoint_interval: int = opt(50, "checkpoint every N updates (and at the end)")
    keep_checkpoints: int = opt(3, "how many of the newest checkpoints to keep")
    desync_check_interval: int = opt(50, "compare parameter checksums across ranks every N updates")
    hang_timeout: float = opt(600.0, "abort the whole job, naming the rank, when an update makes "
                                     "no progress for this many seconds (0: never)")
    tensorboard: bool = opt(True, "write TensorBoard event files to the run dir")
    config: str | None = opt(None, "YAML file with any of these options (the command line wins)")
    preset: str = opt("auto", "tuned settings: auto (the env's own preset or its family's, when "
                              "one ships), a preset's name, or none (the defaults alone)")

    # -- PPO (CleanRL names) -------------------------------------------------------------------
    learning_rate: float | None = opt(None, "optimizer learning rate (default: ppo 3e-4, dqn "
                                            "2.5e-3)", "ppo")
    rollout: str | None = opt(None, "one update's rollout over ALL ranks, ENVSxSTEPS; each rank "
                                    "runs its share of the envs (or of the steps, with more ranks "
                                    "than envs) (default: 8x128, Box actions 1x2048)", "ppo")
    num_steps: int | None = opt(None, "steps per environment per rollout (default: --rollout's)",
                                "ppo")
    anneal_lr: bool = opt(True, "anneal the learning rate linearly to 0", "ppo")
    gamma: float = opt(0.99, "discount factor", "ppo")
    gae_lambda: float = opt(0.95, "GAE lambda", "ppo")
    num_minibatches: int | None = opt(None, "minibatches per epoch (default: 4, Box actions 32)",
                                      "ppo")
    update_epochs: int | None = opt(None, "epochs over each rollout (default: 4, Box actions 10)",
                                    "ppo")
    norm_adv: bool = opt(True, "normalise advantages (global mean/std over all ranks; "
                              "with --tasks, over the task's ranks)", "ppo")
    clip_coef: float = opt(0.2, "surrogate clipping coefficient", "ppo")
    clip_vloss: bool = opt(True, "clip the value loss", "ppo")
    ent_coef: float | None = opt(None, "entropy bonus coefficient (default: 0.01, Box actions 0)",
                                 "ppo")
    vf_coef: float = opt(0.5, "value loss coefficient", "ppo")
    max_grad_norm: float | None = opt(None, "clip the global norm of the averaged gradient "
                                            "(default: 0.5 for ppo, 10 for dqn; sac and td3: 0, "
                                            "no clipping, as CleanRL's)", "ppo")
    target_kl: float | None = opt(None, "stop the epochs early above this approximate KL", "ppo")
    normalize_reward: bool | None = opt(None, "scale rewards by the running standard deviation of "
                                              "the discounted return, merged across ranks "
                                              "(ppo, impala; default: on; off with --tasks, "
                                              "whose values PopArt normalises)", "ppo")
    clip_reward: float = opt(10.0, "clip scaled rewards to [-clip, clip]", "ppo")
    sign_rewards: bool = opt(False, "learn from the sign of each reward (-1, 0, 1), as DQN's and "
                                    "CleanRL's Atari agents; logged returns stay the env's own "
                                    "(the atari preset sets it)", "ppo")
    log_std_init: float = opt(0.0, "initial log standard deviation of the Gaussian policy (Box "
                                   "actions)", "ppo")
    value_net: str = opt("shared", "the value function's network (ppo, impala; MLP trunks): "
                                   "shared (the policy's trunk, a head of its own) or separate "
                                   "(an MLP of its own, of --hidden-sizes, as CleanRL's and SB3's "
                                   "PPO)", "ppo", choices=("shared", "separate"))

    # -- Atari's preprocessing (ALE/<Game>-v5 ids; mpirl.envs.atari) ------------------------
    frame_skip: int = opt(4, "emulator frames per agent step, the last two max-pooled", "atari")
    frame_stack: int = opt(4, "frames per observation", "atari")
    screen_size: int = opt(84, "side of the square grayscale frames", "atari")
    noop_max: int = opt(30, "up to this many no-op actions at reset", "atari")
    fire_reset: bool = opt(True, "press FIRE at reset in games that need it (ale-py's vector "
                                 "env; gymnasium's wrappers have no such step)", "atari")
    sticky_actions: float = opt(0.0, "probability that the emulator repeats the previous action "
                                     "(Machado et al. 2018 recommend 0.25; CleanRL and rl-zoo "
                                     "train with 0)", "atari")

    # -- DQN ---------------------------------------------------------------------------------
    buffer_size: int = opt(50_000, "replay capacity (transitions per rank's memory)", "dqn")
    batch_size: int = opt(64, "transitions per gradient step: dqn: per rank; sac, td3 (default "
                              "256): of all ranks together, split over them", "dqn")
    learning_starts: int = opt(1_000, "global steps before learning starts", "dqn")
    train_frequency: int = opt(4, "environment steps per rank per update: dqn trains after "
                                  "them; sac and td3 (default 50) learn after every step and log, "
                                  "merge statistics and count intervals per update", "dqn")
    gradient_steps: int = opt(1, "gradient steps per training round", "dqn")
    target_network_frequency: int = opt(100, "gradient steps between target updates", "dqn")
    tau: float = opt(1.0, "target update rate (1 = hard copy, <1 = Polyak)", "dqn")
    start_e: float = opt(1.0, "initial epsilon (single-rank annealing)", "dqn")
    end_e: float = opt(0.05, "final epsilon (single-rank annealing)", "dqn")
    exploration_fraction: float = opt(0.2, "fraction of the run over which epsilon anneals", "dqn")
    exploration: str = opt("apex", "how the ranks explore: apex (rank i of N with a fixed "
                                   "eps^(1+alpha*i/(N-1)); a rank alone anneals linearly) or "
                                   "linear (every rank anneals from --start-e to --end-e)", "dqn",
                           choices=("apex", "linear"))
    apex_epsilon: float = opt(0.4, "Ape-X base epsilon: rank i explores with eps^(1+alpha*i/(N-1))",
                              "dqn")
    apex_alpha: float = opt(7.0, "Ape-X epsilon exponent spread", "dqn")
    n_step: int = opt(3, "n-step return length", "dqn")
    double_q: bool = opt(True, "double DQN targets", "dqn")
    dueling: bool = opt(False, "dueling Q head", "dqn")
    prioritized: bool = opt(True, "prioritized replay (proportional)", "dqn")
    per_alpha: float = opt(0.6, "priority exponent alpha in [0, 1]", "dqn")
    per_beta: float = opt(0.4, "initial importance exponent beta in [0, 1], annealed to 1", "dqn")
    replay_sharing: str = opt("allgather", "how ranks share experience", "dqn",
                              choices=REPLAY_SHARING)
    samples_per_insert: float = opt(32.0, "rate limiter: sampled / inserted transitions", "dqn")
    spi_tolerance: float = opt(0.5, "rate limiter: allowed relative deviation from the ratio",
                               "dqn")

    # -- SAC and TD3 -------------------------------------------------------------------------
    utd: float = opt(1.0, "gradient steps per global environment step (all ranks' steps "
                          "together, so the ratio means the same at any rank count)", "offpolicy")
    policy_frequency: int = opt(1, "gradient steps per actor step (sac: and temperature step; "
                                   "td3: 2, the delayed actor)", "offpolicy")
    noise_spread: float = opt(2.0, "rank i of N scales its exploration noise by "
                                   "spread^(2i/(N-1)-1), from 1/spread to spread (Ape-X's spread; "
                                   "1: every rank alike)", "offpolicy")
    autotune: bool = opt(True, "sac: tune the temperature to an entropy of -dim(actions), "
                               "starting from alpha 1", "offpolicy")
    alpha: float = opt(0.2, "sac: the entropy temperature when not --autotune", "offpolicy")
    exploration_noise: float = opt(0.1, "td3: standard deviation of the acting noise, in units of "
                                        "the action scale", "offpolicy")
    policy_noise: float = opt(0.2, "td3: standard deviation of the target policy smoothing noise",
                              "offpolicy")
    noise_clip: float = opt(0.5, "td3: clip the smoothing noise to [-clip, clip]", "offpolicy")
    save_replay: bool = opt(False, "keep each rank's replay memory with every checkpoint "
                                   "(run_dir/replay/), so --resume goes on with it (dqn, sac, "
                                   "td3)", "offpolicy")

    # -- IMPALA ------------------------------------------------------------------------------
    learners: int = opt(1, "ranks that learn (world ranks 0..L-1, data-parallel among themselves); "
                           "every other rank acts, for learner (rank - L) mod L", "impala")
    blocks_per_update: int = opt(1, "trajectory blocks (one actor's --num-steps x --num-envs "
                                    "steps each) per learner update", "impala")
    queue_depth: int = opt(2, "blocks a learner keeps room for per actor (receives posted "
                              "ahead); when they are full the actor waits", "impala")
    actor_in_flight: int = opt(2, "blocks an actor may have sent that its learner has not yet "
                                  "taken", "impala")
    publish_interval: int = opt(1, "learner updates between parameter sends to the actors",
                                "impala")
    vtrace_rho_clip: float = opt(1.0, "V-trace rho-bar: truncation of the importance weights "
                                      "in the targets and the policy gradient", "impala")
    vtrace_c_clip: float = opt(1.0, "V-trace c-bar: truncation of the trace-cutting weights",
                               "impala")

    # -- communication --------------------------------------------------------------------------
    sync_mode: str = opt("allreduce", "gradient sync: every update, overlapped buckets, or "
                                      "local updates averaged every --sync-every",
                         "parallel", choices=SYNC_MODES)
    sync_every: int = opt(8, "local-sgd: average parameters every K updates", "parallel")
    bucket_mb: float = opt(1.0, "overlap: gradient bucket size in MiB", "parallel")
    # -- model parallelism ------------------------------------------------------------------
    pipeline_stages: int = opt(1, "split the model over this many ranks (a pipeline)", "parallel")
    pipeline_schedule: str = opt("1f1b", "pipeline schedule", "parallel", choices=SCHEDULES)
    micro_batches: int = opt(4, "micro-batches per pipelined minibatch", "parallel")
    partition: str | None = opt(None, "explicit layers per stage, e.g. 2,1 (default: balanced "
                                      "by parameter count)", "parallel")
    # -- multi-task -----------------------------------------------------------------------------
    tasks: str | None = opt(None, "train one agent on several envs (ppo or dqn): A,B,C or A:4,B:2 "
                                  "(rank weights)",
                            "multitask")
    task_weighting: str = opt("equal", "the trunk's gradient: each task counts the same, or each "
                                       "rank (dqn: each replayed transition); heads always get "
                                       "their own task's mean", "multitask",
                              choices=TASK_WEIGHTING)
    task_targets: str | None = opt(None, "per-task targets, e.g. CartPole-v1:475,Acrobot-v1:-100",
                                   "multitask")
    popart: bool = opt(True, "PopArt value normalisation per task (ppo; dqn has no value head "
                             "to normalise: its Huber loss bounds each task's TD-error gradient)",
                       "multitask")
    popart_beta: float = opt(0.05, "PopArt statistics step per update (never below 1/n at the "
                                   "n-th update)", "multitask")
    park_solved_tasks: bool = opt(False, "once a task's evaluation reaches its target, its ranks "
                                         "stop collecting and training (zero gradient, waiting "
                                         "idle in the collectives) until an evaluation falls "
                                         "below it; the per-task analogue of --stop-on-solve "
                                         "(ppo only)",
                                  "multitask")

    def __post_init__(self):
        """Fill what is left unset as for Discrete actions (parse_args knows the env's)."""
        table = (DEFAULTS.get((self.algo, "discrete")) or DEFAULTS.get((self.algo, "continuous"))
                 or DEFAULTS["ppo", "discrete"])
        for name, value in table.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.normalize_reward is None:
            self.normalize_reward = self.algo in ("ppo", "impala") and not self.tasks
        if self.num_envs is None or self.num_steps is None:
            self.num_envs, self.num_steps = rank_share(self.rollout, 1, self.num_envs,
                                                       self.num_steps)

    # -- derived helpers -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d


GROUP_TITLES = {"run": "run", "ppo": "PPO", "dqn": "DQN and replay (--algo dqn; the replay "
                "options serve sac and td3 too)", "offpolicy": "SAC and TD3 (--algo sac, td3)",
                "impala": "IMPALA (--algo impala; also --num-envs, --num-steps, --gamma, "
                          "--ent-coef, --vf-coef from PPO's)",
                "atari": "Atari's preprocessing (ALE/<Game>-v5 ids)",
                "parallel": "parallelism", "multitask": "multi-task (--tasks)"}
FIELDS = {f.name: f for f in fields(Config)}


# -- converting strings to field values --------------------------------------------------------
def _parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_sizes(text) -> tuple:
    if isinstance(text, (list, tuple)):
        items = list(text)
    elif isinstance(text, int):
        items = [text]
    else:
        items = [s for s in str(text).replace(" ", "").split(",") if s]
    sizes = tuple(int(s) for s in items)
    return sizes


def convert(name: str, value: Any) -> Any:
    """``value`` (from YAML or the command line) as the type of field ``name``; ConfigError if not."""
    f = FIELDS[name]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")
                             and "None" in kind):
            if "None" not in kind:
                raise ValueError("may not be empty")
            return None
        if kind.startswith("bool"):
            return _parse_bool(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            if isinstance(value, str) and "e" in value.lower():   # "1e6": a float that is whole
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError("out of range")
                if not number.is_integer():
                    raise ValueError("not an integer")
                return int(number)
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError("not a number")
            return float(value)
        if kind.startswith("tuple"):
            return _parse_sizes(value)
        if kind.startswith("str"):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError("not a string")
            return str(value)
    except (TypeError, ValueError, OverflowError) as exc:
        wanted = kind.replace(" | None", "")   # "int | None" reads as jargon in a message
        raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is not a valid {wanted} ({exc})")
    return value


# -- the command line --------------------------------------------------------------------------
def build_parser(prog: str = "python -m mpirl.train") -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog, usage="%(prog)s [options]", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train an RL agent over MPI ranks: mpirun -n 8 python -m mpirl.train [options]. "
                    "total-timesteps counts the steps of all ranks together.")
    groups = {g: parser.add_argument_group(t) for g, t in GROUP_TITLES.items()}
    for f in fields(Config):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = meta["help"] if "default" in meta["help"] else f"{meta['help']} (default: {shown})"
        kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text)
        kind = str(f.type)
        if kind.startswith("bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = (meta["choices"] and "{" + ",".join(meta["choices"]) + "}") or \
                f.name.split("_")[-1].upper()
        groups[meta["group"]].add_argument(flag, **kwargs)
    return parser


def load_yaml(path: str) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value, "
                          f"not a {type(data).__name__}")
    unknown = sorted(k for k in data if k.replace("-", "_") not in FIELDS)
    if unknown:
        raise ConfigError(f"unknown option(s) in {path}: {', '.join(unknown)}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def parse_args(argv: list[str] | None = None, n_ranks: int = 1) -> Config:
    """The configuration of a run over ``n_ranks`` ranks::

        defaults < DEFAULTS[algo, the env's actions] < preset < --config FILE < command line

    converted to the fields' types, PPO's rollout split over the ranks. Raises ConfigError listing
    every value that does not convert; whether the values make sense together for a run is
    mpirl.checks' question."""
    given = vars(build_parser().parse_args(argv))
    from_file = load_yaml(given["config"]) if given.get("config") else {}
    chosen = {**from_file, **given}                  # what the user set: the file, then the line
    algo = str(chosen.get("algo", FIELDS["algo"].default))
    env_id = str(chosen.get("env_id", FIELDS["env_id"].default))
    tasks = chosen.get("tasks")
    actions = "discrete" if tasks else action_kind(env_id)
    preset = choose_preset(str(chosen.get("preset", FIELDS["preset"].default)), algo, env_id,
                           tasks)
    values = {**DEFAULTS.get((algo, actions), {}), **(preset.options if preset else {}), **chosen,
              "preset": preset.name if preset else "none"}
    converted, problems = {}, []
    for name, value in values.items():
        try:
            converted[name] = convert(name, value)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          "invalid configuration:\n  " + "\n  ".join(problems))
    converted["num_envs"], converted["num_steps"] = rank_share(
        converted.get("rollout") or DEFAULTS["ppo", "discrete"]["rollout"], n_ranks,
        converted.get("num_envs"), converted.get("num_steps"))
    return Config(**converted)


def choose_preset(name: str, algo: str, env_id: str, tasks) -> presets.Preset | None:
    """--preset: ``auto`` picks the env's own (for --tasks, which spans envs, the family's
    that every task shares, if any: Atari games take the atari preset), ``none`` none, anything
    else that preset by name."""
    if name == "none" or algo not in ALGOS:
        return None
    if name == "auto" and tasks:
        # the ids the tasks name ("A:4,B:2"; whether they parse is the checks' question)
        return presets.for_tasks(algo, [item.partition(":")[0].strip()
                                        for item in str(tasks).split(",")])
    if name == "auto":
        return presets.for_env(algo, env_id)
    return presets.load(algo, name)


def parse_rollout(text: str) -> tuple[int, int]:
    """``"8x128"`` -> (8, 128): envs over all ranks, steps per env."""
    envs, sep, steps = str(text).lower().partition("x")
    if not (sep and envs.isdigit() and steps.isdigit() and int(envs) >= 1 and int(steps) >= 1):
        raise ConfigError(f"--rollout {text!r}: expected ENVSxSTEPS with whole numbers >= 1, "
                          "e.g. 8x128")
    return int(envs), int(steps)


def rank_share(rollout: str, n_ranks: int, num_envs: int | None = None,
               num_steps: int | None = None) -> tuple[int, int]:
    """A rank's (envs, steps) of a job's ``rollout`` over ``n_ranks``: the envs divided among the
    ranks (at least one each) and, where there are more ranks than envs, the steps too, so the
    job's rollout keeps its size. A given ``num_envs`` or ``num_steps`` is the rank's own."""
    envs, steps = parse_rollout(rollout)
    if num_envs is None and num_steps is None:
        num_envs = max(1, envs // n_ranks)
        num_steps = math.ceil(envs * steps / (n_ranks * num_envs))
    return (max(1, envs // n_ranks) if num_envs is None else num_envs,
            steps if num_steps is None else num_steps)


def default_run_dir(cfg: Config) -> str:
    name = cfg.env_id if not cfg.tasks else "multitask"
    return os.path.join("runs", f"{name}__{cfg.algo}__{cfg.seed}__{int(time.time())}")


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
