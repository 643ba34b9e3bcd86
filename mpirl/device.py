"""Which torch device a rank trains on (``--device auto|cpu|cuda|cuda:N``), and whether it
computes bfloat16 natively (``--autocast``).

One rank per GPU is the HPC habit: each rank takes the GPU of its node-local rank, modulo the
GPUs it can see. Under Slurm's ``--gpus-per-task=1`` every task sees exactly one GPU
(``CUDA_VISIBLE_DEVICES``), so that rule gives each its own. Where a node has more ranks than
GPUs, ranks share them round-robin, and the run says so once.

Pure functions of the numbers involved: the trainer supplies the node-local rank (an MPI split of
type shared, ``World.node_local``) and the GPU count (``torch.cuda.device_count``); the tests
supply simulated ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mpirl.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass(frozen=True)
class DeviceChoice:
    device: str                 # "cpu" or "cuda:N"
    note: str | None = None     # what the ranks of a node share, when they share GPUs


def gpu_path_covers(cfg) -> bool:
    """Whether a run of ``cfg`` can train on a GPU: single-task PPO averaging every update
    (other algorithms, multi-task, pipeline stages and the other sync modes run on the CPU)."""
    return (cfg.algo == "ppo" and not cfg.tasks and cfg.pipeline_stages == 1
            and cfg.sync_mode == "allreduce")


def device_problem(requested: str, gpu_count: int) -> str | None:
    """Why ``--device requested`` cannot run here (None: it can)."""
    if not DEVICE_PATTERN.match(requested):
        return f"--device must be auto, cpu, cuda or cuda:N, not {requested!r}"
    if requested.startswith("cuda") and gpu_count == 0:
        return (f"--device {requested}: no CUDA GPU is visible to this process (torch sees "
                "none: a CPU build of torch, no driver, or CUDA_VISIBLE_DEVICES empty); use "
                "--device cpu or auto")
    if requested.startswith("cuda:") and int(requested[5:]) >= gpu_count:
        return (f"--device {requested}: this process sees {gpu_count} GPU(s), numbered 0 to "
                f"{gpu_count - 1}")
    return None


def choose_device(requested: str, local_rank: int, local_size: int,
                  gpu_count: int) -> DeviceChoice:
    """The device of the rank that is ``local_rank`` of ``local_size`` ranks on its node, which
    sees ``gpu_count`` GPUs. Raises ConfigError for a device that cannot run here."""
    problem = device_problem(requested, gpu_count)
    if problem:
        raise ConfigError(problem)
    if requested == "cpu" or (requested == "auto" and gpu_count == 0):
        return DeviceChoice("cpu")
    if requested.startswith("cuda:"):
        return DeviceChoice(requested)
    index = local_rank % gpu_count
    note = None
    if local_size > gpu_count:
        note = (f"{local_size} ranks share {gpu_count} GPU(s) on a node: node-local rank r uses "
                f"GPU r mod {gpu_count} (give each rank its own with one rank per GPU, e.g. "
                "srun --gpus-per-task=1)")
    return DeviceChoice(f"cuda:{index}", note)


def computes_bf16_natively(device: str, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``device`` has bfloat16 arithmetic in hardware: a CPU with AVX512-BF16 or AMX
    (elsewhere torch emulates it, slower than float32), or a CUDA GPU that torch says supports
    it."""
    if device.startswith("cuda"):
        import torch
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with open(cpuinfo) as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_bf16(requested: str, device: str) -> bool:
    """``--autocast requested`` on ``device``: bf16 always, off never, auto where it is native."""
    return requested == "bf16" or (requested == "auto" and computes_bf16_natively(device))
