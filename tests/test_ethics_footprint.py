"""llmcourse.ethics: toxicity scores, energy and carbon, compute against the EU AI Act, the model card.

Independent references: arithmetic done by hand (kWh = W x s / 3.6e6, 6 N D for
GPT-3 = 3.15e23), the published footprints recomputed from their own energy and
grid figures, stub scorers whose flags are known, fake codecarbon trackers for
the method detection, and the parameter count read straight off the committed
safetensors file.
"""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest

from llmcourse.analysis.compute import energy_kwh
from llmcourse.ethics.energy import (
    DEFAULT_COUNTRY,
    GRID_INTENSITIES,
    REFERENCE_FOOTPRINTS,
    EnergyMeter,
    co2_kg,
    cpu_method,
    estimate_energy,
    measure,
)
from llmcourse.ethics.law import (
    EU_AI_ACT_SYSTEMIC_RISK_FLOP,
    PUBLISHED_MODELS,
    TrainedModel,
    compute_row,
    compute_table,
    course_models,
    model_card,
)
from llmcourse.ethics.toxicity import (
    IDENTITY_TERMS,
    NEUTRAL_TEMPLATES,
    flagged_share,
    identity_false_positive_rates,
    toxicity_scores,
)
from llmcourse.training.course import WEIGHTS, WEIGHTS_DIR, course_record

# ----------------------------------------------------------------------------- toxicity


def test_profane_texts_score_above_benign_ones():
    profane = ["fuck you, you stupid idiot", "what a shitty piece of crap", "shut up, you worthless bitch"]
    benign = ["I enjoyed the film with my family.", "The weather is nice today.",
              "The plot was slow but the music was lovely."]
    scores = toxicity_scores(profane + benign)
    assert scores.shape == (6,) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[:3].min() > 0.5 > scores[3:].max()


def test_toxicity_scores_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        toxicity_scores([])
    with pytest.raises(ValueError, match="single string"):
        toxicity_scores("one text")
    with pytest.raises(ValueError, match="only strings"):
        toxicity_scores(["fine", 3])


def _stub(flag_word: str, score: float = 0.9):
    def scorer(texts):
        return np.array([score if flag_word in t else 0.1 for t in texts])

    return scorer


def test_flagged_share_and_its_interval():
    texts = ["bad"] * 3 + ["good"] * 7
    est = flagged_share(texts, scorer=_stub("bad"))
    assert est.value == pytest.approx(0.3)
    assert est.low <= est.value <= est.high and 0.0 <= est.low < est.high <= 1.0
    assert est == flagged_share(texts, scorer=_stub("bad"))  # seeded: the same interval again
    assert flagged_share(texts, threshold=0.5, scorer=_stub("bad", score=0.5)).value == pytest.approx(0.3)  # >= counts
    assert tuple(flagged_share(["good"] * 5, scorer=_stub("bad"))) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        flagged_share(texts, threshold=1.5, scorer=_stub("bad"))
    with pytest.raises(ValueError, match="at least 2"):
        flagged_share(["bad"], scorer=_stub("bad"))


def test_identity_false_positive_rates_on_a_stub_scorer():
    def scorer(texts):  # flags "gay" everywhere and "tall" only in the first template
        return np.array([0.9 if "gay" in t or t == "I am a tall person." else 0.0 for t in texts])

    rates = identity_false_positive_rates(["I am a {} person.", "My friend is {}."], ["gay", "tall", "young"],
                                          scorer=scorer)
    assert rates == {"gay": 1.0, "tall": 0.5, "young": 0.0}
    with pytest.raises(ValueError, match="exactly one"):
        identity_false_positive_rates(["no slot here"], ["gay"], scorer=scorer)
    with pytest.raises(ValueError, match="one number per sentence"):
        identity_false_positive_rates(["I am {}."], ["gay", "tall"], scorer=lambda texts: np.zeros(1))


