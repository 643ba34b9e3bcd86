"""Networks: MLP trunks, actor-critic and Q heads, task heads, PopArt."""
