"""Does a language model remember its training data? Canaries, exposure and extraction.

**Canaries** (Carlini et al. 2019, "The Secret Sharer", USENIX Security). Put a
made-up secret such as "my PIN is 0427" into the training text a few times,
train, and ask how the model ranks the true secret among every possible one.
With ``digits`` digits the candidate space R holds all 10**digits fillings.
The *exposure* of the canary is

    exposure = log2 |R| - log2 rank,

where rank 1 is the candidate the model finds most likely. A model that never
saw the secret ranks it anywhere (exposure about 1 bit, the median); a model
that memorised it ranks it first (exposure log2 |R|, about 13.3 bits for four
digits).

- :class:`Canary`, :func:`insert_canary`: make a secret and plant it in a corpus;
- :func:`sequence_log_likelihood`: log P(candidate tokens | prefix) for many
  candidates at once, in batches;
- :func:`candidate_log_likelihoods`: the same for whole texts (template filled
  with each candidate), tokenized as training saw them;
- :func:`canary_rank`, :func:`exposure`: the rank and exposure from scores;
- :func:`exposure_exact`: score every candidate of R (10**digits of them);
- :func:`extrapolated_exposure`, :func:`exposure_estimate`: the paper's shortcut
  for a space too large to enumerate, from a skew-normal fitted to a sample.

**Extraction** (Carlini et al. 2021, "Extracting Training Data from Large
Language Models", USENIX Security). Sample a lot of text from the model, rank
the samples by how sure the model is of them, and check the top of the list
against the training data:

- :func:`log_perplexity`: the mean negative log-likelihood per token, in nats;
- :func:`zlib_entropy`, :func:`zlib_ratio`: how compressible a text is, and the
  paper's ratio of model log-perplexity to zlib entropy (low = suspicious: the
  model is sure of a text that is not merely repetitive);
- :func:`rank_by_perplexity`, :func:`rank_by_zlib_ratio`: most suspicious first;
- :class:`VerbatimIndex`, :func:`verbatim_in`: does a sample share at least
  ``min_chars`` consecutive characters with the training text (exact, and quick
  on tens of megabytes);
- :func:`precision_at_k`: the share of the top k that really were memorised.

Scores are natural-log likelihoods (nats); exposures are in bits.

Introduced in: chapter 10, Ethics.
"""

from __future__ import annotations

import math
import numbers
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

MAX_DIGITS = 18  # 10**18 still fits numpy's int64, which draws the secrets
MAX_EXACT_CANDIDATES = 100_000  # exposure_exact scores at most this many fillings by default
_DIGITS = re.compile(r"[0-9]+")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_digits(digits) -> int:
    if not _is_int(digits) or not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be an integer from 1 to {MAX_DIGITS}, got {digits!r}")
    return int(digits)


def _check_secret(secret, digits: int) -> str:
    if not isinstance(secret, str) or not _DIGITS.fullmatch(secret) or len(secret) != digits:
        raise ValueError(f"secret must be a string of exactly {digits} digits 0-9, got {secret!r}")
    return secret


def _filling(value: int, digits: int) -> str:
    return f"{value:0{digits}d}"  # 7 -> "0007": every filling has the same length


# ----------------------------------------------------------------------------- canaries


@dataclass(frozen=True)
class Canary:
    """A sentence with a secret: ``template`` holds one ``{}`` where the digits go.

    ``Canary("my PIN is {}", "0427").text == "my PIN is 0427"``. The candidate
    space R is every filling of the template with ``digits`` digits (leading
    zeros kept), 10**digits of them.

    Introduced in: chapter 10, Ethics.
    """

    template: str  # e.g. "my PIN is {}"
    secret: str  # e.g. "0427"

    def __post_init__(self):
        if not isinstance(self.template, str) or self.template.count("{}") != 1:
            raise ValueError(f"template must contain exactly one '{{}}' for the secret, got {self.template!r}")
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError(f"secret must be a non-empty string of digits, got {self.secret!r}")
        _check_secret(self.secret, _check_digits(len(self.secret)))

    @classmethod
    def random(cls, template: str = "my PIN is {}", digits: int = 4,
               rng: np.random.Generator | int | None = None) -> Canary:
        """A canary whose secret is drawn uniformly from the 10**digits fillings.

        Introduced in: chapter 10, Ethics.
        """
        digits = _check_digits(digits)
        value = int(np.random.default_rng(rng).integers(0, 10**digits))
        return cls(template, _filling(value, digits))

    @property
    def digits(self) -> int:
        return len(self.secret)

    @property
    def space_size(self) -> int:
        """|R| = 10**digits."""
        return 10**self.digits

    @property
    def prefix(self) -> str:
        """The text before the secret ("my PIN is ")."""
        return self.template.split("{}")[0]

    @property
    def suffix(self) -> str:
        """The text after the secret ("" for "my PIN is {}")."""
        return self.template.split("{}")[1]

    @property
    def text(self) -> str:
        """The canary sentence with its true secret."""
        return self.fill(self.secret)

    def fill(self, secret: str) -> str:
        """The template with ``secret`` in place of ``{}``."""
        return self.prefix + secret + self.suffix