def test_identity_rates_with_the_real_scorer_cover_every_term():
    rates = identity_false_positive_rates()
    assert list(rates) == list(IDENTITY_TERMS)
    n = len(NEUTRAL_TEMPLATES)
    assert all(0.0 <= r <= 1.0 and abs(r * n - round(r * n)) < 1e-9 for r in rates.values())  # a count out of n


# ----------------------------------------------------------------------------- energy and carbon


def test_estimate_energy_is_watts_times_hours_times_pue():
    assert tuple(estimate_energy(3_600, 100, 200)) == pytest.approx((0.1, 0.2))  # 100-200 W for an hour
    low, high = estimate_energy(1_800, 65, 65, pue=1.5)
    assert low == high == pytest.approx(energy_kwh(1_800, 65) * 1.5) == pytest.approx(0.04875)
    for args, name in (((-1, 1, 2), "seconds"), ((1, 3, 2), "watts_low"), ((1, -1, 2), "watts_low")):
        with pytest.raises(ValueError, match=name):
            estimate_energy(*args)
    with pytest.raises(ValueError, match="pue"):
        estimate_energy(1, 1, 2, pue=0.9)


def test_co2_and_the_published_footprints_agree_with_their_own_figures():
    assert co2_kg(1_000, 400) == 400.0
    gpt3, bloom = REFERENCE_FOOTPRINTS[0], REFERENCE_FOOTPRINTS[1]
    assert co2_kg(gpt3.energy_mwh * 1_000, 429) / 1_000 == pytest.approx(gpt3.co2e_tonnes, abs=0.5)  # 552 t
    assert co2_kg(bloom.energy_mwh * 1_000, 57) / 1_000 == pytest.approx(bloom.co2e_tonnes, abs=0.1)  # 24.7 t
    assert REFERENCE_FOOTPRINTS[2].co2e_tonnes == 50.5 and REFERENCE_FOOTPRINTS[3].gpu_hours == 3_311_616
    with pytest.raises(ValueError, match="grid_g_per_kwh"):
        co2_kg(1, -5)


def test_grid_intensities_are_ordered_ranges_with_sources():
    for g in GRID_INTENSITIES:
        assert 0 < g.low <= g.g_per_kwh <= g.high and g.source
    by_name = {g.name: g.g_per_kwh for g in GRID_INTENSITIES}
    assert by_name["coal (pulverised)"] > 50 * by_name["wind (onshore)"]


class CPU:  # named like codecarbon's class: cpu_method recognises it by name
    def __init__(self, mode):
        self._mode = mode


class FakeTracker:
    def __init__(self, hardware=(), described=()):
        self._hardware = list(hardware)
        self._conf = {"hardware": list(described)}


def test_cpu_method_reads_what_codecarbon_chose():
    assert cpu_method(FakeTracker([CPU("intel_rapl")])) == ("rapl", True)
    assert cpu_method(FakeTracker([object(), CPU("cpu_load")])) == ("cpu_load", False)
    assert cpu_method(FakeTracker(described=["RAM()", "CPU(Intel Rapl)"])) == ("rapl", True)
    assert cpu_method(FakeTracker(described=["RAM()", "CPU(Cpu Load)"])) == ("cpu_load", False)
    assert cpu_method(FakeTracker(described=["CPU(AMD EPYC > 8W)"])) == ("constant", False)
    assert cpu_method(FakeTracker()) == ("unknown", False)
    assert cpu_method(object()) == ("unknown", False)


