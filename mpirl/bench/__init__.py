"""``python -m mpirl.bench [SECTION ...]``: benchmarks written as JSON and a readable table.

Each section is a module ``mpirl.bench.<name>`` with

    run(args) -> dict          # the figures (JSON-serialisable); args has .quick, .out
    table(result) -> str       # the same figures as a markdown table

Sections launch their own ``mpirun`` jobs where they need several ranks, so the benchmark
itself runs as a plain ``python -m mpirl.bench``.
"""
SECTIONS = ("ppo", "pipeline", "replay", "dqn", "mdp", "multitask", "scaling", "zoo", "sac", "impala",
            "atari", "breakout")