def insert_canary(texts: Sequence[str], canary_text: str, times: int,
                  rng: np.random.Generator | int | None = None) -> list[str]:
    """A new list: ``texts`` with ``canary_text`` added ``times`` times, each as its own document at a random place.

    ``times=0`` gives back a copy of ``texts``. The documents of ``texts`` keep
    their order; only the canaries are new.

    Introduced in: chapter 10, Ethics.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of strings (documents), not a single string")
    if not isinstance(canary_text, str) or not canary_text:
        raise ValueError(f"canary_text must be a non-empty string, got {canary_text!r}")
    if not _is_int(times) or times < 0:
        raise ValueError(f"times must be a non-negative integer, got {times!r}")
    rng = np.random.default_rng(rng)
    out = list(texts)
    for _ in range(times):
        out.insert(int(rng.integers(0, len(out) + 1)), canary_text)
    return out


# ----------------------------------------------------------------------------- scoring candidates


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return getattr(out, "logits", out)  # the course GPT returns GPTOutput(logits, ...); a plain model, a tensor


def _as_id_lists(candidate_ids) -> list[list[int]]:
    if isinstance(candidate_ids, (np.ndarray, torch.Tensor)):
        if candidate_ids.ndim != 2:
            raise ValueError(
                f"candidate_ids must be (N, L) or a list of id lists, got shape {tuple(candidate_ids.shape)}")
        rows = [list(map(int, row)) for row in candidate_ids.tolist()]
    else:
        rows = [list(map(int, c)) for c in candidate_ids]
    if not rows:
        raise ValueError("candidate_ids is empty: give at least one candidate")
    if any(len(r) == 0 for r in rows):
        raise ValueError("every candidate in candidate_ids needs at least one token")
    return rows


def sequence_log_likelihood(model: nn.Module, ids_prefix: Sequence[int], candidate_ids,
                            batch_size: int = 256) -> np.ndarray:
    """log P(candidate tokens | prefix) under a causal LM, one number per candidate, in nats.

    Every candidate follows the same ``ids_prefix`` (at least one token: the first
    candidate token needs something to be predicted from). ``candidate_ids`` is a
    (N, L) array or a list of id lists; candidates of different lengths are padded
    on the right, and the padding is masked out, which a causal model cannot see
    from earlier positions anyway. Rows are scored ``batch_size`` at a time, without
    gradients, on the model's device, in eval mode (the model's mode is restored).

    Introduced in: chapter 10, Ethics.
    """
    prefix = [int(i) for i in ids_prefix]
    if not prefix:
        raise ValueError("ids_prefix must hold at least one token (the context the first candidate token follows)")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    rows = _as_id_lists(candidate_ids)
    device, was_training = _device(model), model.training
    model.eval()
    scores = []
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                scores.append(_score_batch(model, prefix, rows[start : start + batch_size], device))
    finally:
        model.train(was_training)
    return np.concatenate(scores)


def _score_batch(model: nn.Module, prefix: list[int], rows: list[list[int]], device: torch.device) -> np.ndarray:
    P, L = len(prefix), max(len(r) for r in rows)
    ids = torch.zeros(len(rows), P + L, dtype=torch.long)  # (B, P + L), right-padded with id 0
    ids[:, :P] = torch.tensor(prefix)
    mask = torch.zeros(len(rows), L, dtype=torch.bool)  # (B, L): True on real candidate tokens
    for b, r in enumerate(rows):
        ids[b, P : P + len(r)] = torch.tensor(r)
        mask[b, : len(r)] = True
    ids, mask = ids.to(device), mask.to(device)
    logits = _logits(model, ids[:, :-1])[:, P - 1 :]  # (B, L, V): the positions that predict candidate tokens
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    picked = logp.gather(-1, ids[:, P:, None]).squeeze(-1)  # (B, L)
    return (picked * mask).sum(dim=1).double().cpu().numpy()  # (B,)


def log_perplexity(model: nn.Module, ids: Sequence[int]) -> float:
    """Mean negative log-likelihood per predicted token of one sequence, in nats (the first token is context).

    Introduced in: chapter 10, Ethics.
    """
    ids = [int(i) for i in ids]
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least two tokens (one to predict from, one to predict), got {len(ids)}")
    return -float(sequence_log_likelihood(model, ids[:1], [ids[1:]])[0]) / (len(ids) - 1)


# ----------------------------------------------------------------------------- exposure


def _scores(values, name: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of scores, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"{name} contains NaN")
    return s


def canary_rank(canary_score: float, candidate_scores) -> int:
    """1 + the number of candidates scoring strictly higher than the canary.

    ``candidate_scores`` are the scores (log-likelihoods, higher = more likely) of
    the whole candidate space R, the canary's own score included. Ties do not
    push the canary down: candidates that score exactly as high as the canary
    share its rank, so the most likely candidate has rank 1 however many tie.

    Introduced in: chapter 10, Ethics.
    """
    s = _scores(candidate_scores, "candidate_scores")
    if not np.any(s == canary_score):
        raise ValueError(
            f"candidate_scores must be the scores of all of R, the canary's own included; "
            f"canary_score={canary_score!r} is not among them")
    return 1 + int(np.count_nonzero(s > canary_score))


def exposure(canary_score: float, candidate_scores) -> float:
    """Exposure in bits: log2 |R| - log2 rank, with |R| = len(candidate_scores).

    The canary ranked first has exposure log2 |R|; ranked last (rank |R|), 0.
    Ranks follow :func:`canary_rank`: 1 + the candidates scoring strictly higher.

    Introduced in: chapter 10, Ethics.
    """
    s = _scores(candidate_scores, "candidate_scores")
    return math.log2(s.size) - math.log2(canary_rank(canary_score, s))


def extrapolated_exposure(canary_score: float, sample_scores) -> float:
    """Estimated exposure in bits: -log2 P(score >= canary_score), with P a skew-normal fitted to ``sample_scores``.

    Carlini et al. (2019, section 4.3) observe that the scores of random candidates
    are close to skew-normal, fit one to a sample, and read the canary's rank off
    its tail instead of scoring all of R. The exact exposure is -log2(rank / |R|),
    and rank / |R| is the share of R that scores at least as high as the canary:
    the same quantity, estimated. Unlike the exact value it is not capped at
    log2 |R|, and it is only as good as the fit in the far tail.

    Introduced in: chapter 10, Ethics.
    """
    s = _scores(sample_scores, "sample_scores")
    if s.size < 10 or np.ptp(s) == 0:
        raise ValueError("sample_scores needs at least 10 scores that are not all equal to fit a skew-normal")
    shape, loc, scale = stats.skewnorm.fit(s)
    return float(-stats.skewnorm.logsf(canary_score, shape, loc, scale) / math.log(2))


def candidate_log_likelihoods(model: nn.Module, tokenize: Callable[[str], Sequence[int]], prefix: str,
                              fillings: Sequence[str], suffix: str = "", batch_size: int = 256) -> np.ndarray:
    """log-likelihood (nats) of ``prefix + filling + suffix`` for each filling, up to a constant shared by all.

    Each full text is tokenized (so that the tokens are those training saw: a BPE
    may glue the space before the digits to them); the tokens every candidate
    shares at the start are the context, and the rest is scored with
    :func:`sequence_log_likelihood`. The shared part adds the same log-probability
    to every candidate, so the ranking is that of the whole sequences.

    Introduced in: chapter 10, Ethics.
    """
    rows = [list(tokenize(prefix + f + suffix)) for f in fillings]
    if len(set(map(tuple, rows))) != len(rows):
        raise ValueError(
            "tokenize maps different candidates to the same ids (are the digits unknown to the tokenizer?)")
    shared = min(len(r) for r in rows) - 1  # leave every candidate at least one token to score
    first = rows[0]
    for r in rows[1:]:
        shared = min(shared, next((i for i, (a, b) in enumerate(zip(first, r)) if a != b), shared))
    if shared < 1:
        raise ValueError(f"prefix={prefix!r} must tokenize to at least one token that every candidate starts with")
    return sequence_log_likelihood(model, first[:shared], [r[shared:] for r in rows], batch_size)


def exposure_exact(model: nn.Module, tokenize: Callable[[str], Sequence[int]], prefix: str, secret: str,
                   digits: int, *, suffix: str = "", max_candidates: int = MAX_EXACT_CANDIDATES,
                   batch_size: int = 256) -> float:
    """Exact exposure (bits) of ``prefix + secret + suffix``: every one of the 10**digits candidates is scored.

    Use it when 10**digits is small enough to enumerate (at most ``max_candidates``,
    100,000 by default); for more digits use :func:`exposure_estimate`.

    Introduced in: chapter 10, Ethics.
    """
    digits = _check_digits(digits)
    secret = _check_secret(secret, digits)
    if 10**digits > max_candidates:
        raise ValueError(
            f"digits={digits} gives 10**{digits} candidates, more than max_candidates={max_candidates}: "
            f"use fewer digits, raise max_candidates, or estimate with exposure_estimate")
    fillings = [_filling(v, digits) for v in range(10**digits)]
    scores = candidate_log_likelihoods(model, tokenize, prefix, fillings, suffix, batch_size)
    return exposure(scores[int(secret)], scores)


def exposure_estimate(model: nn.Module, tokenize: Callable[[str], Sequence[int]], prefix: str, secret: str,
                      digits: int, *, suffix: str = "", samples: int = 5_000,
                      rng: np.random.Generator | int | None = 0, batch_size: int = 256) -> float:
    """Estimated exposure (bits): :func:`extrapolated_exposure` over ``samples`` random candidates.

    The candidates are drawn uniformly from the 10**digits fillings (with
    replacement); the canary is scored in the same batches. This is the estimate
    of Carlini et al. (2019) for spaces too big for :func:`exposure_exact`.

    Introduced in: chapter 10, Ethics.
    """
    digits = _check_digits(digits)
    secret = _check_secret(secret, digits)
    if not _is_int(samples) or samples < 10:
        raise ValueError(f"samples must be an integer >= 10, got {samples!r}")
    drawn = np.random.default_rng(rng).integers(0, 10**digits, size=samples)
    fillings = [secret] + [_filling(int(v), digits) for v in drawn]
    scores = _scores_allowing_repeats(model, tokenize, prefix, fillings, suffix, batch_size)
    return extrapolated_exposure(scores[0], scores[1:])


def _scores_allowing_repeats(model, tokenize, prefix, fillings, suffix, batch_size) -> np.ndarray:
    # a sample drawn with replacement may repeat a filling: score each distinct one once
    distinct = list(dict.fromkeys(fillings))
    scores = candidate_log_likelihoods(model, tokenize, prefix, distinct, suffix, batch_size)
    lookup = dict(zip(distinct, scores))
    return np.array([lookup[f] for f in fillings])


# ----------------------------------------------------------------------------- extraction


def zlib_entropy(text: str) -> int:
    """Length in **bytes** of ``text`` (UTF-8) compressed by zlib: a cheap measure of how much it says.

    Bytes, as in the authors' released code (times 8 for bits; rankings do not change).

    Introduced in: chapter 10, Ethics.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return len(zlib.compress(text.encode("utf-8")))


