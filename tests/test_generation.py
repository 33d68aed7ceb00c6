"""llmcourse.generation: temperature, top-k and top-p filters, and the decoding loop.

Independent references: the filters are compared with plain Python versions written
from their definitions (sorted lists for top-k, an O(V^2) "mass strictly above" for
top-p, computed in float64); greedy decoding with a naive loop that re-runs the model
on the cropped context at every step; sampling with counts of many draws.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llmcourse.generation import apply_temperature, generate, next_token_probs, top_k_filter, top_p_filter
from llmcourse.models import GPT, GPTConfig, GPTOutput
from llmcourse.nn import KVCache

NEG_INF = float("-inf")

# ----------------------------------------------------------------------------- references


def ref_top_k_keep(row: list[float], k: int) -> list[bool]:
    """Keep x iff x >= the k-th largest value (all ties with it survive)."""
    if k >= len(row):
        return [True] * len(row)
    kth = sorted(row, reverse=True)[k - 1]
    return [x >= kth for x in row]


def mass_above(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (..., V): for each token, the probability of the tokens strictly more probable (float64)."""
    probs = torch.softmax(logits.double(), dim=-1)
    above = probs[..., None, :] > probs[..., :, None]  # (..., V_j, V_i): token i more probable than token j
    return (probs[..., None, :] * above).sum(-1)


def ref_top_p_keep(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep token j iff the mass strictly above it is < p (p >= 1 keeps all)."""
    if p >= 1:
        return torch.ones_like(logits, dtype=torch.bool)
    return mass_above(logits) < p


def clear_of_boundaries(logits: torch.Tensor, p: float, margin: float = 1e-4) -> bool:
    """True when no token's mass above is within ``margin`` of p (float32 round-off cannot flip a decision)."""
    return bool(((mass_above(logits) - p).abs() > margin).all())


def kept(filtered: torch.Tensor) -> torch.Tensor:
    return filtered > NEG_INF


def check_filtered(original: torch.Tensor, filtered: torch.Tensor, keep: torch.Tensor) -> None:
    """Removed tokens are exactly -inf, kept tokens unchanged, shape and dtype kept."""
    assert filtered.shape == original.shape and filtered.dtype == original.dtype
    assert torch.equal(kept(filtered), keep)
    assert torch.equal(filtered[keep], original[keep])
    assert filtered[~keep].eq(NEG_INF).all()


# ----------------------------------------------------------------------------- temperature


def test_apply_temperature_divides_the_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 3.0]])
    assert torch.equal(apply_temperature(logits, 1.0), logits)
    assert torch.allclose(apply_temperature(logits, 0.5), logits * 2)
    assert torch.allclose(apply_temperature(logits, 4), logits / 4)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def test_temperature_moves_entropy_the_right_way():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50, generator=g) * 3
    temperatures = [0.1, 0.3, 0.7, 1.0, 1.5, 3.0, 10.0]
    entropies = torch.stack([entropy(apply_temperature(logits, t)) for t in temperatures])  # (7, 16)
    assert (entropies[1:] > entropies[:-1]).all(), "higher temperature, flatter distribution, higher entropy"
    assert (entropies[0] < math.log(2)).all()  # T = 0.1: about one token left, two at most
    assert (entropies[-1] > math.log(50) - 0.2).all()  # T = 10: close to uniform
    assert torch.allclose(entropies[3], entropy(logits))  # T = 1 leaves the distribution alone


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("inf"), float("nan"), "1", None, True])
def test_apply_temperature_rejects_nonpositive_or_odd_values(bad):
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(3), bad)


