"""Pipeline schedules as plain data, and a unit-cost simulator to reason about them.

A schedule says, for every stage, the ordered list of actions it runs: ``F m`` (forward of
micro-batch m) or ``B m`` (backward of micro-batch m). Stages only execute that list, so a
schedule can be printed, tested and simulated without any communication.

- GPipe: all M forwards, then all M backwards (stashes M micro-batches of activations).
- 1F1B (PipeDream-flush / Megatron): ``min(P - s - 1, M)`` warm-up forwards on stage s, then
  alternate one forward and one backward, then the remaining backwards; at most
  ``min(P - s, M)`` micro-batches of activations are alive on stage s.

Both have the same bubble, ``(P - 1) / (M + P - 1)`` of the time, when forward and backward cost
the same on every stage; 1F1B needs far less activation memory.
"""
from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("gpipe", "1f1b")


@dataclass(frozen=True)
class Action:
    """One step of a stage: ``kind`` is "F" (forward) or "B" (backward) of micro-batch ``micro``."""

    kind: str
    micro: int

    def __str__(self) -> str:
        return f"{self.kind}{self.micro}"


@dataclass(frozen=True)
class Schedule:
    """``actions[s]`` is the ordered list of actions of stage s (P stages, M micro-batches)."""

    name: str
    stages: int
    micro_batches: int
    actions: tuple[tuple[Action, ...], ...]

    def __str__(self) -> str:
        width = max(len(str(a)) for row in self.actions for a in row)
        lines = [f"{self.name}: {self.stages} stages, {self.micro_batches} micro-batches"]
        for s, row in enumerate(self.actions):
            lines.append(f"  stage {s}: " + " ".join(str(a).ljust(width) for a in row))
        return "\n".join(lines)

    def peak_stash(self, stage: int) -> int:
        """Most micro-batches whose activations stage ``stage`` holds at once (forward done,
        backward not yet)."""
        alive = peak = 0
        for a in self.actions[stage]:
            alive += 1 if a.kind == "F" else -1
            peak = max(peak, alive)
        return peak


def gpipe(stages: int, micro_batches: int) -> Schedule:
    """All forwards, then all backwards (in the same order, as GPipe flushes)."""
    _check(stages, micro_batches)
    row = tuple(Action("F", m) for m in range(micro_batches)) + \
        tuple(Action("B", m) for m in range(micro_batches))
    return Schedule("gpipe", stages, micro_batches, tuple(row for _ in range(stages)))


def one_f_one_b(stages: int, micro_batches: int) -> Schedule:
    """Warm-up forwards, then one forward / one backward in turn, then the cool-down backwards."""
    _check(stages, micro_batches)
    rows = []
    for s in range(stages):
        warm = min(stages - s - 1, micro_batches)
        row = [Action("F", m) for m in range(warm)]
        for i in range(micro_batches - warm):
            row += [Action("F", warm + i), Action("B", i)]
        row += [Action("B", m) for m in range(micro_batches - warm, micro_batches)]
        rows.append(tuple(row))
    return Schedule("1f1b", stages, micro_batches, tuple(rows))


def build(name: str, stages: int, micro_batches: int) -> Schedule:
    """The schedule called ``name`` ("gpipe" or "1f1b")."""
    makers = {"gpipe": gpipe, "1f1b": one_f_one_b}
    if name not in makers:
        raise ValueError(f"unknown pipeline schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return makers[name](stages, micro_batches)


def _check(stages: int, micro_batches: int) -> None:
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"a schedule needs >= 1 stage and >= 1 micro-batch, "
                         f"not {stages} and {micro_batches}")


# -- simulation ---------------------------------------------------------------------------------
def theoretical_bubble(stages: int, micro_batches: int) -> float:
    """Idle fraction of a flush pipeline with equal stage costs: (P - 1) / (M + P - 1)."""
    return (stages - 1) / (micro_batches + stages - 1)


@dataclass
class Simulation:
    """Timeline of a schedule run with fixed action costs and free communication.

    ``start[s][i]`` / ``end[s][i]`` are the times of stage s's i-th action; ``makespan`` is the
    time of the last action's end; ``bubble`` the idle fraction of all stages over the makespan.
    """

    schedule: Schedule
    start: list[list[float]]
    end: list[list[float]]
    makespan: float
    bubble: float


def dependencies(schedule: Schedule, stage: int, action: Action) -> list[tuple[int, Action]]:
    """Actions on other stages that ``action`` of ``stage`` must wait for (message arrivals).

    F m on stage s needs F m of stage s - 1 (its input); B m needs B m of stage s + 1 (the
    gradient of its output). On its own stage, the order of the list is the only constraint.
    """
    if action.kind == "F":
        return [(stage - 1, action)] if stage > 0 else []
    return [(stage + 1, action)] if stage < schedule.stages - 1 else []


def simulate(schedule: Schedule, forward_cost: float = 1.0, backward_cost: float = 1.0) -> Simulation:
    """Run ``schedule`` on an imaginary machine; raise ValueError if it would deadlock."""
    P = schedule.stages
    cost = {"F": forward_cost, "B": backward_cost}
    done: dict[tuple[int, Action], float] = {}
    start = [[0.0] * len(row) for row in schedule.actions]
    end = [[0.0] * len(row) for row in schedule.actions]
    cursor = [0] * P  # next action index per stage
    clock = [0.0] * P
    remaining = sum(len(row) for row in schedule.actions)
    while remaining:
        progressed = False
        for s in range(P):
            while cursor[s] < len(schedule.actions[s]):
                action = schedule.actions[s][cursor[s]]
                needs = dependencies(schedule, s, action)
                if any(d not in done for d in needs):
                    break
                t0 = max([clock[s]] + [done[d] for d in needs])
                t1 = t0 + cost[action.kind]
                start[s][cursor[s]], end[s][cursor[s]] = t0, t1
                done[(s, action)] = clock[s] = t1
                cursor[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            stuck = {s: str(schedule.actions[s][cursor[s]]) for s in range(P)
                     if cursor[s] < len(schedule.actions[s])}
            raise ValueError(f"schedule {schedule.name} deadlocks: stages wait at {stuck}")
    makespan = max(clock)
    busy = sum(cost[a.kind] for row in schedule.actions for a in row)
    return Simulation(schedule, start, end, makespan, 1.0 - busy / (P * makespan))
