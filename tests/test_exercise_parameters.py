"""The parameter-counting exercise, solutions/05_parameters/parameters.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below: each
wrong formula fails its own test cell through the hidden tests alone, and so does a right
count that is not a formula (the package's count, or a model built and summed); a wrong
block count costs points once (the model counts are graded with the course's). The
tests here are this exercise's own: the references agree with real models and with the
published totals, and the check behind "count by formula" sees through helpers.
"""

from __future__ import annotations

import textwrap

from exercise_support import Exercise, from_template

ANSWERS = ["count_block_parameters", "count_bert_parameters", "count_gpt_parameters"]

BLOCK = """
    def count_block_parameters(d_model, d_ff):
        d = d_model
        attention = {attention}
        feed_forward = {feed_forward}
        layer_norms = {layer_norms}
        return attention + feed_forward + layer_norms
"""
BLOCK_RIGHT = dict(attention="4 * (d * d + d)", feed_forward="(d * d_ff + d_ff) + (d_ff * d + d)",
                   layer_norms="2 * (2 * d)")
BLOCK_BUGS = {
    "block: the big matrices only (no biases, no LayerNorms)": dict(
        attention="4 * d * d", feed_forward="2 * d * d_ff", layer_norms="0"),
    "block: no biases": dict(attention="4 * d * d", feed_forward="2 * d * d_ff"),
    "block: no attention biases": dict(attention="4 * d * d"),
    "block: no feed-forward biases": dict(feed_forward="2 * d * d_ff"),
    "block: feed-forward biases both of width d_ff": dict(feed_forward="2 * (d * d_ff + d_ff)"),
    "block: no LayerNorms": dict(layer_norms="0"),
    "block: one LayerNorm": dict(layer_norms="2 * d"),
    "block: LayerNorms with a gain only, counted once": dict(layer_norms="d"),
    "block: three attention matrices (no output projection)": dict(attention="3 * (d * d + d)"),
    "block: d_ff ignored (always 4 d)": dict(feed_forward="(d * 4 * d + 4 * d) + (4 * d * d + d)"),
    "block: attention counted per head of width d": dict(attention="4 * (d * d + d) * 2"),
}
WRONG = from_template("count_block_parameters", BLOCK, BLOCK_RIGHT, BLOCK_BUGS)
WRONG.update({
    "block: builds the package's block and sums its sizes": ("count_block_parameters", """
        def count_block_parameters(d_model, d_ff):
            from llmcourse.nn import TransformerBlock
            with torch.device("meta"):
                return sum(p.numel() for p in TransformerBlock(d_model, 1, d_ff).parameters())
    """),
    "block: builds torch layers on the meta device and sums their sizes": ("count_block_parameters", """
        def _size(layer):
            return sum(p.numel() for p in layer.parameters())

        def count_block_parameters(d_model, d_ff):
            with torch.device("meta"):
                layers = [nn.Linear(d_model, d_model) for _ in range(4)]
                layers += [nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)]
            return sum(_size(layer) for layer in layers)
    """),
    "block: multiplies the shapes of torch layers": ("count_block_parameters", """
        import math

        def count_block_parameters(d_model, d_ff):
            with torch.device("meta"):
                layer = nn.TransformerEncoderLayer(d_model, 1, d_ff)
            return sum(math.prod(t.shape) for t in layer.state_dict().values())
    """),
})