# ----------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("shape", [(7,), (5, 12), (2, 3, 40)])
def test_top_k_filter_matches_the_definition_on_random_logits(shape):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(*shape, generator=g)
    V = shape[-1]
    for k in sorted({1, 2, 3, V // 2 + 1, V - 1, V, V + 5}):
        if k < 1:
            continue
        filtered = top_k_filter(logits, k)
        rows = logits.reshape(-1, V).tolist()
        keep = torch.tensor([ref_top_k_keep(r, k) for r in rows]).reshape(shape)
        check_filtered(logits, filtered, keep)
        assert (keep.sum(-1) == min(k, V)).all()  # no ties in random floats: exactly k survive


def test_top_k_filter_keeps_every_tie_with_the_kth():
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0, -1.0],
                           [0.0, 0.0, 0.0, 0.0, 5.0],
                           [3.0, 3.0, 3.0, 1.0, 1.0]])
    filtered = top_k_filter(logits, 2)
    assert kept(filtered).tolist() == [[True, True, True, False, False],  # the 2nd largest is 1.0, twice
                                       [True, True, True, True, True],  # the 2nd largest is 0.0, four times
                                       [True, True, True, False, False]]
    g = torch.Generator().manual_seed(2)
    ints = torch.randint(-3, 4, (30, 9), generator=g).float()  # many ties
    for k in range(1, 11):
        keep = torch.tensor([ref_top_k_keep(r, k) for r in ints.tolist()])
        check_filtered(ints, top_k_filter(ints, k), keep)


def test_top_k_filter_with_k_at_least_vocab_keeps_everything_and_leaves_input_alone():
    logits = torch.randn(3, 6)
    copy = logits.clone()
    assert torch.equal(top_k_filter(logits, 6), logits)
    assert torch.equal(top_k_filter(logits, 100), logits)
    top_k_filter(logits, 2)
    assert torch.equal(logits, copy), "the input is not changed in place"


@pytest.mark.parametrize("bad", [0, -2, 2.5, 2.0, "3", None, True])
def test_top_k_filter_rejects_bad_k(bad):
    with pytest.raises(ValueError, match="top-k"):
        top_k_filter(torch.zeros(4), bad)


# ----------------------------------------------------------------------------- top-p


def test_top_p_filter_worked_example():
    probs = torch.tensor([0.1, 0.4, 0.2, 0.1, 0.2])
    logits = probs.log()
    # masses strictly above: 0.4 -> 0, each 0.2 -> 0.4, each 0.1 -> 0.8
    assert kept(top_p_filter(logits, 0.3)).tolist() == [False, True, False, False, False]
    assert kept(top_p_filter(logits, 0.5)).tolist() == [False, True, True, False, True]  # both 0.2s: a tie
    assert kept(top_p_filter(logits, 0.9)).tolist() == [True] * 5
    assert torch.allclose(next_token_probs(logits, top_p=0.5), torch.tensor([0, 0.5, 0.25, 0, 0.25]))


def test_top_p_filter_stops_as_soon_as_the_mass_reaches_p():
    logits = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64).log()
    if torch.softmax(logits, -1).tolist() != [0.5, 0.25, 0.125, 0.125]:
        pytest.skip("this platform's exp or log is not exact on powers of two")
    # the top token alone has mass 0.5: it reaches p = 0.5, so the tokens below it go
    assert kept(top_p_filter(logits, 0.5)).tolist() == [True, False, False, False]
    assert kept(top_p_filter(logits, 0.75)).tolist() == [True, True, False, False]
    assert kept(top_p_filter(logits, 0.75 + 1e-9)).tolist() == [True, True, True, True]  # the tie comes in whole


@pytest.mark.parametrize("shape", [(9,), (6, 20), (2, 3, 50), (2, 400)])
def test_top_p_filter_matches_the_definition_on_random_logits(shape):
    g = torch.Generator().manual_seed(3)
    checked = 0
    for p in [0.05, 0.2, 0.5, 0.73, 0.9, 0.99, 0.999]:
        logits = torch.randn(*shape, generator=g) * 2
        if not clear_of_boundaries(logits, p):
            continue
        check_filtered(logits, top_p_filter(logits, p), ref_top_p_keep(logits, p))
        checked += 1
    assert checked >= 5, "the random cases should rarely sit on a boundary"


