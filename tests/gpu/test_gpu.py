"""The GPU path on a real GPU (#21): skipped where torch sees none; scripts/gpu-check.sh runs it
on a GPU machine. Gradient averaging through the device buffer or the staged host copy equals the
CPU's; PPO trains with --device cuda at 2 ranks, its replicas in sync; its checkpoint resumes on
the CPU."""
import json
import sys

import pytest
import torch

from tests.launch import mpirun, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

AVERAGE = """
import json, torch
from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients
world = World()
torch.manual_seed(0)
out = {}
for device, path in (("cpu", "host"), ("cuda", "staged"), ("cuda", None)):
    model = torch.nn.Linear(64, 64).to(device)
    grads = FlatGradients(model.parameters(), world, path=path)
    torch.manual_seed(world.rank)
    model(torch.randn(32, 64, device=device)).square().mean().backward()
    grads.average()
    out[f"{device}-{grads.path}"] = grads.flat.cpu().tolist()
if world.rank == 0:
    print(json.dumps(out))
"""


def test_device_averaging_equals_the_cpus():
    res = mpirun(2, ["-c", AVERAGE], timeout=120).check()
    out = json.loads(res.output.strip().splitlines()[-1])
    reference = torch.tensor(out.pop("cpu-host"))
    for path, values in out.items():
        torch.testing.assert_close(torch.tensor(values), reference, rtol=1e-5, atol=1e-6,
                                   msg=path)


def test_ppo_trains_on_the_gpu_and_resumes_on_the_cpu(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--total-timesteps", "8192", "--run-dir", str(run_dir), "--desync-check-interval", "1"]
    res = train(2, [*args, "--device", "cuda"], timeout=300).check()
    assert "device: cuda:0 on rank 0" in res.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    more = train(2, ["--total-timesteps", "16384", "--run-dir", str(run_dir), "--device", "cpu",
                     "--resume"], timeout=300).check()
    assert "resuming from" in more.output