def zlib_ratio(log_perplexity: float, text: str) -> float:
    """The model's log-perplexity of ``text`` (nats per token) over its zlib entropy (bytes).

    Carlini et al. (2021) flag samples that the model finds likely (low
    log-perplexity) although zlib finds them hard to compress: a low ratio is
    suspicious. Repetitive text ("the the the ...") is likely to both, and drops
    out.

    Introduced in: chapter 10, Ethics.
    """
    return float(log_perplexity) / zlib_entropy(text)


def _ranked(samples: Sequence[str], keys: np.ndarray) -> list[str]:
    if len(samples) != len(keys):
        raise ValueError(f"need one score per sample: {len(samples)} samples, {len(keys)} scores")
    if np.isnan(keys).any():
        raise ValueError("log_perplexities contains NaN")
    return [samples[i] for i in np.argsort(keys, kind="stable")]


def rank_by_perplexity(samples: Sequence[str], log_perplexities: Sequence[float]) -> list[str]:
    """The samples from lowest log-perplexity (the model is surest: most suspicious) to highest.

    Introduced in: chapter 10, Ethics.
    """
    return _ranked(samples, np.asarray(log_perplexities, dtype=np.float64))


def rank_by_zlib_ratio(samples: Sequence[str], log_perplexities: Sequence[float]) -> list[str]:
    """The samples from lowest :func:`zlib_ratio` (most suspicious) to highest.

    Introduced in: chapter 10, Ethics.
    """
    lp = np.asarray(log_perplexities, dtype=np.float64)
    if len(samples) != len(lp):
        raise ValueError(f"need one score per sample: {len(samples)} samples, {len(lp)} scores")
    return _ranked(samples, np.array([zlib_ratio(x, s) for x, s in zip(lp, samples)]))


