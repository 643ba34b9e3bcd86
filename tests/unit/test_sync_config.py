"""Bad --sync-mode input is refused before training, with one message naming the option."""
import pytest

from mpirl.errors import ConfigError
from tests.configs import validated


@pytest.mark.parametrize("argv,message", [
    (["--sync-mode", "gossip"], "--sync-mode must be one of allreduce, overlap, local-sgd"),
    (["--sync-mode", "local-sgd", "--sync-every", "0"], "--sync-every must be >= 1, not 0"),
    (["--sync-every", "-3"], "--sync-every must be >= 1, not -3"),
    (["--sync-every", "2.5"], "--sync-every: '2.5' is not a valid int"),
    (["--sync-mode", "overlap", "--bucket-mb", "0"], "--bucket-mb must be a finite number > 0"),
    (["--sync-mode", "overlap", "--bucket-mb", "inf"], "--bucket-mb must be a finite number > 0"),
    (["--algo", "dqn", "--sync-mode", "local-sgd"],
     "--sync-mode local-sgd is implemented for --algo ppo only"),
])
def test_bad_sync_options_give_one_clear_message(argv, message):
    with pytest.raises(ConfigError) as err:
        validated(argv)
    assert message in str(err.value)
    assert str(err.value).count(message) == 1


def test_overlap_is_refused_for_a_pipeline_layout_and_the_good_layouts_pass():
    with pytest.raises(ConfigError, match="overlap does not support --pipeline-stages > 1"):
        validated(["--sync-mode", "overlap", "--pipeline-stages", "2"], n_ranks=2)
    for mode in ("allreduce", "overlap", "local-sgd"):
        validated(["--sync-mode", mode, "--sync-every", "1"], n_ranks=4)
