"""The transformer exercise, solutions/05_transformer/transformer.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong split_heads or merge_heads costs points once (the tests of MultiHeadAttention run
with the course's helpers), and so does a wrong MultiHeadAttention (those of
TransformerBlock run with the course's attention). The test here is this exercise's
own: the references the hidden tests use agree with torch.
"""

from __future__ import annotations

import pytest

from exercise_support import Exercise, from_template

ANSWERS = ["split_heads", "merge_heads", "multi_head_attention", "transformer_block"]

WRONG = {
    # split_heads
    "split: viewed straight to (B, h, T, hs)": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.view(B, n_heads, T, d // n_heads)
    """),
    "split: heads take every h-th feature": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.view(B, T, d // n_heads, n_heads).permute(0, 3, 1, 2)  # (B, h, T, hs)
    """),
    "split: transposed before the reshape": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.transpose(1, 2).reshape(B, n_heads, T, d // n_heads)
    """),
    "split: heads left behind the tokens, (B, T, h, hs)": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.view(B, T, n_heads, d // n_heads)
    """),
    "split: n_heads taken as the head size": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.view(B, T, d // n_heads, n_heads).transpose(1, 2)
    """),
    "split: tokens flattened with view first (fails on non-contiguous inputs)": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            rows = x.view(B * T, n_heads, d // n_heads)  # (B*T, h, hs)
            return rows.view(B, T, n_heads, d // n_heads).transpose(1, 2)
    """),
    "split: the package's method": ("split_heads", """
        from llmcourse.nn import MultiHeadAttention as _M

        def split_heads(x, n_heads):
            return _M(x.size(-1), n_heads).split_heads(x)
    """),
    # merge_heads
    "merge: reshaped without the transpose": ("merge_heads", """
        def merge_heads(x):
            B, h, T, hs = x.shape
            return x.reshape(B, T, h * hs)
    """),
    "merge: heads interleaved feature by feature": ("merge_heads", """
        def merge_heads(x):
            B, h, T, hs = x.shape
            return x.permute(0, 2, 3, 1).reshape(B, T, h * hs)
    """),
    "merge: heads in reverse order": ("merge_heads", """
        def merge_heads(x):
            B, h, T, hs = x.shape
            return x.flip(1).transpose(1, 2).reshape(B, T, h * hs)
    """),
    "merge: view after the transpose (raises)": ("merge_heads", """
        def merge_heads(x):
            B, h, T, hs = x.shape
            return x.transpose(1, 2).view(B, T, h * hs)
    """),
    "merge: the package's method": ("merge_heads", """
        import llmcourse.nn.attention as _a

        def merge_heads(x):
            return _a.MultiHeadAttention.merge_heads(x)
    """),
}

MHA = """
    class MultiHeadAttention(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.n_heads = n_heads
            self.query = nn.Linear(d_model, d_model{bias})
            self.key = nn.Linear(d_model, d_model{bias})
            self.value = nn.Linear(d_model, d_model{bias})
            self.out = nn.Linear(d_model, d_model{bias})

        def forward(self, x, mask=None):
            B, T, d = x.shape
            q = {split}(self.query(x){heads})
            k = {split}(self.key(x){heads})
            v = {split}(self.{v_proj}(x){heads})
            {core}
            return {result}
"""
MHA_RIGHT = dict(bias="", split="split_heads", heads=", self.n_heads", v_proj="value",
                 core="y = attention(q, k, v, mask)", result="self.out(merge_heads(y))")
