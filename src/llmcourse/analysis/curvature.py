"""Curvature of a loss: Hessian-vector products and the largest Hessian eigenvalue.

The Hessian of a loss with N parameters is an N x N matrix: for a model of a few
million parameters it has about 10^13 entries and is never formed. What can be
computed is its product with one vector, H v, for the price of about two
gradients: differentiate the gradient's dot product with v a second time
(Pearlmutter 1994). Power iteration repeats v <- H v / |H v| and finds the
eigenvalue of largest magnitude, the sharpest direction of the loss; gradient
descent with step size above 2 / lambda_max diverges along it.

Every function takes the loss as a closure ``loss_fn()`` that recomputes it from
the current values of ``params`` (a list of tensors that require gradients, such
as ``list(model.parameters())``), and a vector as a list of tensors with the
shapes of ``params``.

Introduced in: Appendix A, Matrix calculus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

LossFn = Callable[[], Tensor]


class PowerIteration(NamedTuple):
    """Result of :func:`power_iteration`.

    Introduced in: Appendix A, Matrix calculus.
    """

    eigenvalue: float  # the last Rayleigh quotient v^T H v, with |v| = 1
    vector: list[Tensor]  # the unit vector H v / |H v| of the last iteration, shaped like params
    history: list[float]  # the estimate after each iteration


def _check(params: Sequence[Tensor], vector: Sequence[Tensor] | None = None) -> list[Tensor]:
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass the tensors to differentiate, e.g. list(model.parameters())")
    for i, p in enumerate(params):
        if not p.requires_grad:
            raise ValueError(f"params[{i}] does not require gradients")
    if vector is not None:
        vector = list(vector)
        if len(vector) != len(params):
            raise ValueError(f"vector has {len(vector)} tensors, params has {len(params)}")
        for i, (v, p) in enumerate(zip(vector, params)):
            if v.shape != p.shape:
                raise ValueError(f"vector[{i}] has shape {tuple(v.shape)}, params[{i}] has {tuple(p.shape)}")
    return params


def _scalar_loss(loss_fn: LossFn) -> Tensor:
    loss = loss_fn()
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise ValueError("loss_fn must return a scalar tensor (shape ())")
    return loss


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """The dot product of two vectors stored as lists of tensors (one per parameter).

    Introduced in: Appendix A, Matrix calculus.
    """
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


def hvp(loss_fn: LossFn, params: Sequence[Tensor], vector: Sequence[Tensor]) -> list[Tensor]:
    """The Hessian-vector product H v of ``loss_fn()`` at the current ``params``, by double backward.

    H v = d/dθ (∇L(θ) · v): one backward pass that keeps its own graph
    (``create_graph=True``), one dot product with the constant ``vector``, and a
    second backward pass through the first. Cost: about two gradients; memory:
    the first backward's graph.

    Introduced in: Appendix A, Matrix calculus.
    """
    params = _check(params, vector)
    grads = torch.autograd.grad(_scalar_loss(loss_fn), params, create_graph=True)  # ∇L, still differentiable
    product = dot(grads, [v.detach() for v in vector])  # ∇L · v, a scalar
    return [h.detach() for h in torch.autograd.grad(product, params, allow_unused=False)]


def finite_difference_hvp(
    loss_fn: LossFn, params: Sequence[Tensor], vector: Sequence[Tensor], eps: float = 1e-3
) -> list[Tensor]:
    """H v from gradients only: (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, a check for :func:`hvp`.

    The central difference has an error of order ε² times the third derivative,
    plus rounding of order (float precision) / ε. ``params`` are moved and put back.

    Introduced in: Appendix A, Matrix calculus.
    """
    params = _check(params, vector)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")

    def gradient_at(step: float) -> list[Tensor]:
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=step)
        try:
            return [g.detach() for g in torch.autograd.grad(_scalar_loss(loss_fn), params)]
        finally:
            with torch.no_grad():
                for p, v in zip(params, vector):
                    p.sub_(v, alpha=step)

    plus, minus = gradient_at(eps), gradient_at(-eps)
    return [(a - b) / (2 * eps) for a, b in zip(plus, minus)]


def power_iteration(
    loss_fn: LossFn,
    params: Sequence[Tensor],
    iterations: int = 20,
    seed: int = 0,
    start: Sequence[Tensor] | None = None,
) -> PowerIteration:
    """The Hessian eigenvalue of largest magnitude, by power iteration on :func:`hvp`.

    Starts from a random unit vector (``seed``) or from ``start``; each iteration
    computes w = H v, records the Rayleigh quotient v · w and sets v = w / |w|.
    The estimate converges at the rate |λ₂ / λ₁| per iteration. At a trained
    model's weights the largest-magnitude eigenvalue is usually the largest
    positive one, the λ_max of the 2 / λ_max step-size bound.

    Introduced in: Appendix A, Matrix calculus.
    """
    if not isinstance(iterations, int) or iterations <= 0:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    params = _check(params, start)
    if start is None:
        generator = torch.Generator().manual_seed(seed)
        v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    else:
        v = [s.detach().clone() for s in start]
    norm = dot(v, v).sqrt()
    if norm == 0:
        raise ValueError("start is the zero vector")
    v = [x / norm for x in v]
    history: list[float] = []
    for _ in range(iterations):
        w = hvp(loss_fn, params, v)  # H v
        history.append(float(dot(v, w)))  # Rayleigh quotient, |v| = 1
        norm = dot(w, w).sqrt()
        if norm == 0:  # v is in the null space: H v = 0, eigenvalue 0
            break
        v = [x / norm for x in w]
    return PowerIteration(history[-1], v, history)
