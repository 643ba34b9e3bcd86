"""Tuned settings per algorithm and environment, as data: ``mpirl/presets/<algo>/<name>.yaml``.

Each file names the environments it applies to (ids, or a family: ``classic``, ``box2d``,
``mujoco``), the options it sets, and where they come from (a published table, or this
project's own benchmark run). The trainer picks one by the env id (an id's own file before its
family's) and applies it between the defaults and ``--config``/the command line::

    defaults < preset < --config FILE < command line

``--preset NAME`` chooses one by name and ``--preset none`` trains with the defaults alone. A
preset with ``auto: false`` is never picked by the env id, only by name (settings for a special
purpose, such as the quickest first solve). The
chosen preset is named in the run's first log line and recorded in its config.yaml.

Kept free of torch: presets are read before any rank trains.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from mpirl.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
# gymnasium's entry-point packages, and the family each makes an env part of
FAMILIES = {"gymnasium.envs.classic_control": "classic", "gymnasium.envs.box2d": "box2d",
            "gymnasium.envs.mujoco": "mujoco", "ale_py": "atari"}


@dataclass(frozen=True)
class Preset:
    name: str
    algo: str
    source: str                          # where the settings come from
    env_ids: tuple = ()                  # the ids it applies to ...
    families: tuple = ()                 # ... or the families
    options: dict = field(default_factory=dict)
    auto: bool = True                    # picked by the env id (False: by --preset NAME only)


def names(algo: str) -> list[str]:
    """The presets shipped for ``algo``."""
    folder = os.path.join(HERE, algo)
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def load(algo: str, name: str) -> Preset:
    path = os.path.join(HERE, algo, f"{name}.yaml")
    if not os.path.isfile(path):
        shipped = ", ".join(names(algo)) or "none"
        raise ConfigError(f"--preset {name}: no such preset for --algo {algo} (shipped: "
                          f"{shipped}; or --preset none)")
    with open(path) as fh:
        data = yaml.safe_load(fh)
    applies = data.get("applies_to", {})
    return Preset(name=name, algo=algo, source=" ".join(str(data["source"]).split()),
                  env_ids=tuple(applies.get("env_ids", ())),
                  families=tuple(applies.get("families", ())),
                  options=dict(data.get("options") or {}), auto=bool(data.get("auto", True)))


def family(env_id: str) -> str | None:
    """The family of a registered env id, from the package of its entry point (None when
    unknown or not registered)."""
    import gymnasium as gym
    if env_id.startswith("ALE/"):   # (known before ale-py registers its ids)
        return "atari"
    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        return None
    module = entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")
    return next((fam for package, fam in FAMILIES.items() if module.startswith(package)), None)


def _shipped(algo: str) -> list[Preset]:
    return [p for p in (load(algo, name) for name in names(algo)) if p.auto]


def for_env(algo: str, env_id: str) -> Preset | None:
    """The preset that applies to ``env_id``: the one that names it, else its family's."""
    named = [p for p in _shipped(algo) if env_id in p.env_ids]
    return named[0] if named else for_family(algo, family(env_id))


def for_tasks(algo: str, env_ids: list[str]) -> Preset | None:
    """The preset of a multi-task run: their family's, when every task is of one family that
    has one (Atari games: the atari preset); none otherwise (an env's own preset is tuned to it
    alone)."""
    families = {family(env_id) for env_id in env_ids}
    return for_family(algo, families.pop()) if len(families) == 1 else None


def for_family(algo: str, fam: str | None) -> Preset | None:
    return next((p for p in _shipped(algo) if fam is not None and fam in p.families), None)
