"""Ethics, measured: each module turns one concern into a number with an interval.

- ``bias``         WEAT / SEAT effect sizes with permutation p-values; counterfactual
                   gaps of a classifier on sentences that differ in one person term
- ``wordlists``    the published WEAT word lists and Equity-Evaluation-Corpus-style templates
- ``toxicity``     an offline toxicity classifier (``alt-profanity-check``), the share of
                   texts it flags, and its false positives on identity terms
- ``calibration``  reliability bins, expected calibration error, temperature scaling,
                   risk-coverage curves for abstaining when unsure
- ``privacy``      canaries and their exposure; ranking samples for a training-data
                   extraction attack and checking them against the training text
- ``energy``       energy and CO2 of a run: ``codecarbon``'s offline tracker and a
                   formula with stated power and grid-intensity ranges
- ``law``          training compute by 6ND against the EU AI Act's 10^25 FLOP threshold;
                   a model card from a real training record

Introduced in: chapter 10, Ethics.
"""

from llmcourse.ethics.bias import (
    CounterfactualGap,
    WEATResult,
    association,
    counterfactual_gap,
    counterfactual_pairs,
    effect_size,
    seat_sentences,
    seat_vectors,
    weat,
)
from llmcourse.ethics.calibration import (
    apply_temperature,
    area_under_risk_coverage,
    binary_confidence,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    risk_coverage,
)
from llmcourse.ethics.energy import EnergyMeter, co2_kg, estimate_energy, measure
from llmcourse.ethics.law import EU_AI_ACT_SYSTEMIC_RISK_FLOP, compute_table, model_card
from llmcourse.ethics.privacy import (
    Canary,
    exposure,
    exposure_estimate,
    exposure_exact,
    insert_canary,
    precision_at_k,
    rank_by_perplexity,
    rank_by_zlib_ratio,
    verbatim_in,
    zlib_entropy,
)
from llmcourse.ethics.toxicity import flagged_share, identity_false_positive_rates, toxicity_scores
