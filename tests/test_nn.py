"""llmcourse.nn: attention (reference and fused), masks, the KV cache, positions, blocks.

Independent references: torch.nn.functional.scaled_dot_product_attention and
torch.nn.MultiheadAttention; hand-checkable values for the masks and encodings.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmcourse.nn import (
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositions,
    TransformerBlock,
    apply_rope,
    causal_mask,
    combine_masks,
    fused_attention,
    padding_mask,
    rope_angles,
    scaled_dot_product_attention,
    sinusoidal_encoding,
)

SHAPES = [  # (batch, heads, T_q, T_k, head_dim)
    (1, 1, 1, 1, 4),
    (2, 3, 5, 7, 8),
    (3, 2, 9, 4, 16),
    (1, 4, 33, 33, 64),
]


def qkv(B, h, Tq, Tk, d, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, h, Tq, d, generator=g)
    k = torch.randn(B, h, Tk, d, generator=g)
    v = torch.randn(B, h, Tk, d + 1, generator=g)  # d_v != d_k on purpose
    return (t.to(device=device, dtype=dtype) for t in (q, k, v))


def random_mask(B, Tq, Tk, seed=0):
    """(B, 1, Tq, Tk) bool with at least one allowed key per query."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, 1, Tq, Tk, generator=g) > 0.4
    mask[..., 0] = True
    return mask


# ----------------------------------------------------------------------------- masks


def test_causal_mask_is_the_lower_triangle():
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(3), expected)


def test_causal_mask_with_a_cached_past_shifts_right():
    # 2 new queries at positions 3 and 4 of 5 keys
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5), expected)
    with pytest.raises(ValueError, match="cannot be the last positions"):
        causal_mask(5, 2)


def test_padding_mask_hides_padded_keys_for_every_query():
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="batch, time"):
        padding_mask(torch.ones(3))


def test_combine_masks_allows_only_where_all_allow():
    combined = combine_masks(causal_mask(3), None, padding_mask(torch.tensor([[1, 1, 0]])))
    assert combined.shape == (1, 1, 3, 3)
    assert combined[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert combine_masks(None, None) is None


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_reference_attention_equals_torch(shape, masked):
    B, h, Tq, Tk, d = shape
    q, k, v = qkv(*shape)
    mask = random_mask(B, Tq, Tk) if masked else None
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, h, Tq))  # softmax over the keys
    if masked:
        assert (weights[~mask.expand_as(weights)] == 0).all()
    torch.testing.assert_close(fused_attention(q, k, v, mask), out, atol=1e-5, rtol=1e-5)


def test_reference_attention_weights_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, weights = scaled_dot_product_attention(q, k, v)
    a = math.exp(1 / math.sqrt(2))
    torch.testing.assert_close(weights, torch.tensor([[a / (a + 1), 1 / (a + 1)]]))
    torch.testing.assert_close(out, weights @ v)