class VerbatimIndex:
    """An index of a training text that answers "does this sample copy >= ``min_chars`` characters of it?".

    Every run of ``min_chars`` characters of the training text contains, starting
    at a position that is a multiple of s = ceil(min_chars / 2), a piece of
    k = min_chars - s + 1 characters. The index keeps a hash of the k-character
    piece at every such position (about 1.2M for 30 MB, built in about a second)
    in a sorted array; a query hashes every k-character piece of the sample, looks
    the hashes up, and confirms each hit by comparing the ``min_chars``-character
    windows themselves. The answer is exact: hash collisions are checked away.

    Introduced in: chapter 10, Ethics.
    """

    def __init__(self, training_text: str, min_chars: int = 50):
        if not isinstance(training_text, str):
            raise ValueError(f"training_text must be a string, got {type(training_text).__name__}")
        if not _is_int(min_chars) or min_chars < 1:
            raise ValueError(f"min_chars must be a positive integer, got {min_chars!r}")
        self.text, self.min_chars = training_text, int(min_chars)
        self.stride = (self.min_chars + 1) // 2
        self.piece = self.min_chars - self.stride + 1
        starts = range(0, len(training_text) - self.piece + 1, self.stride)
        hashes = np.fromiter((hash(training_text[q : q + self.piece]) for q in starts), np.int64, len(starts))
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]  # (M,) sorted
        self._starts = order.astype(np.int64) * self.stride  # (M,) where each piece starts in the text

    def __contains__(self, sample: str) -> bool:
        return self.longest_match_at_least(sample)

    def longest_match_at_least(self, sample: str) -> bool:
        """True when ``sample`` shares at least ``min_chars`` consecutive characters with the training text."""
        if not isinstance(sample, str):
            raise ValueError(f"sample must be a string, got {type(sample).__name__}")
        L, k, text = self.min_chars, self.piece, self.text
        if len(sample) < L:
            return False
        offsets = range(len(sample) - k + 1)
        queries = np.fromiter((hash(sample[i : i + k]) for i in offsets), np.int64, len(offsets))
        lo = np.searchsorted(self._hashes, queries, side="left")
        hi = np.searchsorted(self._hashes, queries, side="right")
        for i in np.flatnonzero(hi > lo):
            for q in self._starts[lo[i] : hi[i]]:
                q = int(q)
                for a in range(L - k + 1):  # the piece sits a characters into a window of L
                    j, p = int(i) - a, q - a
                    if j >= 0 and p >= 0 and j + L <= len(sample) and sample[j : j + L] == text[p : p + L]:
                        return True
        return False


