"""Model parallelism: a model's layers split into consecutive stages on different ranks.

    schedule   GPipe and 1F1B as plain data, and a unit-cost simulator
    partition  which layers go to which stage (balanced by parameter count, or explicit)
    stage      one slice of layers, run one micro-batch at a time
    executor   runs a schedule over a pipeline's ranks with point-to-point messages
    weights    the whole model gathered from its stages (acting, checkpoints)
    shard      what one rank trains in the PPO trainer: the whole model, or one stage

(Nothing is imported here, so that ``partition`` stays usable without torch, e.g. by config
validation.)
"""
