"""--device: each rank's device from its node-local rank and the GPUs it sees (simulated here: no
GPU needed), the problems reported before training, and the runs the GPU path covers."""
import pytest

from mpirl.config import parse_args
from mpirl.device import choose_device, device_problem, gpu_path_covers
from mpirl.errors import ConfigError


@pytest.mark.parametrize("local_size,gpus", [(4, 4), (8, 4), (2, 1), (3, 2)])
def test_each_rank_takes_the_gpu_of_its_node_local_rank(local_size, gpus):
    chosen = [choose_device("cuda", r, local_size, gpus) for r in range(local_size)]
    assert [c.device for c in chosen] == [f"cuda:{r % gpus}" for r in range(local_size)]
    # every GPU used, as evenly as the ranks allow
    counts = [sum(c.device == f"cuda:{g}" for c in chosen) for g in range(gpus)]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 1
    shared = local_size > gpus
    assert all((c.note is not None) == shared for c in chosen)
    if shared:
        assert f"{local_size} ranks share {gpus} GPU(s)" in chosen[0].note


def test_slurm_gpus_per_task_gives_each_task_its_one_visible_gpu():
    """--gpus-per-task=1: CUDA_VISIBLE_DEVICES shows each task one GPU, whatever its rank."""
    assert {choose_device("cuda", r, 4, 1).device for r in range(4)} == {"cuda:0"}
    assert choose_device("auto", 3, 4, 1).note is not None   # (4 ranks, 1 visible: shared)


def test_auto_is_the_gpu_where_there_is_one_and_the_cpu_elsewhere():
    assert choose_device("auto", 1, 2, 2).device == "cuda:1"
    assert choose_device("auto", 1, 2, 0).device == "cpu"
    assert choose_device("cpu", 0, 1, 8).device == "cpu"
    assert choose_device("cuda:3", 0, 2, 4).device == "cuda:3"


@pytest.mark.parametrize("requested,gpus,message", [
    ("cuda", 0, "no CUDA GPU is visible"), ("cuda:0", 0, "no CUDA GPU is visible"),
    ("cuda:2", 2, "sees 2 GPU(s), numbered 0 to 1"), ("gpu", 1, "must be auto, cpu, cuda or cuda:N"),
])
def test_a_device_that_cannot_run_here_is_one_clear_error(requested, gpus, message):
    assert message in device_problem(requested, gpus)
    with pytest.raises(ConfigError, match="--device"):
        choose_device(requested, 0, 1, gpus)


def test_the_gpu_path_covers_single_task_ppo_with_allreduce():
    assert gpu_path_covers(parse_args([]))
    for argv in (["--algo", "dqn"], ["--algo", "impala"], ["--pipeline-stages", "2"],
                 ["--sync-mode", "local-sgd"], ["--tasks", "CartPole-v1,Acrobot-v1"]):
        assert not gpu_path_covers(parse_args(argv)), argv
