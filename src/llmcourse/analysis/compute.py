"""How much arithmetic training takes, and how much of the hardware it used.

Training a model with N parameters on D tokens takes about 6 N D floating-point
operations: 2 N per token for the forward pass (a multiply and an add per
weight) and about twice that for the backward pass. Attention adds
12 x layers x width x context per token (its scores and weighted sums).

Model FLOPs utilisation (MFU) divides the FLOPs a run needed by what the
hardware could do at its peak in the same time: the usual yardstick of how well
a training run uses its GPUs.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

H100_BF16_PEAK = 989e12  # FLOP/s: H100 SXM, dense bf16 tensor cores (no sparsity)
SECONDS_PER_HOUR = 3_600.0


def training_flops(n_params: float, n_tokens: float) -> float:
    """The 6 N D rule: FLOPs to train ``n_params`` parameters on ``n_tokens`` tokens.

    Introduced in: the Pretraining chapter.
    """
    return 6.0 * n_params * n_tokens


def flops_per_token(n_params: int, n_layer: int, d_model: int, context: int) -> float:
    """Training FLOPs per token: 6 N for the weights plus 12 L d T for attention (PaLM's count).

    Introduced in: the Pretraining chapter.
    """
    return 6.0 * n_params + 12.0 * n_layer * d_model * context


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float = H100_BF16_PEAK) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the hardware's peak (0 to 1).

    Introduced in: the Pretraining chapter.
    """
    return tokens_per_second * flops_per_token / peak_flops


def energy_kwh(seconds: float, watts: float) -> float:
    """Energy of ``seconds`` of work at an average draw of ``watts``, in kilowatt-hours.

    Introduced in: the Pretraining chapter.
    """
    return watts * seconds / SECONDS_PER_HOUR / 1_000.0
