"""Hessian-vector products and power iteration (Appendix A) against full Hessians on small problems."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from llmcourse.analysis.curvature import dot, finite_difference_hvp, hvp, power_iteration



@pytest.fixture(autouse=True)
def float64():
    """Every tensor a test makes is float64 unless it says otherwise; the default is put back after."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def known_quadratic(n: int = 6, seed: int = 0):
    """L(x) = ½ xᵀ A x + bᵀ x with a symmetric A whose eigenvalues are 1..n (so H = A everywhere)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    eigenvalues = torch.arange(1.0, n + 1)
    a = q @ torch.diag(eigenvalues) @ q.T
    b = torch.randn(n, generator=g)
    x = torch.randn(n, generator=g, requires_grad=True)
    return a, eigenvalues, (lambda: 0.5 * x @ a @ x + b @ x), x


def tiny_mlp(seed: int = 0):
    """A 3 -> 4 -> 2 tanh MLP with a cross-entropy loss on 5 fixed examples: 26 parameters."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in params]

    def loss_fn():
        return nn.functional.cross_entropy(model(x), y)

    def loss_of_flat(flat):  # the same loss as a function of one flat vector, for the full Hessian
        pieces = torch.split(flat, [p.numel() for p in params])
        weights = {n: t.view(s) for n, t, s in zip(names, pieces, shapes)}
        return nn.functional.cross_entropy(functional_call(model, weights, (x,)), y)

    flat = torch.cat([p.detach().flatten() for p in params])
    hessian = torch.autograd.functional.hessian(loss_of_flat, flat)  # (26, 26)
    return params, loss_fn, hessian


def flatten(tensors):
    return torch.cat([t.flatten() for t in tensors])


def unflatten(flat, like):
    return list(t.view(p.shape) for t, p in zip(torch.split(flat, [p.numel() for p in like]), like))


def test_hvp_of_a_quadratic_is_a_times_v():
    a, _, loss_fn, x = known_quadratic()
    v = torch.randn(6)
    (hv,) = hvp(loss_fn, [x], [v])
    torch.testing.assert_close(hv, a @ v)


def test_hvp_of_tiny_mlp_equals_full_hessian_times_v():
    params, loss_fn, hessian = tiny_mlp()
    for seed in range(3):
        v_flat = torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(seed))
        got = flatten(hvp(loss_fn, params, unflatten(v_flat, params)))
        torch.testing.assert_close(got, hessian @ v_flat)


def test_hvp_columns_rebuild_the_whole_hessian_which_is_symmetric():
    params, loss_fn, hessian = tiny_mlp(seed=1)
    n = hessian.shape[0]
    columns = [flatten(hvp(loss_fn, params, unflatten(torch.eye(n)[i], params))) for i in range(n)]
    rebuilt = torch.stack(columns, dim=1)
    torch.testing.assert_close(rebuilt, hessian)
    torch.testing.assert_close(rebuilt, rebuilt.T)


def test_finite_differences_agree_with_hvp_and_restore_params():
    params, loss_fn, hessian = tiny_mlp(seed=2)
    before = [p.detach().clone() for p in params]
    v = unflatten(torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(5)), params)
    fd = flatten(finite_difference_hvp(loss_fn, params, v, eps=1e-4))
    exact = flatten(hvp(loss_fn, params, v))
    torch.testing.assert_close(fd, exact, rtol=1e-5, atol=1e-7)
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)


def test_power_iteration_finds_the_largest_eigenvalue_of_a_quadratic():
    a, eigenvalues, loss_fn, x = known_quadratic(n=8)
    result = power_iteration(loss_fn, [x], iterations=150)
    assert len(result.history) == 150
    assert result.eigenvalue == pytest.approx(eigenvalues.max().item(), rel=1e-6)
    (v,) = result.vector
    assert float(dot([v], [v])) == pytest.approx(1.0)
    torch.testing.assert_close(a @ v, result.eigenvalue * v, atol=1e-5, rtol=1e-5)  # an eigenvector


def test_power_iteration_on_tiny_mlp_matches_eigvalsh():
    params, loss_fn, hessian = tiny_mlp(seed=3)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    largest = eigenvalues[eigenvalues.abs().argmax()].item()  # largest in magnitude, with its sign
    second = eigenvalues.abs().sort().values[-2].item()
    assert second / abs(largest) < 0.9  # a gap, so 300 iterations settle to 1e-6
    result = power_iteration(loss_fn, params, iterations=300, seed=1)
    assert result.eigenvalue == pytest.approx(largest, rel=1e-6)


def test_power_iteration_from_an_eigenvector_stays_put():
    a, eigenvalues, loss_fn, x = known_quadratic()
    _, vectors = torch.linalg.eigh(a)
    result = power_iteration(loss_fn, [x], iterations=3, start=[vectors[:, 2]])
    assert result.history == pytest.approx([eigenvalues[2].item()] * 3, rel=1e-9)


def test_float32_parameters_give_float32_products():
    w = torch.randn(4, dtype=torch.float32, requires_grad=True)
    (hv,) = hvp(lambda: (w**4).sum(), [w], [torch.ones(4, dtype=torch.float32)])
    assert hv.dtype == torch.float32
    torch.testing.assert_close(hv, 12 * w.detach() ** 2)


@pytest.mark.parametrize("iterations", [0, -3, 2.5])
def test_power_iteration_rejects_bad_iterations(iterations):
    _, _, loss_fn, x = known_quadratic()
    with pytest.raises(ValueError, match="iterations"):
        power_iteration(loss_fn, [x], iterations=iterations)


def test_bad_vectors_and_params_are_rejected_by_name():
    _, _, loss_fn, x = known_quadratic()
    with pytest.raises(ValueError, match=r"vector\[0\] has shape \(5,\)"):
        hvp(loss_fn, [x], [torch.ones(5)])
    with pytest.raises(ValueError, match="vector has 2 tensors"):
        hvp(loss_fn, [x], [torch.ones(6), torch.ones(6)])
    with pytest.raises(ValueError, match="params is empty"):
        hvp(loss_fn, [], [])
    with pytest.raises(ValueError, match="does not require gradients"):
        hvp(loss_fn, [x.detach()], [torch.ones(6)])
    with pytest.raises(ValueError, match="start"):
        power_iteration(loss_fn, [x], iterations=2, start=[torch.zeros(6)])
    with pytest.raises(ValueError, match="eps"):
        finite_difference_hvp(loss_fn, [x], [torch.ones(6)], eps=0.0)
    with pytest.raises(ValueError, match="scalar"):
        hvp(lambda: x * 2, [x], [torch.ones(6)])