BERT = """
    def count_bert_parameters(vocab_size, max_positions, type_vocab_size, n_layer, d_model, d_ff, mlm_head=False):
        d = d_model
        embeddings = {embeddings}
        blocks = {blocks}
        pooler = {pooler}
        total = embeddings + blocks + pooler
        if {mlm_condition}:
            total += {mlm}
        return total
"""
BERT_RIGHT = dict(
    embeddings="(vocab_size + max_positions + type_vocab_size) * d + 2 * d",
    blocks="n_layer * count_block_parameters(d, d_ff)",
    pooler="d * d + d",
    mlm_condition="mlm_head",
    mlm="(d * d + d) + 2 * d + vocab_size",
)
BERT_BUGS = {
    "bert: no position embeddings": dict(embeddings="(vocab_size + type_vocab_size) * d + 2 * d"),
    "bert: no segment embeddings": dict(embeddings="(vocab_size + max_positions) * d + 2 * d"),
    "bert: no embedding LayerNorm": dict(embeddings="(vocab_size + max_positions + type_vocab_size) * d"),
    "bert: two segments always": dict(embeddings="(vocab_size + max_positions + 2) * d + 2 * d"),
    "bert: 512 positions always": dict(embeddings="(vocab_size + 512 + type_vocab_size) * d + 2 * d"),
    "bert: no pooler": dict(pooler="0"),
    "bert: pooler without its bias": dict(pooler="d * d"),
    "bert: a final LayerNorm, as in GPT": dict(pooler="d * d + d + 2 * d"),
    "bert: one block too many": dict(blocks="(n_layer + 1) * count_block_parameters(d, d_ff)"),
    "bert: d_ff taken as 4 d": dict(blocks="n_layer * count_block_parameters(d, 4 * d)"),
    "bert: masked-LM head ignored": dict(mlm_condition="False"),
    "bert: masked-LM head always counted": dict(mlm_condition="True"),
    "bert: masked-LM output matrix counted again (not tied)": dict(mlm="(d * d + d) + 2 * d + vocab_size + vocab_size * d"),
    "bert: masked-LM head without its output bias": dict(mlm="(d * d + d) + 2 * d"),
    "bert: masked-LM head without its LayerNorm": dict(mlm="(d * d + d) + vocab_size"),
}
WRONG.update(from_template("count_bert_parameters", BERT, BERT_RIGHT, BERT_BUGS))
WRONG.update({
    "bert: the package's count": ("count_bert_parameters", """
        from llmcourse.analysis import count_parameters
        from llmcourse.models import BertConfig

        def count_bert_parameters(vocab_size, max_positions, type_vocab_size, n_layer, d_model, d_ff, mlm_head=False):
            return count_parameters(BertConfig(vocab_size, max_positions, type_vocab_size, n_layer, 1, d_model, d_ff,
                                               mlm_head=mlm_head))
    """),
    "bert: builds the model on the meta device and sums": ("count_bert_parameters", """
        def count_bert_parameters(vocab_size, max_positions, type_vocab_size, n_layer, d_model, d_ff, mlm_head=False):
            from llmcourse.models import Bert, BertConfig
            with torch.device("meta"):
                model = Bert(BertConfig(vocab_size, max_positions, type_vocab_size, n_layer, 1, d_model, d_ff,
                                        mlm_head=mlm_head))
            return sum(p.numel() for p in model.parameters())
    """),
})

GPT = """
    def count_gpt_parameters(vocab_size, block_size, n_layer, d_model, d_ff, tied=True):
        d = d_model
        embeddings = {embeddings}
        blocks = n_layer * count_block_parameters(d, d_ff)
        final_norm = {final_norm}
        output = {output}
        return embeddings + blocks + final_norm + output
"""
GPT_RIGHT = dict(embeddings="(vocab_size + block_size) * d", final_norm="2 * d",
                 output="0 if tied else vocab_size * d")
GPT_BUGS = {
    "gpt: tied output matrix counted twice": dict(output="vocab_size * d"),
    "gpt: output matrix never counted": dict(output="0"),
    "gpt: output layer with a bias when untied": dict(output="0 if tied else vocab_size * d + vocab_size"),
    "gpt: no position embeddings": dict(embeddings="vocab_size * d"),
    "gpt: no final LayerNorm": dict(final_norm="0"),
    "gpt: final LayerNorm without its shift": dict(final_norm="d"),
    "gpt: segments and a pooler, as in BERT": dict(embeddings="(vocab_size + block_size + 2) * d + 2 * d + d * d + d"),
    "gpt: tied flag read the wrong way round": dict(output="vocab_size * d if tied else 0"),
}
WRONG.update(from_template("count_gpt_parameters", GPT, GPT_RIGHT, GPT_BUGS))
WRONG.update({
    "gpt: the package's count": ("count_gpt_parameters", """
        import llmcourse.analysis as _analysis
        from llmcourse.models import GPTConfig

        def count_gpt_parameters(vocab_size, block_size, n_layer, d_model, d_ff, tied=True):
            n = _analysis.count_parameters(GPTConfig(vocab_size, block_size, n_layer, 1, d_model, d_ff))
            return n if tied else n + vocab_size * d_model
    """),
    "gpt: sizes of meta tensors": ("count_gpt_parameters", """
        def count_gpt_parameters(vocab_size, block_size, n_layer, d_model, d_ff, tied=True):
            tables = [torch.empty(vocab_size, d_model, device="meta"), torch.empty(block_size, d_model, device="meta")]
            rest = n_layer * count_block_parameters(d_model, d_ff) + 2 * d_model
            return sum(t.nelement() for t in tables) + rest + (0 if tied else vocab_size * d_model)
    """),
})

