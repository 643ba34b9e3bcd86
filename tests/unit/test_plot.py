"""mpirl.plot: runs grouped into curves, and each curve's band against a direct numpy
computation on synthetic runs."""
import json

import numpy as np
import pytest
import yaml

from mpirl.errors import ConfigError
from mpirl.plot import bootstrap_band, group_runs, on_grid, plot, read_run


def _run(tmp_path, name, config, steps, returns):
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for i, (step, value) in enumerate(zip(steps, returns)):
            fh.write(json.dumps({"global_step": step, "time_s": 0.5 * i, "update": i + 1,
                                 "episode_return_mean": value}) + "\n")
    return run_dir


def test_the_band_is_the_percentiles_of_the_means_of_runs_resampled_with_replacement():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (5, 7))
    mean, low, high = bootstrap_band(values, confidence=0.9, resamples=500, seed=11)
    draws = np.random.default_rng(11).integers(0, 5, size=(500, 5))    # the same draws, by hand
    means = np.stack([values[d].mean(axis=0) for d in draws])
    np.testing.assert_allclose(mean, values.mean(axis=0))
    np.testing.assert_allclose(low, np.percentile(means, 5, axis=0))
    np.testing.assert_allclose(high, np.percentile(means, 95, axis=0))
    assert (low <= mean).all() and (mean <= high).all()


def test_runs_are_interpolated_on_a_grid_and_a_short_run_counts_where_it_got():
    grid = np.array([0.0, 5.0, 10.0, 20.0])
    rows = on_grid([(np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 30.0])),
                    (np.array([0.0, 10.0]), np.array([2.0, 4.0]))], grid)
    np.testing.assert_allclose(rows[0], [0, 5, 10, 30])
    np.testing.assert_allclose(rows[1, :3], [2, 3, 4])
    assert np.isnan(rows[1, 3])                                     # still in progress there
    mean, low, high = bootstrap_band(rows)
    assert mean[3] == low[3] == high[3] == 30.0                     # one run: its value


def test_runs_that_differ_only_in_seed_form_one_curve_and_the_rest_split_it(tmp_path):
    base = {"env_id": "CartPole-v1", "algo": "ppo", "learning_rate": 1e-3, "seed": 0}
    runs = [read_run(_run(tmp_path, f"r{i}", {**base, "seed": i,
                                               "learning_rate": lr, "run_dir": f"x{i}"},
                          [100, 200], [i, i + 1]))
            for i, lr in enumerate([1e-3, 1e-3, 3e-4])]
    groups = group_runs(runs)
    assert sorted((label, len(m)) for label, m in groups.items()) == [
        ("learning_rate=0.0003", 1), ("learning_rate=0.001", 2)]
    assert list(group_runs(runs, ["algo"])) == ["algo=ppo"]


def test_plot_writes_a_png_and_the_csv_of_its_points_and_refuses_runs_with_nothing_to_plot(
        tmp_path):
    base = {"env_id": "CartPole-v1", "algo": "ppo"}
    for seed in range(3):
        _run(tmp_path, f"run{seed}", {**base, "seed": seed}, [100, 200, 300],
             [10.0 * seed, 20.0 * seed, 30.0])
    out = tmp_path / "curves.png"
    result = plot([str(tmp_path)], out=str(out), points=3)
    assert list(result) == ["all runs"] and len(result["all runs"]["runs"]) == 3
    np.testing.assert_allclose(result["all runs"]["mean"], [10.0, 20.0, 30.0])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "curve,x,mean,ci_low,ci_high,runs" and len(lines) == 4
    empty = tmp_path / "empty"
    _run(empty.parent, "empty", base, [], [])
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot([str(empty)], out=str(tmp_path / "none.png"))
    with pytest.raises(ConfigError, match="no mpirl run dir"):
        plot([str(tmp_path / "nowhere")], out=str(tmp_path / "none.png"))
