"""Decoding: turning a language model's next-token logits into text, one token at a time.

A GPT returns, for the last position, one logit per vocabulary entry. Decoding picks
the next token from them, appends it, and asks again:

- **greedy** (``temperature=0``): always the most probable token;
- **temperature**: divide the logits by T before the softmax; T < 1 sharpens the
  distribution, T > 1 flattens it;
- **top-k**: sample only among the k most probable tokens;
- **top-p** (nucleus): sample only among the fewest most probable tokens whose
  probabilities add up to p.

Filters set the logits of removed tokens to -inf, so that the softmax gives them
probability exactly 0 and renormalises the rest. With a :class:`~llmcourse.nn.KVCache`
each step feeds the model one new token instead of the whole sequence.

Introduced in: the Generation chapter.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor

from llmcourse.nn.attention import KVCache

# ----------------------------------------------------------------------------- argument checks


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_temperature(temperature, allow_zero: bool) -> float:
    valid = _is_real(temperature) and math.isfinite(temperature)
    if not (valid and (temperature > 0 or (allow_zero and temperature == 0))):
        need = ">= 0 (0 means greedy decoding)" if allow_zero else "> 0 (generate treats 0 as greedy decoding)"
        raise ValueError(f"temperature must be a finite number {need}, got {temperature!r}")
    return float(temperature)


def _check_top_k(k) -> int:
    if not _is_int(k) or k <= 0:
        raise ValueError(f"top-k needs a positive integer k, got {k!r}")
    return int(k)


def _check_top_p(p) -> float:
    if not _is_real(p) or not 0.0 < p <= 1.0:
        raise ValueError(f"top-p needs p in (0, 1], got {p!r}")
    return float(p)


# ----------------------------------------------------------------------------- reshaping a distribution


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature: (..., V) -> (..., V).

    softmax(logits / T) is sharper than softmax(logits) for T < 1 (T -> 0 tends to
    the argmax) and flatter for T > 1 (T -> inf tends to uniform). ``temperature``
    must be a positive, finite number; :func:`generate` treats 0 as greedy decoding.

    Introduced in: the Generation chapter.
    """
    return logits / _check_temperature(temperature, allow_zero=False)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row, set the others to -inf: (..., V) -> (..., V).

    Ties: every logit equal to the k-th largest is kept, so more than k tokens may
    survive (as in nanoGPT and Hugging Face). ``k >= V`` keeps everything.

    Introduced in: the Generation chapter.
    """
    k = _check_top_k(k)
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest of each row
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the most probable tokens whose probabilities reach p: (..., V) -> (..., V).

    Token j is kept iff the total probability of the tokens strictly more probable
    than j is < p. So the smallest set of most probable tokens whose mass reaches p
    is kept, with any tokens tied with the last one; the most probable token is
    always kept. ``p`` is in (0, 1]; ``p == 1`` keeps every token (and returns the
    logits unchanged, so that no round-off in a sum can drop a tiny probability).

    Introduced in: the Generation chapter.
    """
    p = _check_top_p(p)
    if p == 1.0:
        return logits
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # sums of half-precision probabilities drift
    sorted_probs = torch.softmax(sorted_logits, dim=-1, dtype=dtype)  # (..., V) most probable first
    cumulative = sorted_probs.cumsum(dim=-1)  # (..., V) nondecreasing
    ahead = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)  # mass before each
    n_keep = (ahead < p).sum(dim=-1, keepdim=True)  # (..., 1) >= 1: nothing is ahead of the first
    threshold = sorted_logits.gather(-1, n_keep - 1)  # (..., 1) the logit of the last token kept
    return logits.masked_fill(logits < threshold, float("-inf"))  # ties with the last one are kept