def test_top_p_filter_with_ties():
    g = torch.Generator().manual_seed(4)
    checked = 0
    for _ in range(40):
        logits = torch.randint(-2, 3, (4, 7), generator=g).float()
        p = float(torch.rand((), generator=g)) * 0.98 + 0.01
        if not clear_of_boundaries(logits, p):
            continue
        keep = ref_top_p_keep(logits, p)
        check_filtered(logits, top_p_filter(logits, p), keep)
        checked += 1
    assert checked >= 25
    # the last kept token's ties survive even when they take the mass far past p
    logits = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, -5.0])
    assert kept(top_p_filter(logits, 0.5)).tolist() == [True] * 5 + [False]


def test_top_p_filter_small_p_keeps_only_the_most_probable():
    logits = torch.tensor([[0.3, 2.0, -1.0, 1.9], [1.0, 1.0, 0.0, -2.0]])
    assert kept(top_p_filter(logits, 1e-9)).tolist() == [[False, True, False, False], [True, True, False, False]]
    one_hot = torch.tensor([0.0, 80.0, 0.0])  # the top token holds all the mass (float32)
    assert kept(top_p_filter(one_hot, 0.999)).tolist() == [False, True, False]


def test_top_p_filter_p_one_keeps_every_token_even_when_sums_round_off():
    logits = torch.tensor([[0.0, -50.0, -100.0, 3.0], [-40.0, 0.0, 0.0, -60.0]])
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    # the float32 sum of the larger probabilities is already 1.0, so "mass above < p" alone would drop tokens
    probs = torch.softmax(logits, -1).sort(-1, descending=True).values
    assert (probs.cumsum(-1)[:, :-1] >= 1.0).any()


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, 2, float("nan"), "0.5", None])
def test_top_p_filter_rejects_bad_p(bad):
    with pytest.raises(ValueError, match="top-p"):
        top_p_filter(torch.zeros(4), bad)


def test_top_p_filter_on_half_precision_logits_sums_in_float32():
    g = torch.Generator().manual_seed(9)
    logits = (torch.randn(4, 300, generator=g) * 2).bfloat16()
    wide = logits.float()  # the same values
    checked = [p for p in [0.3, 0.8, 0.95] if clear_of_boundaries(wide, p)]
    for p in checked:  # summed in bfloat16, p = 0.95 keeps the wrong tokens
        check_filtered(logits, top_p_filter(logits, p), ref_top_p_keep(wide, p))
    assert checked == [0.3, 0.95]


def test_top_p_filter_leaves_input_alone():
    logits = torch.randn(3, 10)
    copy = logits.clone()
    top_p_filter(logits, 0.5)
    assert torch.equal(logits, copy)


# ----------------------------------------------------------------------------- next_token_probs


def test_next_token_probs_renormalizes_over_the_kept_set():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 30, generator=g, dtype=torch.float64) * 2
    for T, k, p in [(1.0, None, None), (0.7, 5, None), (1.3, None, 0.6), (0.9, 10, 0.8), (2.0, 3, 0.99)]:
        probs = next_token_probs(logits, T, k, p)
        scaled = logits / T
        keep = torch.ones_like(logits, dtype=torch.bool)
        if k is not None:
            keep &= torch.tensor([ref_top_k_keep(r, k) for r in scaled.tolist()])
        if p is not None:  # top-p on what top-k left
            keep &= ref_top_p_keep(scaled.masked_fill(~keep, NEG_INF), p)
        want = torch.softmax(scaled, -1) * keep
        want = want / want.sum(-1, keepdim=True)
        assert torch.allclose(probs, want, atol=1e-12)
        assert torch.allclose(probs.sum(-1), torch.ones(8, dtype=torch.float64))