def test_a_query_with_no_allowed_key_gets_zeros_not_nan():
    q, k, v = qkv(1, 1, 2, 3, 4)
    mask = torch.tensor([[False, False, False], [True, False, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and (weights[..., 0, :] == 0).all() and (out[..., 0, :] == 0).all()


def test_fused_is_causal_equals_the_causal_mask():
    q, k, v = qkv(2, 2, 6, 6, 8)
    torch.testing.assert_close(
        fused_attention(q, k, v, is_causal=True), scaled_dot_product_attention(q, k, v, causal_mask(6))[0]
    )


@pytest.mark.gpu
def test_reference_and_fused_agree_in_bf16_on_cuda():
    for shape in SHAPES:
        B, h, Tq, Tk, d = shape
        q, k, v = qkv(*shape, dtype=torch.bfloat16, device="cuda")
        mask = random_mask(B, Tq, Tk).cuda()
        ref, _ = scaled_dot_product_attention(q, k, v, mask)
        exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        torch.testing.assert_close(ref.float(), exact, atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(fused_attention(q, k, v, mask).float(), exact, atol=2e-2, rtol=2e-2)


# ----------------------------------------------------------------------------- multi-head


def mha(d_model=32, n_heads=4, fused=True, seed=0):
    torch.manual_seed(seed)
    return MultiHeadAttention(d_model, n_heads, fused=fused).eval()


def test_split_and_merge_heads_are_inverse_and_keep_feature_order():
    m = mha()
    x = torch.arange(2 * 3 * 32, dtype=torch.float32).view(2, 3, 32)
    heads = m.split_heads(x)  # (2, 4, 3, 8)
    assert heads.shape == (2, 4, 3, 8)
    assert torch.equal(heads[0, 1, 0], x[0, 0, 8:16])  # head 1 holds features 8..15
    assert torch.equal(m.merge_heads(heads), x)


def test_multi_head_attention_equals_torch_multihead_attention():
    m = mha()
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([m.query.weight, m.key.weight, m.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([m.query.bias, m.key.bias, m.value.bias]))
        ref.out_proj.weight.copy_(m.out.weight)
        ref.out_proj.bias.copy_(m.out.bias)
    x, context = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    out, weights = m(x, context=context, need_weights=True)
    expected, expected_weights = ref(x, context, context, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m(x, context=context)[0], out, atol=1e-5, rtol=1e-5)  # fused path


def test_causal_self_attention_ignores_the_future():
    m = mha()
    x = torch.randn(1, 6, 32)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 32)  # change the last two tokens
    a, _ = m(x, is_causal=True)
    b, _ = m(y, is_causal=True)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("use_rope", [False, True])
def test_kv_cache_step_by_step_equals_the_full_sequence(use_rope):
    m = mha(fused=False)
    rope = RotaryEmbedding(16, 8) if use_rope else None
    x = torch.randn(2, 7, 32)
    full, _ = m(x, is_causal=True, rope=rope)
    cache, steps = KVCache(), []
    for chunk in (x[:, :3], x[:, 3:4], x[:, 4:7]):  # a prompt, then one token, then three
        out, _ = m(chunk, is_causal=True, cache=cache, rope=rope)
        steps.append(out)
    assert cache.length == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_multi_head_attention_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)


# ----------------------------------------------------------------------------- positions


def test_sinusoidal_encoding_values():
    pe = sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16)
    assert torch.equal(pe[0, 0::2], torch.zeros(8)) and torch.equal(pe[0, 1::2], torch.ones(8))
    p, i = 7, 3  # pair i of position p turns at frequency 10000^(-2i/d)
    angle = p / 10_000 ** (2 * i / 16)
    torch.testing.assert_close(pe[p, 2 * i], torch.tensor(math.sin(angle)))
    torch.testing.assert_close(pe[p, 2 * i + 1], torch.tensor(math.cos(angle)))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(4, 7)


def test_positions_beyond_the_table_are_an_error():
    with pytest.raises(ValueError, match="knows only 8 positions"):
        SinusoidalPositions(8, 4)(6, offset=3)


def test_rope_keeps_norms_and_makes_scores_depend_on_distance_only():
    cos, sin = rope_angles(64, 8)
    q, k = torch.randn(8), torch.randn(8)
    rotated_q = apply_rope(q.expand(64, 8), cos, sin)  # q at every position
    rotated_k = apply_rope(k.expand(64, 8), cos, sin)
    torch.testing.assert_close(rotated_q.norm(dim=-1), q.norm().expand(64))
    scores = rotated_q @ rotated_k.T  # (p, s)
    for distance in (0, 3, 17):
        diagonal = torch.diagonal(scores, offset=-distance)  # all pairs with p - s = distance
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, -3)[0], torch.diagonal(scores, -4)[0])


def test_rotary_embedding_offset_matches_the_full_sequence():
    rope = RotaryEmbedding(32, 8)
    x = torch.randn(1, 2, 10, 8)
    torch.testing.assert_close(rope(x)[..., 6:, :], rope(x[..., 6:, :], offset=6))


# ----------------------------------------------------------------------------- blocks


def block(norm_first, seed=0):
    torch.manual_seed(seed)
    return TransformerBlock(16, 4, 64, norm_first=norm_first).eval()


def test_pre_norm_and_post_norm_blocks_follow_their_formulas():
    x = torch.randn(2, 5, 16)
    pre, post = block(True), block(False)
    for b in (pre, post):  # LayerNorm shifts away from identity, so the placement shows
        for norm in (b.attention_norm, b.ffn_norm):
            torch.nn.init.normal_(norm.weight)
            torch.nn.init.normal_(norm.bias)
    h = x + pre.attention(pre.attention_norm(x))[0]
    torch.testing.assert_close(pre(x).hidden, h + pre.ffn(pre.ffn_norm(h)))
    h = post.attention_norm(x + post.attention(x)[0])
    torch.testing.assert_close(post(x).hidden, post.ffn_norm(h + post.ffn(h)))


def test_an_encoder_block_without_positions_is_permutation_equivariant():
    b = block(True)
    x = torch.randn(1, 6, 16)
    perm = torch.randperm(6)
    torch.testing.assert_close(b(x[:, perm]).hidden, b(x).hidden[:, perm], atol=1e-5, rtol=1e-5)


def test_a_decoder_block_needs_the_encoder_output():
    b = TransformerBlock(16, 4, 64, cross_attention=True)
    with pytest.raises(ValueError, match="context"):
        b(torch.randn(1, 3, 16))
    out = b(torch.randn(1, 3, 16), context=torch.randn(1, 5, 16), need_weights=True)
    assert out.cross_attention.shape == (1, 4, 3, 5)