MHA_BUGS = {
    "mha: one head of size d_model": dict(split="", heads=""),
    "mha: split into head_dim heads": dict(heads=", d // self.n_heads"),
    "mha: keys projected again for the values": dict(v_proj="key"),
    "mha: no output projection": dict(result="merge_heads(y)"),
    "mha: no biases": dict(bias=", bias=False"),
    "mha: mask ignored": dict(core="y = attention(q, k, v)"),
    "mha: mask inverted": dict(core="y = attention(q, k, v, None if mask is None else ~mask)"),
    "mha: heads merged inline without the transpose": dict(result="self.out(y.reshape(B, T, d))"),
    "mha: scores scaled by sqrt(d_model)": dict(
        core="""s = q @ k.transpose(-2, -1) / math.sqrt(d)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            y = torch.softmax(s, dim=-1) @ v"""),
    "mha: softmax over the queries": dict(
        core="""s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            y = torch.softmax(s, dim=-2) @ v"""),
    "mha: attention across heads instead of tokens": dict(
        core="y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)"),
    # the notebook says no dropout: in eval() mode these are right, in train() mode not
    "mha: dropout on the output": dict(result="nn.functional.dropout(self.out(merge_heads(y)), 0.1, self.training)"),
    "mha: dropout on the attention weights": dict(
        core="""s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            y = nn.functional.dropout(torch.softmax(s, dim=-1), 0.1, self.training) @ v"""),
}
WRONG.update(from_template("multi_head_attention", MHA, MHA_RIGHT, MHA_BUGS))
WRONG.update({
    "mha: torch's multi_head_attention_forward on its own weights": ("multi_head_attention", """
        import torch.nn.functional as F

        class MultiHeadAttention(nn.Module):
            def __init__(self, d_model, n_heads):
                super().__init__()
                self.n_heads = n_heads
                self.query, self.key = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
                self.value, self.out = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

            def forward(self, x, mask=None):
                x = x.transpose(0, 1)  # (T, B, d), torch's layout
                T, B, d = x.shape
                if mask is not None:
                    mask = ~mask.expand(B, 1, T, T).repeat_interleave(self.n_heads, 0).reshape(-1, T, T)
                y, _ = F.multi_head_attention_forward(
                    x, x, x, d, self.n_heads,
                    torch.cat([self.query.weight, self.key.weight, self.value.weight]),
                    torch.cat([self.query.bias, self.key.bias, self.value.bias]),
                    None, None, False, 0.0, self.out.weight, self.out.bias,
                    need_weights=False, attn_mask=mask)
                return y.transpose(0, 1)
    """),
    "mha: a subclass of the package's module": ("multi_head_attention", """
        import llmcourse.nn

        class MultiHeadAttention(llmcourse.nn.MultiHeadAttention):
            def forward(self, x, mask=None):
                return super().forward(x, mask=mask)[0]
    """),
})

BLOCK = """
    class TransformerBlock(nn.Module):
        def __init__(self, d_model, n_heads, d_ff):
            super().__init__()
            self.attention = MultiHeadAttention(d_model, n_heads)
            self.attention_norm = nn.LayerNorm(d_model{affine})
            self.ffn = FeedForward(d_model, d_ff)
            self.ffn_norm = nn.LayerNorm(d_model{affine})
            self.dropout = nn.Dropout({dropout})

        def forward(self, x, mask=None):
            {body}
            return x
"""
BLOCK_RIGHT = dict(affine="", dropout="0.0", body="""x = x + self.attention(self.attention_norm(x), mask)
            x = x + self.ffn(self.ffn_norm(x))""")
