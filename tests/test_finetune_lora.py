"""LoRA written from scratch, checked by hand-countable parameters and against the peft library.

Independent reference: ``peft``'s LoRA on ``transformers``' ``BertModel`` holding the same
all-MiniLM-L6-v2 weights, given the same A and B matrices.
"""

import pytest
import torch
from torch import nn

from llmcourse.finetune import (
    BertClassifier,
    LoRALinear,
    add_lora,
    count_trainable,
    freeze,
    lora_layers,
    merge_lora,
    unmerge_lora,
)
from llmcourse.models import Bert, BertConfig, from_minilm
from llmcourse.models.bert import minilm_path, rename_checkpoint_key
from llmcourse.tokenizers import WordPieceTokenizer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def randomise_b(model: nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    """Give every B a non-zero value, as training would (with B = 0 every comparison is trivially equal)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(scale * torch.randn(layer.lora_B.shape, generator=g, dtype=layer.lora_B.dtype))


def test_lora_linear_starts_equal_to_the_base_and_adds_alpha_over_r_times_b_a():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, r=2, alpha=8, dropout=0.0)
    x = torch.randn(3, 5, 6)  # (B, T, in)
    assert layer.lora_A.shape == (2, 6) and layer.lora_B.shape == (4, 2)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer
    randomise_b(layer)
    expected = x @ base.weight.T + base.bias + 4.0 * (x @ layer.lora_A.T @ layer.lora_B.T)  # alpha / r = 8 / 2
    torch.testing.assert_close(layer(x), expected)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad


def test_merge_equals_unmerged_and_unmerge_restores_the_base_weight():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), r=4, alpha=16, dropout=0.2).eval()
    randomise_b(layer)
    original = layer.base.weight.detach().clone()
    x = torch.randn(10, 16)
    unmerged = layer(x)
    layer.merge()
    torch.testing.assert_close(layer.base.weight, original + 4.0 * layer.lora_B @ layer.lora_A)  # W + (alpha/r) B A
    torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=1e-6)
    layer.merge()  # a second merge changes nothing
    torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=1e-6)
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, original, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged, rtol=0, atol=1e-6)


def test_dropout_acts_on_the_lora_path_only():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), r=4, alpha=4, dropout=0.5).train()
    x = torch.randn(10, 16)
    assert torch.equal(layer(x), layer.base(x))  # B = 0: dropout on the LoRA path cannot show
    randomise_b(layer)
    assert not torch.equal(layer(x), layer(x))  # two dropout masks
    assert torch.equal(layer.eval()(x), layer(x))


def tiny_classifier() -> BertClassifier:
    torch.manual_seed(0)
    config = BertConfig.tiny(vocab_size=100, d_model=32, n_head=2, max_positions=16, n_layer=3, mlm_head=False)
    return BertClassifier(Bert(config), n_classes=2, dropout=0.0)


def test_trainable_counts_on_query_and_value_and_on_every_linear_layer():
    d, f, r, layers = 32, 128, 4, 3
    model = tiny_classifier()
    freeze(model.encoder)
    names = add_lora(model.encoder, r=r, alpha=8)
    assert names == [f"blocks.{i}.attention.{p}" for i in range(layers) for p in ("query", "value")]
    assert count_trainable(model) == layers * 2 * r * (d + d) + (d * 2 + 2)  # A and B of q and v, plus the head

    model = tiny_classifier()
    freeze(model.encoder)
    names = add_lora(model.encoder, r=r, alpha=8, target_modules="all-linear")
    assert len(names) == layers * 6 and "pooler" not in names  # q, k, v, out, up, down
    per_block = 4 * r * (d + d) + r * (d + f) + r * (f + d)
    assert count_trainable(model) == layers * per_block + (d * 2 + 2)


def test_a_lora_model_starts_equal_to_the_base_and_merged_equals_unmerged():
    model = tiny_classifier().eval()
    ids = torch.randint(5, 100, (4, 12))
    with torch.no_grad():
        base = model(ids)
        add_lora(model.encoder, r=2, alpha=4, target_modules="all-linear")
        assert torch.equal(model(ids), base)
        randomise_b(model)
        unmerged = model(ids)
        merge_lora(model)
        merged = model(ids)
        assert (unmerged - base).abs().max() > 1e-3  # LoRA changed the model ...
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)  # ... and merging keeps the change
        unmerge_lora(model)
        torch.testing.assert_close(model(ids), unmerged, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"r": 0, "alpha": 1}, "r must be a positive integer"),
        ({"r": -2, "alpha": 1}, "r must be a positive integer"),
        ({"r": 2, "alpha": 0}, "alpha must be a positive number"),
        ({"r": 2, "alpha": -1.0}, "alpha must be a positive number"),
        ({"r": 2, "alpha": 1, "target_modules": ["query", "qkv"]}, "target_modules entry 'qkv' matches no linear"),
        ({"r": 2, "alpha": 1, "target_modules": []}, "target_modules is empty"),
        ({"r": 2, "alpha": 1, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_lora_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        add_lora(tiny_classifier().encoder, **kwargs)


# ----------------------------------------------------------------------------- against peft

PEFT_NAMES = {  # our module names -> the transformers BertModel's
    "query": "query", "value": "value", "key": "key",
    "all-linear": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
}


# measured: float32, query+value, r=4: at most 2.3e-6 apart on the real tokens (1.8e-5 on padded
# positions, which nothing reads); float64, every linear layer: 9e-15
@pytest.mark.parametrize(
    ("targets", "dtype", "tolerance"),
    [(["query", "value"], torch.float32, 1e-5), ("all-linear", torch.float64, 1e-12)],
)
def test_lora_matches_peft_on_the_transformers_bert(targets, dtype, tolerance):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tok = WordPieceTokenizer.from_minilm()
    rows = [tok.encode(s) for s in ["a gripping, beautifully acted film.", "dull and far too long", "ok"]]
    ids = torch.zeros(3, max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    mask = (ids != 0).long()

    ours = freeze(from_minilm().to(dtype))  # as peft does: only the adapters train
    wrapped = add_lora(ours, r=4, alpha=8, target_modules=targets)
    randomise_b(ours)
    reference = transformers.BertModel.from_pretrained(minilm_path(), attn_implementation="eager").to(dtype)
    peft_targets = PEFT_NAMES["all-linear"] if targets == "all-linear" else targets
    theirs = peft.get_peft_model(reference, peft.LoraConfig(r=4, lora_alpha=8, target_modules=peft_targets))
    copied = []
    for name, module in theirs.named_modules():
        if isinstance(module, peft.tuners.lora.Linear):
            mine = ours.get_submodule(rename_checkpoint_key(name.removeprefix("base_model.model.") + ".weight")[:-7])
            with torch.no_grad():
                module.lora_A["default"].weight.copy_(mine.lora_A)
                module.lora_B["default"].weight.copy_(mine.lora_B)
            copied.append(name)
    assert len(copied) == len(wrapped) == (12 if targets != "all-linear" else 36)
    r, d, f = 4, 384, 1_536  # six blocks: r (in + out) for each wrapped layer
    expected = 6 * (2 * r * (d + d) if targets != "all-linear" else 4 * r * (d + d) + 2 * r * (d + f))
    assert count_trainable(theirs) == count_trainable(ours) == expected  # 36,864 and 165,888
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(ids, mask).last_hidden_state  # (B, T, 384)
        b = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
        plain = from_minilm().to(dtype)(ids, mask).last_hidden_state
    real = mask.bool()
    assert (a - plain)[real].abs().max() > 0.1  # the adapters make a real difference ...
    assert (a - b)[real].abs().max() < tolerance  # ... and both libraries make the same one