def test_next_token_probs_at_temperature_zero_is_one_hot_with_ties_to_the_lowest_id():
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, -1.0, 0.0, 5.0]])
    assert next_token_probs(logits, temperature=0).tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]


# ----------------------------------------------------------------------------- decoding with a real GPT


def tiny_gpt(positions: str = "learned", block_size: int = 16, seed: int = 0, scale: float = 10.0, **overrides) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig.tiny(vocab_size=97, block_size=block_size, positions=positions, **overrides))
    with torch.no_grad():  # larger logits than at initialisation: a clear argmax, no near-ties to flip
        model.token_embedding.weight.mul_(scale)
    return model.eval()


def naive_greedy(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Re-run the whole (cropped) context at every step and take the argmax."""
    tokens = prompt
    for _ in range(n):
        logits = model(tokens[:, -model.config.block_size :]).logits[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_cached_and_uncached_greedy_decoding_pick_the_same_tokens(positions):
    model = tiny_gpt(positions)
    g = torch.Generator().manual_seed(6)
    for T, n in [(5, 8), (5, 30), (20, 10)]:  # within the context, past it, a prompt longer than it
        prompt = torch.randint(0, 97, (3, T), generator=g)
        want = naive_greedy(model, prompt, n)
        cached = generate(model, prompt, n, temperature=0)
        uncached = generate(model, prompt, n, temperature=0, use_cache=False)
        assert torch.equal(uncached, want)
        assert torch.equal(cached, want)
        assert torch.equal(cached[:, :T], prompt)  # the whole prompt is returned, even when cropped
        assert want[:, T:].unique().numel() > 2  # a real continuation, not one repeated token


def test_the_cache_feeds_one_token_per_step_until_the_window_slides():
    model = tiny_gpt("rope", block_size=8)
    lengths = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: lengths.append(
        (args[0].size(1), kwargs.get("cache") is not None)), with_kwargs=True)
    generate(model, torch.tensor([[1, 2, 3]]), 8, temperature=0)
    hook.remove()
    # prompt (3), then one token at a time up to 8 positions, then the whole cropped window
    assert lengths == [(3, True)] + [(1, True)] * 5 + [(8, True)] * 2


def test_greedy_is_temperature_zero_and_ignores_the_filters():
    model = tiny_gpt("learned", seed=1)
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    want = naive_greedy(model, prompt, 12)
    assert torch.equal(generate(model, prompt, 12, temperature=0), want)
    assert torch.equal(generate(model, prompt, 12, temperature=0, top_k=3, top_p=0.5), want)


def test_batch_greedy_equals_row_by_row():
    model = tiny_gpt("sinusoidal", seed=2)
    prompts = torch.randint(0, 97, (4, 6), generator=torch.Generator().manual_seed(7))
    batch = generate(model, prompts, 20, temperature=0)
    rows = torch.stack([generate(model, row, 20, temperature=0) for row in prompts])
    assert torch.equal(batch, rows)


def test_sampling_is_repeatable_with_a_seeded_generator():
    model = tiny_gpt("learned", seed=3, scale=1.0)  # logits near 0: draws spread over many tokens
    prompt = torch.tensor([[1, 2, 3]])

    def draw(seed, **kw):
        return generate(model, prompt, 25, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(draw(0), draw(0))
    assert torch.equal(draw(0, top_k=5, top_p=0.9, temperature=0.8), draw(0, top_k=5, top_p=0.9, temperature=0.8))
    assert not torch.equal(draw(0), draw(1))
    # the cache changes nothing but the speed: the same draws give the same tokens
    assert torch.equal(draw(4), generate(model, prompt, 25, generator=torch.Generator().manual_seed(4), use_cache=False))


def test_generate_runs_in_eval_mode_and_restores_the_training_flag():
    model = tiny_gpt("learned", seed=4, scale=1.0, dropout=0.5).train()  # flat logits: dropout would show
    prompt = torch.tensor([[5, 6, 7]])
    first = generate(model, prompt, 10, temperature=0)
    assert model.training, "the training flag is put back"
    assert torch.equal(first, generate(model, prompt, 10, temperature=0)), "dropout is off while generating"
    assert torch.equal(first, naive_greedy(model.eval(), prompt, 10))


def test_generate_keeps_the_rank_and_returns_long_ids():
    model = tiny_gpt("learned")
    out = generate(model, torch.tensor([4, 5, 6], dtype=torch.int32), 4, temperature=0)
    assert out.shape == (7,) and out.dtype == torch.long
    assert torch.equal(out, naive_greedy(model, torch.tensor([[4, 5, 6]]), 4)[0])
    assert torch.equal(generate(model, torch.tensor([[4, 5]]), 0), torch.tensor([[4, 5]]))


# ----------------------------------------------------------------------------- fixed distributions


class FixedModel(nn.Module):
    """A stand-in language model: the next-token logits come from ``rule(last token ids)``."""

    def __init__(self, vocab_size: int, rule, block_size: int = 32):
        super().__init__()
        self.config = GPTConfig.tiny(vocab_size=vocab_size, block_size=block_size)
        self.weight = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.rule = rule

    def forward(self, idx, targets=None, *, cache: KVCache | None = None):
        logits = torch.stack([self.rule(idx[:, t]) for t in range(idx.size(1))], dim=1)  # (B, T, V)
        return GPTOutput(logits + self.weight, None, None)


FIXED_LOGITS = torch.tensor([2.0, 1.5, 1.5, 1.0, 0.2, 0.0, -0.5, -1.0, -3.0, 0.9])


def sample_counts(n: int, **kw) -> torch.Tensor:
    model = FixedModel(10, lambda last: FIXED_LOGITS.expand(last.size(0), 10))
    prompt = torch.zeros(n, 1, dtype=torch.long)
    out = generate(model, prompt, 1, generator=torch.Generator().manual_seed(8), **kw)
    return torch.bincount(out[:, 1], minlength=10)


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_k": 3}, {"top_k": 2},
                                {"top_p": 0.6}, {"top_p": 0.9, "temperature": 1.5}, {"top_k": 6, "top_p": 0.8}])
def test_sampling_frequencies_match_next_token_probs(kw):
    n = 20_000
    counts = sample_counts(n, **kw).double()
    probs = next_token_probs(FIXED_LOGITS.double(), kw.get("temperature", 1.0), kw.get("top_k"), kw.get("top_p"))
    assert counts[probs == 0].sum() == 0, "a filtered token was drawn"
    # each count is binomial(n, p): allow 5 standard deviations (the draws are seeded, so this is stable)
    sd = (n * probs * (1 - probs)).sqrt()
    assert ((counts - n * probs).abs() <= 5 * sd + 1).all(), (counts, n * probs)


def test_top_k_and_top_p_draw_only_from_their_allowed_sets():
    assert set(sample_counts(5_000, top_k=2).nonzero().flatten().tolist()) == {0, 1, 2}  # tie at the 2nd largest
    assert set(sample_counts(5_000, top_k=1).nonzero().flatten().tolist()) == {0}
    # p = 0.5: mass above 1.5 is softmax(2.0) ~ 0.31 < 0.5, above 1.0 it is ~ 0.69: tokens 0, 1, 2
    assert set(sample_counts(5_000, top_p=0.5).nonzero().flatten().tolist()) == {0, 1, 2}
    assert set(sample_counts(5_000, top_p=1e-6).nonzero().flatten().tolist()) == {0}


def counter_model(vocab_size: int = 10) -> FixedModel:
    """Always predicts (last token + 1) mod V, with a clear margin."""
    return FixedModel(vocab_size, lambda last: 10.0 * nn.functional.one_hot((last + 1) % vocab_size, vocab_size).float())


@pytest.mark.parametrize("use_cache", [True, False])
def test_stop_tokens_end_generation_and_pad_finished_rows(use_cache):
    model = counter_model()
    out = generate(model, torch.tensor([[0], [5]]), 20, temperature=0, stop_tokens=(3,), use_cache=use_cache)
    assert out.tolist() == [[0, 1, 2, 3, 3, 3, 3, 3, 3],  # stopped after 3 steps, then padded with its stop token
                            [5, 6, 7, 8, 9, 0, 1, 2, 3]]  # the last row to stop ends generation
    out = generate(model, torch.tensor([[0], [5]]), 20, temperature=0, stop_tokens=[3, 7], use_cache=use_cache)
    assert out.tolist() == [[0, 1, 2, 3], [5, 6, 7, 7]]  # each row pads with its own stop token
    assert generate(model, torch.tensor([2]), 20, temperature=0, stop_tokens=3).tolist() == [2, 3]
    assert generate(model, torch.tensor([4]), 5, temperature=0, stop_tokens=(3,)).tolist() == [4, 5, 6, 7, 8, 9]


def test_stop_token_with_a_real_gpt():
    model = tiny_gpt("rope", seed=5)
    prompt = torch.tensor([[10, 20, 30], [40, 50, 60]])
    free = generate(model, prompt, 15, temperature=0)
    stop = int(free[0, 3 + 4])  # the 5th new token of row 0
    first = (free[0, 3:] == stop).nonzero()[0].item()
    out = generate(model, prompt, 15, temperature=0, stop_tokens=(stop,))
    assert torch.equal(out[0, : 3 + first + 1], free[0, : 3 + first + 1])
    assert out[0, 3 + first + 1 :].eq(stop).all()
    hits = (free[1, 3:] == stop).nonzero()
    end = 3 + (hits[0].item() + 1 if len(hits) else 15)
    assert out.size(1) == max(end, 3 + first + 1)
    assert torch.equal(out[1, :end], free[1, :end])


@pytest.mark.gpu
def test_generate_on_a_gpu_with_a_cpu_prompt_and_generator():
    model = tiny_gpt("rope").cuda()
    prompt = torch.tensor([[3, 1, 4], [1, 5, 9]])  # on the CPU: moved to the model's device
    greedy = generate(model, prompt, 20, temperature=0)
    assert greedy.device.type == "cuda"
    assert torch.equal(greedy, generate(model, prompt, 20, temperature=0, use_cache=False))
    assert torch.equal(greedy.cpu(), naive_greedy(model.cpu(), prompt, 20))
    model.cuda()
    draws = [generate(model, prompt, 20, top_p=0.9, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])


# ----------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
        ({"max_new_tokens": 2.0}, ValueError, "max_new_tokens"),
        ({"temperature": -0.5}, ValueError, "temperature"),
        ({"top_k": 0}, ValueError, "top-k"),
        ({"top_p": 1.5}, ValueError, "top-p"),
        ({"top_p": 0.0}, ValueError, "top-p"),
        ({"prompt": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "empty"),
        ({"prompt": torch.tensor([[1, 97]])}, ValueError, r"ids must be in \[0, 97\)"),
        ({"prompt": torch.tensor([[-1, 2]])}, ValueError, r"ids must be in \[0, 97\)"),
        ({"prompt": torch.zeros(1, 2, 3, dtype=torch.long)}, ValueError, "shape"),
        ({"prompt": torch.tensor([[1.0, 2.0]])}, TypeError, "integer token ids"),
        ({"prompt": [1, 2]}, TypeError, "tensor"),
        ({"stop_tokens": (97,)}, ValueError, "stop_tokens"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, error, message):
    model = tiny_gpt("learned")
    args = {"prompt": torch.tensor([[1, 2]]), "max_new_tokens": 3} | kwargs
    with pytest.raises(error, match=message):
        generate(model, **args)
