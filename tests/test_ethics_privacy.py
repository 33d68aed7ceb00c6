"""llmcourse.ethics.privacy: canaries and exposure (Carlini et al. 2019), extraction (Carlini et al. 2021).

Independent references: a hand-made "table" language model whose next-token
log-probabilities are read straight off a matrix, so every sequence
log-likelihood can be summed by hand; the GPT's own cross-entropy loss for
log-perplexity; brute-force window search for verbatim copies; exposures pinned
to numbers worked out from the definition (log2 |R| - log2 rank, rank = 1 + the
candidates scoring strictly higher).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from llmcourse.data import imdb_texts, tiny_corpus
from llmcourse.ethics.privacy import (
    Canary,
    VerbatimIndex,
    canary_rank,
    exposure,
    exposure_estimate,
    exposure_exact,
    extrapolated_exposure,
    insert_canary,
    log_perplexity,
    precision_at_k,
    rank_by_perplexity,
    rank_by_zlib_ratio,
    sequence_log_likelihood,
    verbatim_in,
    zlib_entropy,
    zlib_ratio,
)
from llmcourse.models import GPT, GPTConfig
from llmcourse.tokenizers import CharTokenizer

# ----------------------------------------------------------------------------- a model with known likelihoods

SPACE, X = 10, 11  # token ids: 0-9 are the digits


class TableLM(nn.Module):
    """The next token's logits depend on the last token alone: logits[b, t] = table[ids[b, t]]."""

    def __init__(self, vocab: int = 12, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]  # (B, T, V)

    def by_hand(self, prefix: list[int], candidate: list[int]) -> float:
        logp = torch.log_softmax(self.table.detach().double(), dim=-1)
        seq = prefix + candidate
        return sum(float(logp[seq[t - 1], seq[t]]) for t in range(len(prefix), len(seq)))


def digits_tokenize(text: str) -> list[int]:
    return [SPACE if c == " " else X if c == "x" else int(c) for c in text]


# ----------------------------------------------------------------------------- scoring


def test_sequence_log_likelihood_matches_a_hand_sum_for_mixed_lengths():
    model = TableLM(seed=1)
    prefix = [X, SPACE]
    candidates = [[3], [0, 4, 2, 7], [9, 9], [1, 2, 3, 4, 5, 6]]
    got = sequence_log_likelihood(model, prefix, candidates, batch_size=3)
    want = [model.by_hand(prefix, c) for c in candidates]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == np.float64 and got.shape == (4,)


def test_batched_scores_equal_one_at_a_time_on_a_gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=20, block_size=16))
    prefix = [5, 6, 7]
    rng = np.random.default_rng(0)
    candidates = [list(rng.integers(0, 20, size=int(n))) for n in rng.integers(1, 6, size=37)]
    batched = sequence_log_likelihood(model, prefix, candidates, batch_size=16)
    for c, score in zip(candidates, batched):
        ids = torch.tensor([prefix + c])  # (1, P + L), no padding at all
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits.double(), dim=-1)[0]  # (P + L, V)
        alone = sum(float(logp[t - 1, ids[0, t]]) for t in range(len(prefix), ids.shape[1]))
        assert score == pytest.approx(alone, abs=1e-4)
    assert sequence_log_likelihood(model, prefix, np.array(candidates[:1])) == pytest.approx(batched[:1], abs=1e-5)


def test_scoring_restores_the_training_mode_and_checks_its_arguments():
    model = TableLM().train()
    sequence_log_likelihood(model, [X], [[1]])
    assert model.training
    with pytest.raises(ValueError, match="ids_prefix"):
        sequence_log_likelihood(model, [], [[1]])
    with pytest.raises(ValueError, match="candidate_ids is empty"):
        sequence_log_likelihood(model, [X], [])
    with pytest.raises(ValueError, match="at least one token"):
        sequence_log_likelihood(model, [X], [[1], []])
    with pytest.raises(ValueError, match="batch_size"):
        sequence_log_likelihood(model, [X], [[1]], batch_size=0)


def test_log_perplexity_is_the_gpts_own_loss():
    torch.manual_seed(1)
    model = GPT(GPTConfig.tiny(vocab_size=30, block_size=16)).eval()
    ids = torch.randint(0, 30, (12,))
    loss = model(ids[None, :-1], ids[None, 1:]).loss.item()
    assert log_perplexity(model, ids.tolist()) == pytest.approx(loss, abs=1e-5)
    with pytest.raises(ValueError, match="at least two tokens"):
        log_perplexity(model, [3])


# ----------------------------------------------------------------------------- rank and exposure


def test_exposure_of_the_best_candidate_is_log2_R_and_of_the_worst_zero():
    scores = np.random.default_rng(0).normal(size=1_000)
    assert exposure(scores.max(), scores) == pytest.approx(math.log2(1_000))
    assert exposure(scores.min(), scores) == 0.0
    assert canary_rank(scores.min(), scores) == 1_000


