"""The Nature CNN under pytest-mpi (#18): each rank's uint8 batch through the network, the flat
gradient averaged in one Allreduce, equals the gradient of the concatenated batch in one process
(1e-5), and replicas that start from rank 0's parameters stay bit-identical after an Adam step."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from mpirl.comm import World
from mpirl.comm.collectives import FlatGradients, check_in_sync, sync_params
from mpirl.models.nature_cnn import NatureCNNActorCritic
from mpirl.optim import FlatAdam

NPROCS = (2,)
TIMEOUT = 120


def _model():
    torch.manual_seed(0)
    return NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(6))


def _batch(rank: int, n: int = 8):
    g = torch.Generator().manual_seed(100 + rank)
    frames = torch.randint(0, 256, (n, 4, 84, 84), generator=g, dtype=torch.uint8)
    targets = torch.randn(n, 7, generator=g)
    return frames, targets


@pytest.mark.mpi(min_size=2)
def test_averaged_cnn_gradient_equals_the_concatenated_batch_in_one_process():
    torch.set_num_threads(1)
    world = World()
    model = _model()
    grads = FlatGradients(model.parameters(), world)
    frames, targets = _batch(world.rank)
    torch.nn.functional.mse_loss(model(frames), targets).backward()
    grads.average()

    reference = _model()
    batches = [_batch(r) for r in range(world.size)]
    torch.nn.functional.mse_loss(reference(torch.cat([f for f, _ in batches])),
                                 torch.cat([t for _, t in batches])).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-5, rtol=0)

    optimizer = FlatAdam(grads, lr=2.5e-4)
    sync_params(world, model, optimizer)
    optimizer.step()
    check_in_sync(world, model)   # raises if any replica's parameters differ
