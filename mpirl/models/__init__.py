"""Networks: MLP trunks, actor-critic and Q heads, task heads, PopArt.

The builders below make the network a run's config asks for; the trainer (through its tasks) and
a trained policy loaded from a run dir (mpirl.trained) build it the same way.
"""
from __future__ import annotations


def network(cfg, obs_width: int, action_space, action_counts=None, task: int | None = None):
    """The network ``cfg`` trains: PPO's and IMPALA's actor-critic, DQN's Q-network, or SAC's and TD3's
    agent (critics, actor, temperature: mpirl.models.continuous), for observations
    ``obs_width`` wide. Multi-task (``action_counts``: every task's; ``task``: this rank's, or
    the one to act in): a shared trunk and a head per task, on observations padded to
    ``obs_width`` and tagged with their task's one-hot (PPO over Atari games: the Nature CNN on
    the games' frame stacks, ``obs_width`` their shape). Pixel observations (``obs_width`` an
    image's shape) get the Nature CNN (--encoder auto or nature-cnn)."""
    from mpirl.models.actor_critic import ActorCritic, SeparateActorCritic
    from mpirl.models.multitask import MultiTaskActorCritic, MultiTaskQNetwork
    from mpirl.models.qnet import QNetwork
    if cfg.algo in ("sac", "td3"):
        from mpirl.models.continuous import OffPolicyAgent
        return OffPolicyAgent(cfg.algo, obs_width, action_space, cfg.hidden_sizes, cfg.autotune,
                              cfg.alpha)
    if action_counts is None:
        if isinstance(obs_width, tuple) and len(obs_width) == 3 and cfg.encoder != "mlp":
            from mpirl.models.nature_cnn import NatureCNNActorCritic, NatureCNNQNetwork
            bf16 = cfg.autocast == "bf16"   # (the trainer and mpirl.load resolve auto first)
            if cfg.algo == "dqn":
                return NatureCNNQNetwork(obs_width, int(action_space.n), cfg.dueling, bf16=bf16)
            return NatureCNNActorCritic(obs_width, action_space, bf16=bf16)
        if cfg.algo == "dqn":
            return QNetwork(obs_width, int(action_space.n), cfg.hidden_sizes, cfg.dueling)
        actor_critic = SeparateActorCritic if cfg.value_net == "separate" else ActorCritic
        return actor_critic(obs_width, action_space, cfg.hidden_sizes, cfg.activation,
                            cfg.log_std_init)
    if cfg.algo == "dqn":
        return MultiTaskQNetwork(obs_width, list(action_counts), cfg.hidden_sizes, cfg.dueling)
    model = MultiTaskActorCritic(obs_width, list(action_counts), cfg.hidden_sizes,
                                 popart_beta=cfg.popart_beta, bf16=cfg.autocast == "bf16")
    model.task = task
    return model