# Correct counts written in other styles: each must earn full marks, with the visible asserts too.
ALTERNATIVES = {
    "block: a helper that counts one linear layer": ("count_block_parameters", """
        def linear(n_in, n_out):
            return n_in * n_out + n_out

        def count_block_parameters(d_model, d_ff):
            return 4 * linear(d_model, d_model) + linear(d_model, d_ff) + linear(d_ff, d_model) + 4 * d_model
    """),
    "block: expanded polynomial": ("count_block_parameters", """
        def count_block_parameters(d_model, d_ff):
            return 4 * d_model**2 + 2 * d_model * d_ff + d_ff + 9 * d_model
    """),
    "bert: sum of a list of parts": ("count_bert_parameters", """
        def count_bert_parameters(vocab_size, max_positions, type_vocab_size, n_layer, d_model, d_ff, mlm_head=False):
            d = d_model
            parts = [vocab_size * d, max_positions * d, type_vocab_size * d, 2 * d,
                     n_layer * count_block_parameters(d, d_ff), d * d + d]
            if mlm_head:
                parts += [d * d + d, 2 * d, vocab_size]
            return sum(parts)
    """),
    "gpt: untied output added with int(not tied)": ("count_gpt_parameters", """
        def count_gpt_parameters(vocab_size, block_size, n_layer, d_model, d_ff, tied=True):
            tables = (vocab_size + block_size) * d_model
            return tables + n_layer * count_block_parameters(d_model, d_ff) + 2 * d_model + int(not tied) * vocab_size * d_model
    """),
}

BLOCK_BUGS = [name for name, (gid, _) in WRONG.items() if gid == "count_block_parameters"]
# four wrong formulas, and every block count that is not a formula (it must cost its own points only)
HELPER_BUGS = BLOCK_BUGS[:4] + [name for name in BLOCK_BUGS if "builds" in name or "shapes" in name]

EXERCISE = Exercise(
    folder="05_parameters", notebook="parameters", answers=ANSWERS, points=(8, 12),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS,
)


def test_the_references_agree():
    """The package's formula equals a model built on the meta device, and the published rounded totals."""
    import torch

    from llmcourse.analysis import count_parameters
    from llmcourse.models import GPT, Bert, BertConfig, GPTConfig

    for config, build in [(BertConfig(vocab_size=77, max_positions=9, type_vocab_size=3, n_layer=2, n_head=1,
                                      d_model=10, d_ff=14), Bert),
                          (BertConfig.tiny(mlm_head=False), Bert),
                          (GPTConfig(vocab_size=77, block_size=9, n_layer=3, n_head=1, d_model=10, d_ff=14), GPT),
                          (GPTConfig.gpt2_small(), GPT)]:
        with torch.device("meta"):
            model = build(config)
        assert count_parameters(config) == sum(p.numel() for p in model.parameters())
    assert round(count_parameters(BertConfig.base(mlm_head=False)), -7) == 110_000_000  # BERT-base, "110M" (Devlin et al. 2019)
    assert round(count_parameters(GPTConfig.gpt3()), -9) == 175_000_000_000  # GPT-3, "175B" (Brown et al. 2020)


def test_forbidden_uses_sees_through_helpers_and_classes():
    """The check behind 'count by formula': direct, aliased, imported inside, or in a helper."""
    import torch

    from llmcourse.grading.checks import forbidden_uses

    from llmcourse.grading.checks import package_uses
    from llmcourse.nn import TransformerBlock

    namespace: dict = {"__name__": "__main__", "torch": torch, "nn": torch.nn, "make": torch.nn.Linear,
                       "Block": TransformerBlock}
    exec(textwrap.dedent("""
        def plain(d):
            return 4 * d * d
        def direct(d):
            return torch.empty(d).numel()
        def aliased(d):
            return sum(p.nelement() for p in make(d, d).parameters())
        def imports(d):
            import torch.nn as tnn
            return d
        def helper(d):
            return 2 * direct(d)
        class Layer(nn.Module):
            def size(self):
                return 0
        def uses_class(d):
            return Layer().size()
        class Empty(Block):
            pass
        def uses_empty_subclass(d):
            return Empty(d, 1, d)
    """), namespace)
    forbidden = ["torch", "numel", "nelement", "parameters", torch, torch.nn.Module]
    assert forbidden_uses(namespace["plain"], forbidden) == []
    assert forbidden_uses(namespace["direct"], forbidden) == ["numel", "torch"]
    assert forbidden_uses(namespace["aliased"], forbidden) == ["Linear", "nelement", "parameters"]
    assert forbidden_uses(namespace["imports"], forbidden) == ["torch.nn"]
    assert forbidden_uses(namespace["helper"], forbidden) == ["numel", "torch"]
    assert forbidden_uses(namespace["uses_class"], forbidden) == ["Module"]  # a class of the notebook is walked into
    assert package_uses(namespace["uses_empty_subclass"]) == ["TransformerBlock"]
    assert package_uses(namespace["plain"]) == []
