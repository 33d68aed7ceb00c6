"""The attention exercise, solutions/04_attention/attention.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. The
test here is this exercise's own: the references the hidden tests use agree.
"""

from __future__ import annotations

from exercise_support import Exercise, from_template

ANSWERS = ["sinusoidal_encoding", "causal_mask", "scaled_dot_product_attention"]
SKIP = ("plt.",)  # the plots: not graded, and slow to draw

SINUSOIDAL = """
    def sinusoidal_encoding(n_positions, d_model):
        position = torch.arange({start}, n_positions{end}, dtype=torch.float32)[:, None]  # (T, 1)
        pair = torch.arange(0, d_model, 2, dtype=torch.float32)  # (d/2,)
        angle = position / {base} ** ({exponent})  # (T, d/2)
        {fill}
"""
SINUSOIDAL_RIGHT = dict(
    start="0", end="", base="10000", exponent="pair / d_model",
    fill="""pe = torch.zeros(n_positions, d_model)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
        return pe""",
)
SINUSOIDAL_BUGS = {
    "sin/cos: sines on odd columns, cosines on even": dict(fill="""pe = torch.zeros(n_positions, d_model)
        pe[:, 0::2] = torch.cos(angle)
        pe[:, 1::2] = torch.sin(angle)
        return pe"""),
    "sin/cos: all sines first, then all cosines (halves, not interleaved)": dict(
        fill="return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)"),
    "sin/cos: interleaved along the wrong axis (stacked over positions)": dict(
        fill="return torch.stack([torch.sin(angle), torch.cos(angle)], dim=1).reshape(n_positions, d_model)"),
    "sin/cos: positions start at 1": dict(start="1", end=" + 1"),
    "sin/cos: exponent i/d instead of 2i/d": dict(exponent="pair / 2 / d_model"),
    "sin/cos: exponent 2i/d with the column index as i": dict(exponent="2 * pair / d_model"),
    "sin/cos: base 1000": dict(base="1000"),
    "sin/cos: multiplies by the frequency's inverse": dict(exponent="-pair / d_model"),
}
WRONG = from_template("sinusoidal_encoding", SINUSOIDAL, SINUSOIDAL_RIGHT, SINUSOIDAL_BUGS)
WRONG.update({
    "sin/cos: exponent per column, odd columns one step ahead": ("sinusoidal_encoding", """
        def sinusoidal_encoding(n_positions, d_model):
            position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (T, 1)
            col = torch.arange(d_model, dtype=torch.float32)  # (d,)
            angle = position / 10000 ** (col / d_model)  # (T, d)
            pe = torch.sin(angle)
            pe[:, 1::2] = torch.cos(angle[:, 1::2])
            return pe
    """),
    "sin/cos: the package's table": ("sinusoidal_encoding", """
        from llmcourse.nn.positional import sinusoidal_encoding
    """),
    # causal_mask
    "mask: upper triangle (the future, not the past)": ("causal_mask", """
        def causal_mask(T):
            return torch.ones(T, T, dtype=torch.bool).triu()
    """),
    "mask: diagonal excluded (a token cannot see itself)": ("causal_mask", """
        def causal_mask(T):
            return torch.ones(T, T, dtype=torch.bool).tril(-1)
    """),
    "mask: True where attention is forbidden": ("causal_mask", """
        def causal_mask(T):
            return torch.ones(T, T, dtype=torch.bool).triu(1)
    """),
    "mask: floats instead of booleans": ("causal_mask", """
        def causal_mask(T):
            return torch.ones(T, T).tril()
    """),
    "mask: one step too far into the future": ("causal_mask", """
        def causal_mask(T):
            return torch.ones(T, T, dtype=torch.bool).tril(1)
    """),
    "mask: the package's mask": ("causal_mask", """
        import llmcourse.nn.attention as _a

        def causal_mask(T):
            return _a.causal_mask(T)
    """),
})

