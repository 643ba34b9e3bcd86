"""Config validation of the pipeline options: one clear problem each, before any MPI."""
import pytest

from mpirl.errors import ConfigError
from tests.configs import validated


@pytest.mark.parametrize("args,message", [
    (["--micro-batches", "3"], "--micro-batches 3 must divide the pipelined minibatch of 256 rows"),
    (["--micro-batches", "512"], "--micro-batches 512 must divide the pipelined minibatch"),
    (["--micro-batches", "0"], "--micro-batches must be >= 1, not 0"),
    (["--pipeline-schedule", "zigzag"], "--pipeline-schedule must be one of gpipe, 1f1b, not 'zigzag'"),
    (["--partition", "3,1"], "--partition '3,1': needs 2 positive counts (one per stage) that add "
                             "up to the model's 3 layer blocks"),
    (["--partition", "a,b"], "--partition 'a,b': expected comma-separated layer counts"),
    (["--tasks", "CartPole-v1,Acrobot-v1"], "--tasks cannot be combined with --pipeline-stages > 1"),
])
def test_bad_pipeline_options_are_reported(args, message):
    with pytest.raises(ConfigError) as info:
        validated(["--pipeline-stages", "2", *args], n_ranks=2)
    assert str(info.value).count(message) == 1, str(info.value)


def test_good_pipeline_options_pass_and_count_the_pooled_minibatch():
    cfg = validated(["--pipeline-stages", "2", "--micro-batches", "8", "--partition", "2,1",
                      "--num-minibatches", "4"], n_ranks=2)  # the 8x128 rollout / 4 = 256 rows
    assert (cfg.pipeline_stages, cfg.micro_batches, cfg.partition) == (2, 8, "2,1")
    with pytest.raises(ConfigError, match="minibatch of 256 rows"):
        validated(["--pipeline-stages", "2", "--micro-batches", "512", "--num-minibatches", "4"],
                  n_ranks=2)
