"""FlatAdam takes exactly torch.optim.Adam's steps."""
import copy

import pytest
import torch

from mpirl import optim
from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients
from mpirl.optim import FlatAdam
from tests.flat import views_intact


@pytest.mark.parametrize("fused", [True, False])   # torch's fused CPU kernel, or six vector ops
def test_flat_adam_matches_torch_adam_over_many_steps(fused, monkeypatch):
    assert optim.FUSED   # the pinned torch has the kernel: the CPU path takes it
    monkeypatch.setattr(optim, "FUSED", fused)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    reference = copy.deepcopy(model)
    grads = FlatGradients(model.parameters(), World())
    opt = FlatAdam(grads, lr=3e-3, eps=1e-5)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=3e-3, eps=1e-5)
    for step in range(20):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        grads.zero()
        model(x).pow(2).mean().backward()
        opt.step()
        ref_opt.zero_grad()
        reference(x).pow(2).mean().backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    assert views_intact(grads)


def test_flat_adam_state_round_trips():
    model = torch.nn.Linear(3, 2)
    grads = FlatGradients(model.parameters(), World())
    opt = FlatAdam(grads, lr=1e-2)
    grads.zero()
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    other = FlatAdam(FlatGradients(torch.nn.Linear(3, 2).parameters(), World()), lr=0.5)
    other.load_state_dict(state)
    assert other.param_groups[0]["lr"] == 1e-2
    for a, b in zip(opt.state_tensors(), other.state_tensors()):
        torch.testing.assert_close(a, b)


def test_fused_and_vector_op_steps_agree_and_leave_the_count_to_flat_adam(monkeypatch):
    """The kernel reads each part's step count without adding to it: both paths count alike."""
    paths = []
    for fused in (True, False):
        monkeypatch.setattr(optim, "FUSED", fused)
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 5)
        grads = FlatGradients(model.parameters(), World())
        opt = FlatAdam(grads, lr=1e-2, eps=1e-5, parts={"a": (0, 20), "b": (20, 35)})
        for step in range(30):
            grads.zero()
            model(torch.randn(8, 6, generator=torch.Generator().manual_seed(step))).square(
                ).sum().backward()
            opt.step(*(["a", "b"] if step % 3 else ["a"]))
        assert opt.step_count.tolist() == [30.0, 20.0]
        paths.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(paths[0], paths[1], atol=1e-6, rtol=0)
    assert not torch.equal(paths[0], torch.cat([p.detach().reshape(-1) for p in
                                                torch.nn.Linear(6, 5).parameters()]))
