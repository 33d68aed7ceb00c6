"""Checks shared by the model configs: a nonsense value fails when the config is made,
with a message naming the field, not deep inside a forward pass.

Introduced in: the Transformer chapter.
"""

from __future__ import annotations

import dataclasses

# fields that, when present in a config, must be positive integers
POSITIVE_INTS = (
    "vocab_size", "block_size", "max_positions", "type_vocab_size",
    "n_layer", "n_encoder_layer", "n_decoder_layer", "n_head", "d_model", "d_ff",
)


def check_config(config) -> None:
    """Raise ``ValueError`` for a non-positive size, a bad dropout or heads that do not divide the width."""
    name = type(config).__name__
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for field in POSITIVE_INTS:
        value = values.get(field)
        if field not in values or (field == "d_ff" and value is None):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name}.{field} must be a positive integer, got {value!r}")
    dropout = values.get("dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {dropout!r}")
    if values["d_model"] % values["n_head"]:
        raise ValueError(
            f"{name}: d_model={values['d_model']} must be divisible by n_head={values['n_head']} "
            f"(each head gets d_model / n_head features)"
        )


class ModelConfig:
    """What every model config dataclass shares: checks when made, and the feed-forward width."""

    def __post_init__(self):
        check_config(self)

    @property
    def ff_width(self) -> int:
        """The feed-forward network's hidden width: ``d_ff``, or 4 * d_model when it is None."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model
