"""The transformer exercise, solutions/03_transformer/transformer.ipynb: do its graded tests grade well?

- the solution passes every graded test cell, with and without the visible asserts;
- the released stubs fail every graded test cell;
- each plausible wrong solution below fails its own test cell through the hidden tests
  alone (the visible asserts are removed first);
- a wrong split_heads or merge_heads costs points once: the tests of MultiHeadAttention
  run with the course's helpers, and those of TransformerBlock with its attention.

The cells run in this process (tests/exercise_support.py); one slow test uses a real kernel.
"""

from __future__ import annotations

import textwrap

import pytest

from exercise_support import (
    ROOT,
    check_costs_points_once,
    check_shape,
    check_solution_passes,
    check_stubs_fail,
    check_wrong_solution,
    graded,
    load,
    run,
    run_in_kernel,
)

NOTEBOOK = ROOT / "solutions" / "03_transformer" / "transformer.ipynb"
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
}
for _name, _bug in MHA_BUGS.items():
    WRONG[_name] = ("multi_head_attention", MHA.format(**{**MHA_RIGHT, **_bug}))

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

        def forward(self, x, mask=None):
            {body}
            return x
"""
BLOCK_RIGHT = dict(affine="", body="""x = x + self.attention(self.attention_norm(x), mask)
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
for _name, _body in BLOCK_BUGS.items():
    WRONG[_name] = ("transformer_block", BLOCK.format(**{**BLOCK_RIGHT, "body": _body}))
WRONG["block: LayerNorms without gain and bias"] = (
    "transformer_block", BLOCK.format(**{**BLOCK_RIGHT, "affine": ", elementwise_affine=False"}))
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

WRONG = {name: (gid, textwrap.dedent(code)) for name, (gid, code) in WRONG.items()}
HELPER_BUGS = [name for name, (gid, _) in WRONG.items() if gid in ("split_heads", "merge_heads")]


def test_notebook_shape():
    check_shape(load(NOTEBOOK), ANSWERS, (10, 14))


def test_solution_passes_every_test_cell():
    check_solution_passes(load(NOTEBOOK), ANSWERS)


@pytest.mark.parametrize("keep_hidden", [False, True], ids=["as-released", "as-autograded"])
def test_stubs_fail_every_test_cell(keep_hidden):
    check_stubs_fail(load(NOTEBOOK), ANSWERS, keep_hidden)


@pytest.mark.parametrize("name", list(WRONG))
def test_hidden_tests_catch_wrong_solution(name):
    answer_id, code = WRONG[name]
    check_wrong_solution(load(NOTEBOOK), ANSWERS, answer_id, code, name)


@pytest.mark.parametrize("name", HELPER_BUGS)
def test_a_wrong_helper_costs_points_once(name):
    """MultiHeadAttention is graded with the course's split and merge: a bug is not paid for twice."""
    answer_id, code = WRONG[name]
    check_costs_points_once(load(NOTEBOOK), answer_id, code, name)


@pytest.mark.parametrize("name", ["mha: mask inverted", "mha: a subclass of the package's module"])
def test_a_wrong_attention_costs_points_once(name):
    """TransformerBlock is graded, and checked for own code, with the course's multi-head attention."""
    answer_id, code = WRONG[name]
    assert answer_id == "multi_head_attention"
    check_costs_points_once(load(NOTEBOOK), answer_id, code, name)


def test_calling_split_heads_by_keyword_earns_full_marks():
    """The course's stand-ins for the student's helpers take the same argument names."""
    code = [c for c in load(NOTEBOOK).cells if c.metadata.get("nbgrader", {}).get("grade_id") == "multi_head_attention"]
    source = code[0].source.replace("split_heads(self.query(x), self.n_heads)", "split_heads(self.query(x), n_heads=self.n_heads)")
    assert "n_heads=self.n_heads" in source
    for hidden_only in (False, True):
        results = graded(run(load(NOTEBOOK), replace={"multi_head_attention": source}, hidden_only=hidden_only))
        assert all(error is None for error in results.values()), results


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


@pytest.mark.slow
def test_solution_runs_in_a_kernel():
    run_in_kernel(NOTEBOOK)