BLOCK_BUGS = {
    "block: post-norm": """x = self.attention_norm(x + self.attention(x, mask))
            x = self.ffn_norm(x + self.ffn(x))""",
    "block: residual from the normalised x": """h = self.attention_norm(x)
            x = h + self.attention(h, mask)
            h = self.ffn_norm(x)
            x = h + self.ffn(h)""",
    "block: one LayerNorm for both sublayers": """x = x + self.attention(self.attention_norm(x), mask)
            x = x + self.ffn(self.attention_norm(x))""",
    "block: the two LayerNorms swapped": """x = x + self.attention(self.ffn_norm(x), mask)
            x = x + self.ffn(self.attention_norm(x))""",
    "block: no residual around the feed-forward network": """x = x + self.attention(self.attention_norm(x), mask)
            x = self.ffn(self.ffn_norm(x))""",
    "block: no residual around attention": """x = self.attention(self.attention_norm(x), mask)
            x = x + self.ffn(self.ffn_norm(x))""",
    "block: a final LayerNorm on top": """x = x + self.attention(self.attention_norm(x), mask)
            x = x + self.ffn(self.ffn_norm(x))
            x = self.ffn_norm(x)""",
    "block: attention and feed-forward in parallel": """x = x + self.attention(self.attention_norm(x), mask) + self.ffn(self.ffn_norm(x))""",
    "block: feed-forward first": """x = x + self.ffn(self.ffn_norm(x))
            x = x + self.attention(self.attention_norm(x), mask)""",
    "block: mask not passed on": """x = x + self.attention(self.attention_norm(x))
            x = x + self.ffn(self.ffn_norm(x))""",
}
BLOCK_BUGS.update({
    "block: residuals added in place (x += ..., changes the caller's x)": """x += self.attention(self.attention_norm(x), mask)
            x += self.ffn(self.ffn_norm(x))""",
    "block: LayerNorms without gain and bias": dict(affine=", elementwise_affine=False"),
    # the notebook says no dropout: in eval() mode this is right, in train() mode not
    "block: dropout on each sublayer's output": dict(dropout="0.1", body="""x = x + self.dropout(self.attention(self.attention_norm(x), mask))
            x = x + self.dropout(self.ffn(self.ffn_norm(x)))"""),
})
WRONG.update(from_template("transformer_block", BLOCK, BLOCK_RIGHT, BLOCK_BUGS))
WRONG.update({
    "block: torch's TransformerEncoderLayer": ("transformer_block", """
        class TransformerBlock(nn.Module):
            def __init__(self, d_model, n_heads, d_ff):
                super().__init__()
                self.layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="gelu",
                                                        batch_first=True, norm_first=True)

            def forward(self, x, mask=None):
                return self.layer(x, src_mask=None if mask is None else ~mask)
    """),
    "block: the package's block": ("transformer_block", """
        from llmcourse.nn import TransformerBlock as _Block

        class TransformerBlock(_Block):
            def forward(self, x, mask=None):
                return super().forward(x, mask).hidden
    """),
})

HELPER_BUGS = [name for name, (gid, _) in WRONG.items() if gid in ("split_heads", "merge_heads")]
HELPER_BUGS += ["mha: mask inverted", "mha: a subclass of the package's module"]  # TransformerBlock uses the course's

# Correct solutions written in other styles: each must earn full marks, with the visible asserts too.
ALTERNATIVES = {
    "split: reshape, then permute": ("split_heads", """
        def split_heads(x, n_heads):
            B, T, d = x.shape
            return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)  # (B, h, T, hs)
    """),
    "merge: the heads concatenated": ("merge_heads", """
        def merge_heads(x):
            return torch.cat(x.unbind(dim=1), dim=-1)  # h tensors (B, T, hs) -> (B, T, h * hs)
    """),
    "mha: split_heads called by keyword": ("multi_head_attention", MHA.format(
        **{**MHA_RIGHT, "heads": ", n_heads=self.n_heads"})),
    "block: sublayers called with keyword arguments": ("transformer_block", BLOCK.format(**{**BLOCK_RIGHT, "body": """h = self.attention_norm(x)
            x = x + self.attention(h, mask=mask)
            x = x + self.ffn(x=self.ffn_norm(x))"""})),
}

EXERCISE = Exercise(
    folder="05_transformer", notebook="transformer", answers=ANSWERS, points=(10, 14),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS,
)


def test_the_references_agree():
    """The package's modules match torch's on copied weights; if not, the hidden tests' references are at fault."""
    import torch

    from llmcourse.nn import MultiHeadAttention, TransformerBlock

    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 32, norm_first=True).eval()
    a = block.attention
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True,
                                             norm_first=True).eval()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        layer.self_attn.out_proj.load_state_dict(a.out.state_dict())
        layer.linear1.load_state_dict(block.ffn.up.state_dict())
        layer.linear2.load_state_dict(block.ffn.down.state_dict())
        layer.norm1.load_state_dict(block.attention_norm.state_dict())
        layer.norm2.load_state_dict(block.ffn_norm.state_dict())
        x = torch.randn(2, 6, 16)
        causal = torch.ones(6, 6, dtype=torch.bool).tril()
        assert torch.allclose(block(x, causal).hidden, layer(x, src_mask=~causal), atol=1e-5)
        mha = MultiHeadAttention(16, 4)
        assert torch.allclose(mha(x)[0], mha(x, need_weights=True)[0], atol=1e-5)