def test_the_convention_is_pinned_base_2_and_rank_from_one():
    scores = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]  # |R| = 8
    # the second best: rank 2, exposure log2 8 - log2 2 = 2 bits exactly
    # (natural logs would give 1.386; counting rank from 0 would give 3)
    assert canary_rank(-2.0, scores) == 2
    assert exposure(-2.0, scores) == 2.0


def test_ties_do_not_push_the_canary_down():
    scores = [3.0, 3.0, 3.0, 1.0]
    assert canary_rank(3.0, scores) == 1
    assert exposure(3.0, scores) == 2.0
    assert canary_rank(1.0, scores) == 4  # three strictly higher
    assert exposure(1.0, [5.0, 1.0, 1.0, 0.0]) == pytest.approx(2.0 - 1.0)  # rank 2: one strictly higher


def test_candidate_scores_must_include_the_canary():
    with pytest.raises(ValueError, match="canary's own"):
        exposure(0.5, [1.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        exposure(1.0, [1.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        exposure(1.0, [])


def test_exposure_exact_finds_the_models_favourite_and_its_least_favourite():
    model = TableLM(seed=2)
    fillings = [f"{v:02d}" for v in range(100)]
    hand = [model.by_hand([X, SPACE], digits_tokenize(f)) for f in fillings]
    best, worst = fillings[int(np.argmax(hand))], fillings[int(np.argmin(hand))]
    assert exposure_exact(model, digits_tokenize, "x ", best, 2) == pytest.approx(math.log2(100))
    assert exposure_exact(model, digits_tokenize, "x ", worst, 2) == 0.0
    middle = fillings[int(np.argsort(hand)[::-1][9])]  # the 10th most likely
    assert exposure_exact(model, digits_tokenize, "x ", middle, 2) == pytest.approx(math.log2(100 / 10))


def test_exposure_exact_refuses_what_it_cannot_do():
    model = TableLM()
    with pytest.raises(ValueError, match="exposure_estimate"):
        exposure_exact(model, digits_tokenize, "x ", "123456", 6)
    with pytest.raises(ValueError, match="exactly 3 digits"):
        exposure_exact(model, digits_tokenize, "x ", "12", 3)
    with pytest.raises(ValueError, match="digits"):
        exposure_exact(model, digits_tokenize, "x ", "1", 0)
    with pytest.raises(ValueError, match="same ids"):
        exposure_exact(model, lambda s: [X] * len(s), "x ", "12", 2)  # a tokenizer blind to digits


def test_the_skew_normal_estimate_is_close_to_the_exact_exposure():
    rng = np.random.default_rng(0)
    space = stats.skewnorm.rvs(-4, loc=-20, scale=3, size=100_000, random_state=rng)  # |R| = 100,000
    ranked = np.sort(space)[::-1]
    sample = rng.choice(space, 5_000, replace=False)
    for rank, tolerance in ((100, 1.0), (1_000, 0.5), (10_000, 0.3)):
        canary = ranked[rank - 1]
        exact = exposure(canary, space)
        assert exact == pytest.approx(math.log2(100_000 / rank))
        assert abs(extrapolated_exposure(canary, sample) - exact) < tolerance
    with pytest.raises(ValueError, match="at least 10"):
        extrapolated_exposure(0.0, [1.0] * 20)


def test_exposure_estimate_agrees_with_the_exact_value_on_a_table_model():
    model = TableLM(seed=1)
    for secret in ("0427", "9999"):
        exact = exposure_exact(model, digits_tokenize, "x ", secret, 4)
        estimate = exposure_estimate(model, digits_tokenize, "x ", secret, 4, samples=2_000, rng=0)
        assert abs(estimate - exact) < 0.5


# ----------------------------------------------------------------------------- canaries


def test_canary_parts_and_random_secrets():
    c = Canary("my PIN is {}.", "0042")
    assert (c.prefix, c.suffix, c.text, c.digits, c.space_size) == ("my PIN is ", ".", "my PIN is 0042.", 4, 10_000)
    a, b = Canary.random(digits=6, rng=3), Canary.random(digits=6, rng=3)
    assert a == b and len(a.secret) == 6 and a.secret.isdigit()
    secrets = {Canary.random(digits=1, rng=np.random.default_rng(s)).secret for s in range(60)}
    assert secrets == set("0123456789")  # every digit can come out, leading zeros kept
    with pytest.raises(ValueError, match="exactly one"):
        Canary("no slot", "12")
    with pytest.raises(ValueError, match="digits"):
        Canary("PIN {}", "12a")


def test_insert_canary_adds_exactly_times_copies_and_keeps_the_rest_in_order():
    docs = [f"document {i}" for i in range(30)]
    out = insert_canary(docs, "my PIN is 1234", 7, rng=0)
    assert out.count("my PIN is 1234") == 7 and len(out) == 37
    assert [d for d in out if d != "my PIN is 1234"] == docs
    assert out == insert_canary(docs, "my PIN is 1234", 7, rng=0)  # the same seed, the same places
    assert insert_canary(docs, "x", 200, rng=1).index("x") < 30  # the canaries are spread, not appended
    unchanged = insert_canary(docs, "my PIN is 1234", 0, rng=0)
    assert unchanged == docs and unchanged is not docs
    with pytest.raises(ValueError, match="times"):
        insert_canary(docs, "x", -1, rng=0)
    with pytest.raises(ValueError, match="list of strings"):
        insert_canary("one long text", "x", 1, rng=0)


def _train_char_gpt(texts: list[str], tokenizer: CharTokenizer, steps: int, seed: int) -> GPT:
    torch.manual_seed(seed)
    stream = torch.tensor([i for t in texts for i in tokenizer.encode(t + "\n")])
    model = GPT(GPTConfig.tiny(vocab_size=tokenizer.vocab_size, block_size=32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - 33, (16,), generator=g)
        x = torch.stack([stream[s : s + 32] for s in starts])  # (16, 32)
        y = torch.stack([stream[s + 1 : s + 33] for s in starts])  # (16, 32) shifted by one
        loss = model(x, y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_a_canary_seen_in_training_is_exposed_and_an_unseen_one_is_not():
    # Measured for seeds 0-4 at 60 steps: without the canary 0.2-1.3 bits, with 20 copies 9.97 (= log2 1000).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        docs = tiny_corpus().splitlines() * 4
        tokenizer = CharTokenizer.train(tiny_corpus() + "0123456789 my PIN is\n")
        canary = Canary.random("my PIN is {}", 3, rng=0)
        exposures = []
        for times in (0, 20):
            model = _train_char_gpt(insert_canary(docs, canary.text, times, rng=0), tokenizer, steps=60, seed=0)
            exposures.append(exposure_exact(model, tokenizer.encode, canary.prefix, canary.secret, canary.digits))
    finally:
        torch.set_num_threads(threads)
    unseen, seen = exposures
    assert seen > 8.0 and unseen < 4.0


# ----------------------------------------------------------------------------- extraction


def test_zlib_entropy_and_ratio():
    repetitive, varied = "the " * 50, "".join(np.random.default_rng(0).choice(list("abcdefghij klmnop"), 200))
    assert zlib_entropy(repetitive) < zlib_entropy(varied)
    assert zlib_entropy("abc") == len(__import__("zlib").compress(b"abc"))  # bytes, not bits
    assert zlib_ratio(2.0, varied) == pytest.approx(2.0 / zlib_entropy(varied))


def test_rankings_put_the_most_suspicious_first():
    samples = ["a varied sentence about films", "the the the the the the the the the the", "plain text"]
    assert rank_by_perplexity(samples, [1.0, 0.5, 3.0]) == [samples[1], samples[0], samples[2]]
    # equal log-perplexity: the repetitive sample compresses well, so its ratio is higher and it drops back
    by_zlib = rank_by_zlib_ratio(samples[:2], [1.0, 1.0])
    assert by_zlib == [samples[0], samples[1]]
    with pytest.raises(ValueError, match="one score per sample"):
        rank_by_perplexity(samples, [1.0])


def _brute_force_copies(sample: str, text: str, min_chars: int) -> bool:
    return any(sample[j : j + min_chars] in text for j in range(len(sample) - min_chars + 1))


def test_verbatim_in_finds_copies_of_at_least_min_chars():
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), 20_000))
    copied = text[5_000:5_050]  # exactly 50 characters
    assert verbatim_in("zz" + copied + "zz", text)
    assert not verbatim_in("zz" + copied[:49] + "zz", text)  # one character short
    assert not verbatim_in("completely new words that never appeared in the text, zz", text)
    assert not verbatim_in("short", text)
    index = VerbatimIndex(text, min_chars=50)
    assert verbatim_in(copied, index) and copied in index
    with pytest.raises(ValueError, match="min_chars"):
        verbatim_in(copied, index, min_chars=40)


def test_verbatim_index_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    text = "".join(rng.choice(list("ab"), 3_000))  # a two-letter alphabet: many partial matches
    for min_chars in (1, 2, 7, 12, 13):
        index = VerbatimIndex(text, min_chars)
        for _ in range(40):
            n = int(rng.integers(0, 40))
            sample = "".join(rng.choice(list("abc"), n, p=[0.45, 0.45, 0.1]))
            assert (sample in index) == _brute_force_copies(sample, text, min_chars), (min_chars, sample)


def test_verbatim_index_on_the_imdb_training_text():
    text = "\n".join(imdb_texts("train"))  # about 29 MB
    index = VerbatimIndex(text)
    excerpt = text[12_345_678 : 12_345_878]
    assert ("Some new words first. " + excerpt[:60] + " and new words after.") in index
    words = excerpt.split()
    assert " ".join(reversed(words)) not in index


def test_precision_at_k():
    flags = [True, False, True, True]
    assert precision_at_k(flags, 2) == 0.5
    assert precision_at_k(flags, 4) == 0.75
    assert precision_at_k([1, 0, 0], 1) == 1.0
    for k in (0, 5, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            precision_at_k(flags, k)
