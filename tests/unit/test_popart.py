"""PopArt: outputs preserved exactly across statistics updates; per-task statistics converge."""
import numpy as np
import torch

from mpirl.models.popart import PopArt


def _value_layers(num_tasks, seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Linear(8, 1).double() for _ in range(num_tasks)]


def _batch_rows(*task_returns):
    """(K, 3) rows of (count, sum, sum of squares)."""
    return torch.tensor([[len(r), r.sum(), (r * r).sum()] for r in task_returns],
                        dtype=torch.float64)


def test_unnormalised_outputs_are_preserved_exactly_across_an_update():
    popart = PopArt(2, beta=0.3)
    layers = _value_layers(2)
    h = torch.randn(64, 8, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for scale in (1.0, 1000.0, 5.0):  # several updates, statistics moving a lot each time
        before = [popart.denormalize(layers[k](h).squeeze(-1), k) for k in range(2)]
        popart.update(_batch_rows(rng.normal(3 * scale, scale, 100),
                                  rng.normal(-scale, 2 * scale, 50)), layers)
        after = [popart.denormalize(layers[k](h).squeeze(-1), k) for k in range(2)]
        for b, a in zip(before, after):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)
    assert popart.std[1] > 10  # the statistics did move: the test is not vacuous


def test_a_task_without_new_targets_keeps_its_statistics_and_head():
    popart = PopArt(2)
    layers = _value_layers(2)
    weight = layers[1].weight.detach().clone()
    popart.update(_batch_rows(np.array([5.0, 7.0]), np.array([])), layers)
    assert popart.mean[1] == 0 and popart.std[1] == 1 and popart.updates[1] == 0
    assert torch.equal(layers[1].weight, weight)
    assert popart.mean[0] == 6.0 and popart.updates[0] == 1


def test_per_task_statistics_converge_on_returns_of_scales_1_and_1000():
    popart = PopArt(2, beta=0.05)
    layers = _value_layers(2)
    rng = np.random.default_rng(1)
    for _ in range(400):
        popart.update(_batch_rows(rng.normal(2.0, 1.0, 256), rng.normal(-3000.0, 1000.0, 256)),
                      layers)
    np.testing.assert_allclose(popart.mean.numpy(), [2.0, -3000.0], rtol=0.03)
    np.testing.assert_allclose(popart.std.numpy(), [1.0, 1000.0], rtol=0.05)
    # ...so both tasks' targets reach the value heads at the same unit scale.
    for k, (mu, sigma) in enumerate([(2.0, 1.0), (-3000.0, 1000.0)]):
        z = popart.normalize(torch.tensor(rng.normal(mu, sigma, 5000)), k)
        assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1) < 0.1


def test_normalize_and_denormalize_are_inverse():
    popart = PopArt(1)
    popart.update(_batch_rows(np.array([10.0, 30.0, 50.0])), _value_layers(1))
    x = torch.tensor([-4.0, 0.0, 17.5], dtype=torch.float64)
    torch.testing.assert_close(popart.denormalize(popart.normalize(x, 0), 0), x)
    torch.testing.assert_close(popart.normalize(x, 0), (x - 30.0) / np.sqrt(800 / 3))
