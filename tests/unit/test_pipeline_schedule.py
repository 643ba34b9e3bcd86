"""Pipeline schedules as data: order, cross-stage dependencies, warm-up, stash, bubble."""
import itertools

import pytest

from mpirl.pipeline.schedule import (Action, build, gpipe, one_f_one_b, simulate,
                                     theoretical_bubble)

SHAPES = [(p, m) for p, m in itertools.product((1, 2, 3, 4, 5), (1, 2, 3, 4, 7, 8, 16))]


def _position(schedule):
    """(stage, action) -> index of the action in its stage's list."""
    return {(s, a): i for s, row in enumerate(schedule.actions) for i, a in enumerate(row)}


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("P,M", SHAPES)
def test_every_stage_runs_each_forward_and_backward_once_and_forward_first(name, P, M):
    schedule = build(name, P, M)
    pos = _position(schedule)
    for s, row in enumerate(schedule.actions):
        assert sorted(map(str, row)) == sorted([f"F{m}" for m in range(M)] + [f"B{m}" for m in range(M)])
        for m in range(M):
            assert pos[(s, Action("F", m))] < pos[(s, Action("B", m))]


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("P,M", SHAPES)
def test_cross_stage_dependencies_hold_in_the_simulated_timeline(name, P, M):
    """Stage s starts F m only after stage s-1 finished it, and B m after stage s+1 did."""
    sim = simulate(build(name, P, M))
    pos = _position(sim.schedule)

    def end(s, a):
        return sim.end[s][pos[(s, a)]]

    def start(s, a):
        return sim.start[s][pos[(s, a)]]

    for s in range(P):
        for m in range(M):
            if s > 0:
                assert start(s, Action("F", m)) >= end(s - 1, Action("F", m))
            if s < P - 1:
                assert start(s, Action("B", m)) >= end(s + 1, Action("B", m))
            else:
                assert start(s, Action("B", m)) >= end(s, Action("F", m))


@pytest.mark.parametrize("P,M", SHAPES)
def test_1f1b_warmup_is_min_of_remaining_stages_and_micro_batches(P, M):
    schedule = one_f_one_b(P, M)
    for s in range(P):
        warm = min(P - s - 1, M)
        row = schedule.actions[s]
        assert [a.kind for a in row[:warm]] == ["F"] * warm
        # after the warm-up, forwards and backwards alternate while forwards remain
        steady = row[warm:warm + 2 * (M - warm)]
        assert [a.kind for a in steady] == ["F", "B"] * (M - warm)


@pytest.mark.parametrize("P,M", SHAPES)
def test_peak_activation_stash(P, M):
    """1F1B holds at most min(P - s, M) micro-batches on stage s (min(P, M) on stage 0);
    GPipe holds all M everywhere."""
    f1b, gp = one_f_one_b(P, M), gpipe(P, M)
    for s in range(P):
        assert f1b.peak_stash(s) == min(P - s, M)
        assert gp.peak_stash(s) == M
    assert max(f1b.peak_stash(s) for s in range(P)) == min(P, M)


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("P,M", SHAPES)
@pytest.mark.parametrize("backward_cost", [1.0, 2.0])
def test_unit_cost_simulation_reproduces_the_bubble_fraction(name, P, M, backward_cost):
    sim = simulate(build(name, P, M), forward_cost=1.0, backward_cost=backward_cost)
    assert sim.makespan == pytest.approx((M + P - 1) * (1.0 + backward_cost))
    assert sim.bubble == pytest.approx((P - 1) / (M + P - 1))
    assert sim.bubble == pytest.approx(theoretical_bubble(P, M))


def test_a_schedule_with_a_cycle_is_reported_as_a_deadlock():
    good = gpipe(2, 2)
    # stage 0 waits for B0 before sending F0 on: stage 1 can never start
    bad = type(good)("bad", 2, 2, ((Action("B", 0), Action("F", 0), Action("F", 1), Action("B", 1)),
                                   good.actions[1]))
    with pytest.raises(ValueError, match="deadlocks"):
        simulate(bad)


def test_schedule_prints_one_row_per_stage():
    text = str(one_f_one_b(3, 4))
    assert text.splitlines()[0] == "1f1b: 3 stages, 4 micro-batches"
    assert text.splitlines()[1].split() == ["stage", "0:", "F0", "F1", "F2", "B0", "F3", "B1",
                                            "B2", "B3"]
    assert text.splitlines()[3].split()[2:] == ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"]


def test_unknown_schedule_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown pipeline schedule 'zigzag'"):
        build("zigzag", 2, 2)
    with pytest.raises(ValueError, match="micro-batch"):
        build("1f1b", 2, 0)