ATTENTION = """
    def scaled_dot_product_attention(q, k, v, mask=None):
        d_k = q.size(-1)
        scores = {scores}
        if mask is not None:
            {masking}
        weights = {softmax}
        {after}
        return {result}
"""
ATTENTION_RIGHT = dict(
    scores="q @ k.transpose(-2, -1) / math.sqrt(d_k)",
    masking='scores = scores.masked_fill(~mask, float("-inf"))',
    softmax="torch.softmax(scores, dim=-1)",
    after="pass",
    result="weights @ v, weights",
)
ATTENTION_BUGS = {
    "attention: no scale": dict(scores="q @ k.transpose(-2, -1)"),
    "attention: divides by d_k, not its square root": dict(scores="q @ k.transpose(-2, -1) / d_k"),
    "attention: divides by sqrt(T_k)": dict(scores="q @ k.transpose(-2, -1) / math.sqrt(k.size(-2))"),
    "attention: divides by sqrt(d_v)": dict(scores="q @ k.transpose(-2, -1) / math.sqrt(v.size(-1))"),
    "attention: multiplies by sqrt(d_k)": dict(scores="q @ k.transpose(-2, -1) * math.sqrt(d_k)"),
    "attention: k.T (reverses every dimension of a batch)": dict(scores="q @ k.T / math.sqrt(d_k)"),
    "attention: keys transposed over the first two dims": dict(
        scores="(q @ k.transpose(0, 1) if k.dim() == 2 else q @ k.transpose(1, 2)) / math.sqrt(d_k)"),
    "attention: softmax over the queries (dim=-2)": dict(softmax="torch.softmax(scores, dim=-2)"),
    "attention: softmax over the first dim": dict(softmax="torch.softmax(scores, dim=0)"),
    "attention: softmax over everything": dict(
        softmax="torch.softmax(scores.flatten(-2), dim=-1).view_as(scores)"),
    "attention: mask applied the wrong way round": dict(masking='scores = scores.masked_fill(mask, float("-inf"))'),
    "attention: masked scores set to 0, not -inf": dict(masking="scores = scores.masked_fill(~mask, 0.0)"),
    "attention: mask multiplied into the scores": dict(masking="scores = scores * mask"),
    "attention: mask added to the scores": dict(masking="scores = scores + mask.float()"),
    "attention: masked after the softmax, rows not renormalised": dict(
        masking="pass", after="weights = weights * mask if mask is not None else weights"),
    "attention: mask ignored": dict(masking="pass"),
    "attention: masked with a finite -10": dict(masking="scores = scores.masked_fill(~mask, -10.0)"),
    "attention: returns (weights, output)": dict(result="weights, weights @ v"),
    "attention: output from the unscaled scores": dict(
        after="pass", result="torch.softmax(q @ k.transpose(-2, -1), -1) @ v, weights"),
    "attention: scale applied after the softmax": dict(
        scores="q @ k.transpose(-2, -1)", softmax="torch.softmax(scores, dim=-1) / math.sqrt(d_k)"),
    "attention: values weighted by the transposed weights": dict(
        result="(weights.transpose(-2, -1) @ v if weights.size(-1) == weights.size(-2) else weights @ v), weights"),
    "attention: changes q in place": dict(scores="(q.mul_(1 / math.sqrt(d_k))) @ k.transpose(-2, -1)"),
}
WRONG.update(from_template("scaled_dot_product_attention", ATTENTION, ATTENTION_RIGHT, ATTENTION_BUGS))

WRONG.update({
    "attention: torch's fused kernel for the output": ("scaled_dot_product_attention", """
        import torch.nn.functional as F

        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), torch.softmax(scores, -1)
    """),
    "attention: torch's fused kernel through an alias": ("scaled_dot_product_attention", """
        from torch.nn.functional import scaled_dot_product_attention as _fused

        def _weights(q, k, mask):
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            return torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), -1)

        def scaled_dot_product_attention(q, k, v, mask=None):
            return _fused(q, k, v, attn_mask=mask), _weights(q, k, mask)
    """),
    "attention: batched with view for torch.bmm (fails on non-contiguous inputs)": ("scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            *lead, T_q, d_k = q.shape
            T_k, d_v = k.size(-2), v.size(-1)
            q3, k3, v3 = q.view(-1, T_q, d_k), k.view(-1, T_k, d_k), v.view(-1, T_k, d_v)  # (N, T, d)
            scores = torch.bmm(q3, k3.transpose(1, 2)).view(*lead, T_q, T_k) / math.sqrt(d_k)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = torch.bmm(weights.reshape(-1, T_q, T_k), v3).view(*lead, T_q, d_v)
            return out, weights
    """),
    "attention: the package's function": ("scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            from llmcourse.nn.attention import scaled_dot_product_attention as ref
            return ref(q, k, v, mask)
    """),
})

# Correct solutions written in other styles: each must earn full marks, with the visible asserts too.
ALTERNATIVES = {
    "sinusoidal: float64 table": ("sinusoidal_encoding", """
        def sinusoidal_encoding(n_positions, d_model):
            pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
            i = torch.arange(d_model // 2, dtype=torch.float64)
            angle = pos / torch.pow(10000.0, 2 * i / d_model)
            pe = torch.empty(n_positions, d_model, dtype=torch.float64)
            pe[:, ::2], pe[:, 1::2] = angle.sin(), angle.cos()
            return pe
    """),
    "sinusoidal: cos as a shifted sine, float32": ("sinusoidal_encoding", """
        def sinusoidal_encoding(n_positions, d_model):
            j = torch.arange(d_model)
            angle = torch.arange(n_positions)[:, None] / 10000 ** ((j - j % 2) / d_model)
            return torch.sin(angle + (j % 2) * math.pi / 2)
    """),
    "mask: key index <= query index": ("causal_mask", """
        def causal_mask(T):
            i = torch.arange(T)
            return i[None, :] <= i[:, None]  # (T, T): key j <= query i
    """),
    "attention: einsum, where and -1e9": ("scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
            if mask is not None:
                scores = torch.where(mask, scores, torch.tensor(-1e9))
            weights = torch.nn.functional.softmax(scores, dim=-1)
            return weights @ v, weights
    """),
    "attention: computed in float64": ("scaled_dot_product_attention", """
        def scaled_dot_product_attention(q, k, v, mask=None):
            q, k, v = q.double(), k.double(), v.double()
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ v, weights
    """),
}
EXERCISE = Exercise(
    folder="04_attention", notebook="attention", answers=ANSWERS, points=(8, 12),
    wrong=WRONG, alternatives=ALTERNATIVES, skip=SKIP, chapters=(3,),
)


def test_the_references_agree():
    """The hidden tests' references (torch, the package, a plain formula) agree; if not, they are at fault."""
    import math

    import torch
    import torch.nn.functional as F

    from llmcourse.nn.attention import causal_mask, scaled_dot_product_attention
    from llmcourse.nn.positional import sinusoidal_encoding

    pe = sinusoidal_encoding(20, 8)
    assert math.isclose(pe[7, 5].item(), math.cos(7 / 10000 ** (4 / 8)), abs_tol=1e-6)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    mask = causal_mask(4, 6)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)
    assert w[..., ~mask].eq(0).all()