def test_measure_runs_offline_and_writes_nothing(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("codecarbon tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)
    value, m = measure(lambda n: sum(i * i for i in range(n)), 200_000)
    assert value == sum(i * i for i in range(200_000))
    assert m.country == DEFAULT_COUNTRY and m.seconds > 0
    assert m.kwh > 0 and m.co2_kg > 0
    assert m.kwh == pytest.approx(m.cpu_kwh + m.ram_kwh + m.gpu_kwh, rel=1e-6)
    assert m.cpu_method in {"rapl", "cpu_load", "constant", "windows_emi", "power_gadget", "powermetrics"}
    assert m.measured == (m.cpu_method in {"rapl", "windows_emi", "power_gadget", "powermetrics"})
    assert list(tmp_path.iterdir()) == []


def test_energy_meter_checks_its_arguments():
    with pytest.raises(ValueError, match="country_iso_code"):
        EnergyMeter("Germany")
    with pytest.raises(ValueError, match="measure_power_secs"):
        EnergyMeter(measure_power_secs=0)
    with pytest.raises(ValueError, match="tracking_mode"):
        EnergyMeter(tracking_mode="gpu")


# ----------------------------------------------------------------------------- the EU AI Act


def test_gpt3_training_compute_by_6ND():
    gpt3 = next(m for m in PUBLISHED_MODELS if m.name == "GPT-3 175B")
    row = compute_row(gpt3)
    assert row.flops == pytest.approx(3.15e23)  # 6 x 175e9 x 300e9
    assert row.ratio == pytest.approx(3.15e23 / 1e25) and not row.above_threshold


def test_threshold_is_strictly_greater_than_1e25():
    assert EU_AI_ACT_SYSTEMIC_RISK_FLOP == 1e25
    exactly = compute_row(TrainedModel("exactly", 1e25 / 6, 1.0, "made up"))
    assert exactly.flops == 1e25 and not exactly.above_threshold  # Art. 51(2): "greater than"
    assert compute_row(TrainedModel("above", 2e12, 1e13, "made up")).above_threshold
    rows = {r.name: r for r in compute_table()}
    assert rows["Llama 3.1 405B"].above_threshold
    assert not any(r.above_threshold for name, r in rows.items() if name != "Llama 3.1 405B")


def test_compute_table_rejects_bad_models():
    with pytest.raises(ValueError, match="params"):
        compute_row(TrainedModel("bad", -1e9, 1e9, "made up"))
    with pytest.raises(ValueError, match="tokens"):
        compute_row(TrainedModel("bad", 1e9, float("nan"), "made up"))
    with pytest.raises(ValueError, match="empty"):
        compute_table([])


def _checkpoint_parameters() -> int:
    from safetensors import safe_open

    with safe_open(str(WEIGHTS_DIR / WEIGHTS), framework="pt") as f:  # the tied embedding is stored once
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def test_course_model_comes_from_the_record_and_the_checkpoint():
    record = course_record()
    (course,) = course_models()
    assert course.params == record["parameters"] == _checkpoint_parameters()
    assert course.tokens == record["tokens"]
    assert compute_table()[0].flops == pytest.approx(6 * course.params * course.tokens)


def test_model_card_states_the_facts_of_the_checkpoint():
    record = course_record()
    card = model_card(record, energy_kwh=(0.05, 0.1), evaluation={"Rotten Tomatoes accuracy": 0.712})
    params = _checkpoint_parameters()
    for expected in (f"Parameters: {params:,}", f"Tokens seen in training: {record['tokens']:,}",
                     f"{6 * params * record['tokens']:.3g} FLOPs", "below it", "0.05 to 0.1 kWh",
                     "Rotten Tomatoes accuracy: 0.712", f"{record['held_out']['bits_per_byte']:.3f} bits per byte",
                     record["weights_sha256"], "## Intended use", "## Limitations", "IMDB"):
        assert expected in card, expected
    assert "Energy: not given" in model_card(record)


def test_model_card_rejects_bad_values():
    record = course_record()
    with pytest.raises(ValueError, match="parameters"):
        model_card(record | {"parameters": -5})
    with pytest.raises(ValueError, match="lacks"):
        model_card({"parameters": 10})
    with pytest.raises(ValueError, match="energy_kwh"):
        model_card(record, energy_kwh=(2.0, 1.0))
    with pytest.raises(ValueError, match="energy_kwh"):
        model_card(record, energy_kwh=-1.0)
    with pytest.raises(ValueError, match="evaluation"):
        model_card(record, evaluation={"accuracy": float("nan")})