def next_token_probs(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """The distribution the next token is drawn from: (..., V) logits -> (..., V) probabilities.

    Temperature first, then top-k, then top-p (the order of Hugging Face's
    ``generate``), then a softmax over the tokens left: the kept probabilities are
    renormalised to sum to 1. ``temperature=0`` gives the one-hot distribution of
    greedy decoding (the argmax; ties go to the lowest token id).

    Introduced in: the Generation chapter.
    """
    temperature = _check_temperature(temperature, allow_zero=True)
    top_k = None if top_k is None else _check_top_k(top_k)
    top_p = None if top_p is None else _check_top_p(top_p)
    if temperature == 0.0:
        greedy = logits.argmax(dim=-1, keepdim=True)  # (..., 1)
        return torch.zeros_like(logits).scatter_(-1, greedy, 1.0)  # (..., V) one-hot
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


# ----------------------------------------------------------------------------- decoding loop


def _check_prompt(prompt, vocab_size: int) -> Tensor:
    if not isinstance(prompt, Tensor):
        raise TypeError(f"prompt must be a tensor of token ids, got {type(prompt).__name__}")
    if prompt.dtype == torch.bool or prompt.is_floating_point() or prompt.is_complex():
        raise TypeError(f"prompt must hold integer token ids, got dtype {prompt.dtype}")
    if prompt.dim() not in (1, 2):
        raise ValueError(f"prompt must have shape (T,) or (B, T), got {tuple(prompt.shape)}")
    if prompt.numel() == 0:
        raise ValueError(f"prompt is empty (shape {tuple(prompt.shape)}): give at least one token to continue")
    low, high = int(prompt.min()), int(prompt.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"prompt ids must be in [0, {vocab_size}), got ids from {low} to {high}")
    return prompt


def _check_stop_tokens(stop_tokens, vocab_size: int) -> list[int]:
    if _is_int(stop_tokens):
        stop_tokens = (stop_tokens,)
    if not isinstance(stop_tokens, Iterable):
        raise TypeError(f"stop_tokens must be token ids, got {stop_tokens!r}")
    stops = [int(t) for t in stop_tokens]
    bad = [t for t in stops if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"stop_tokens {bad} are not ids in [0, {vocab_size})")
    return stops


def _sample(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of (B, V) probabilities -> (B,), on the generator's device if it has one."""
    device = probs.device
    if generator is not None and generator.device != device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(device)  # (B,)


@torch.no_grad()
def generate(
    model,
    prompt: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: Iterable[int] = (),
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue ``prompt`` by up to ``max_new_tokens`` tokens; return prompt + new tokens.

    ``prompt`` is a (B, T) or (T,) tensor of token ids; the result has the same rank,
    shape (B, T + n) or (T + n,), on the model's device. ``temperature=0`` is greedy
    decoding (ties go to the lowest id); otherwise each token is drawn with
    :func:`torch.multinomial` (using ``generator``) from :func:`next_token_probs`.

    The model sees at most ``model.config.block_size`` tokens: a longer context is
    cropped to its last block_size tokens (the result still holds the whole prompt).
    With ``use_cache`` the prompt goes through the model once and each later step
    feeds one token, its keys and values kept in a :class:`~llmcourse.nn.KVCache`.
    Once the context is longer than block_size the window slides, every token's
    position changes, and the cache is rebuilt from the cropped window at each step,
    so cached and uncached decoding pick the same tokens.

    A row that emits one of ``stop_tokens`` is finished: its stop token is kept and
    repeated after it while other rows go on; generation ends once every row is done.

    The model runs in eval mode (dropout off); its training flag is restored after.

    Introduced in: the Generation chapter.
    """
    config = model.config
    block_size, vocab_size = config.block_size, config.vocab_size
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    temperature = _check_temperature(temperature, allow_zero=True)
    top_k = None if top_k is None else _check_top_k(top_k)
    top_p = None if top_p is None else _check_top_p(top_p)
    stops = _check_stop_tokens(stop_tokens, vocab_size)
    prompt = _check_prompt(prompt, vocab_size)

    device = next(model.parameters()).device
    single = prompt.dim() == 1
    tokens = prompt.to(device=device, dtype=torch.long)
    if single:
        tokens = tokens[None, :]  # (1, T)
    B = tokens.size(0)
    stop_ids = torch.tensor(stops, dtype=torch.long, device=device)  # (S,)
    finished = torch.zeros(B, dtype=torch.bool, device=device)  # (B,) rows that emitted a stop token
    padding = torch.zeros(B, dtype=torch.long, device=device)  # (B,) each finished row's stop token

    was_training = model.training
    model.eval()
    try:
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = model(tokens[:, -block_size:]).logits  # (B, T_window, V)
            elif cache is None or cache.length + 1 > block_size:
                cache = KVCache()  # first step, or the window slid: positions changed, start again
                logits = model(tokens[:, -block_size:], cache=cache).logits  # (B, T_window, V)
            else:
                logits = model(tokens[:, -1:], cache=cache).logits  # (B, 1, V) only the newest token
            logits = logits[:, -1, :].float()  # (B, V) the next token's logits
            if temperature == 0.0:
                next_ids = logits.argmax(dim=-1)  # (B,) ties go to the lowest id
            else:
                next_ids = _sample(next_token_probs(logits, temperature, top_k, top_p), generator)  # (B,)
            next_ids = torch.where(finished, padding, next_ids)  # finished rows repeat their stop token
            tokens = torch.cat([tokens, next_ids[:, None]], dim=1)  # (B, T + 1)
            if stops:
                newly = ~finished & torch.isin(next_ids, stop_ids)
                padding = torch.where(newly, next_ids, padding)
                finished |= newly
                if bool(finished.all()):
                    break
    finally:
        model.train(was_training)
    return tokens[0] if single else tokens