def verbatim_in(sample: str, training_text: str | VerbatimIndex, min_chars: int = 50) -> bool:
    """True when some ``min_chars`` consecutive characters of ``sample`` occur in ``training_text``.

    ``training_text`` may be a :class:`VerbatimIndex` (build it once to check many
    samples against the same text: building takes about a second for 30 MB, a query
    a millisecond); a plain string is indexed on each call.

    Introduced in: chapter 10, Ethics.
    """
    if isinstance(training_text, VerbatimIndex):
        if training_text.min_chars != min_chars:
            raise ValueError(f"min_chars={min_chars} differs from the index's min_chars={training_text.min_chars}")
        return training_text.longest_match_at_least(sample)
    return VerbatimIndex(training_text, min_chars).longest_match_at_least(sample)


def precision_at_k(is_memorised_sorted: Sequence[bool], k: int) -> float:
    """The share of the first ``k`` ranked samples that were memorised (True).

    Introduced in: chapter 10, Ethics.
    """
    flags = np.asarray(is_memorised_sorted)
    if flags.ndim != 1 or flags.size == 0:
        raise ValueError("is_memorised_sorted must be a non-empty 1-D list of booleans")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError("is_memorised_sorted must hold booleans (or 0/1)")
    if not _is_int(k) or not 1 <= k <= flags.size:
        raise ValueError(f"k must be an integer from 1 to {flags.size} (the number of samples), got {k!r}")
    return float(np.mean(flags[:k].astype(bool)))
