"""Loss curves of training runs.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from llmcourse.training.trainer import History


def plot_loss_curves(
    histories: Mapping[str, History], vocab_size: int | None = None, width: float = 5.0
) -> Figure:
    """One panel per run: the loss of every training batch (thin) and each evaluation (dots), per step.

    With ``vocab_size``, a dotted line marks ln V, the loss of a uniform guess. The
    panels share their y axis, so runs of different objectives can be read side by side.

    Introduced in: the Pretraining chapter.
    """
    if not histories:
        raise ValueError("plot_loss_curves needs at least one history")
    fig, axes = plt.subplots(1, len(histories), figsize=(width * len(histories), 3.4), sharey=True, squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        ax.plot(history.step, history.train_loss, lw=0.8, alpha=0.6, label="training batches")
        ax.plot(history.eval_step, history.val_loss, "o-", label="validation")
        if vocab_size is not None:
            ax.axhline(math.log(vocab_size), color="grey", ls=":", lw=1, label="uniform guess")
        ax.set(title=name, xlabel="optimizer step")
        ax.legend()
    axes[0][0].set_ylabel("cross-entropy (nats per token)")
    fig.tight_layout()
    return fig
