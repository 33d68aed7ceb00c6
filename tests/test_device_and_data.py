import pytest
import torch

import llmcourse
from llmcourse import data


def test_get_device_default_is_available(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_DEVICE", raising=False)
    dev = llmcourse.get_device()
    assert dev.type in {"cuda", "mps", "cpu"}
    torch.zeros(1, device=dev)  # really usable


def test_get_device_override_cpu(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_DEVICE", "cpu")
    assert llmcourse.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["tpu", "gpu", "cpu:0", "cuda:x", "cuda:"])
def test_get_device_unknown_value_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("LLMCOURSE_DEVICE", value)
    with pytest.raises(ValueError, match="LLMCOURSE_DEVICE"):
        llmcourse.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_get_device_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA"):
        llmcourse.get_device()


def test_set_seed_repeats_torch_and_python():
    import random

    llmcourse.set_seed(7)
    a = (torch.rand(3), random.random())
    llmcourse.set_seed(7)
    b = (torch.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    with pytest.raises(TypeError):
        llmcourse.set_seed("7")


def test_imdb_texts_size_and_cleaning():
    texts = data.imdb_texts()
    assert len(texts) == data.IMDB_SIZE == 25_000
    assert not any("<br" in t.lower() for t in texts[:2000])
    train, val = data.imdb_texts("train"), data.imdb_texts("validation")
    assert (len(train), len(val)) == (22_500, 2_500)
    # The two splits partition the 25,000 reviews (the corpus has a few exact duplicates).
    from collections import Counter

    assert Counter(train) + Counter(val) == Counter(texts)
    assert len(texts) > len(set(texts)), "the corpus has exact duplicates..."
    assert not set(train) & set(val), "...and each one stays inside one split"
    assert data.imdb_texts("validation") == val  # deterministic
    with pytest.raises(ValueError, match="split"):
        data.imdb_texts("test")


def test_rotten_tomatoes_splits_are_fixed_disjoint_and_balanced():
    splits = {s: data.rotten_tomatoes(s) for s in ("train", "validation", "test")}
    assert {s: len(v) for s, v in splits.items()} == data.ROTTEN_TOMATOES_SIZES
    assert sum(map(len, splits.values())) == 8_530
    texts = [{e.text for e in v} for v in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    for examples in splits.values():
        assert {e.label for e in examples} == {0, 1}
        positives = sum(e.label for e in examples) / len(examples)
        assert 0.4 < positives < 0.6
    assert data.rotten_tomatoes("test") == splits["test"]  # deterministic
    with pytest.raises(ValueError, match="split"):
        data.rotten_tomatoes("dev")


def test_tiny_corpus_is_small_text():
    text = data.tiny_corpus()
    assert isinstance(text, str) and 100 < len(text) < 2000


def test_autocast_is_a_no_op_on_cpu():
    x = torch.randn(4, 4)
    with llmcourse.autocast("cpu"):
        assert (x @ x).dtype == torch.float32


@pytest.mark.gpu
def test_cuda_device_and_bf16_autocast(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_DEVICE", raising=False)
    dev = llmcourse.get_device()
    assert dev.type == "cuda"
    monkeypatch.setenv("LLMCOURSE_DEVICE", "cuda:0")
    assert llmcourse.get_device() == torch.device("cuda:0")
    x = torch.randn(64, 64, device=dev)
    with llmcourse.autocast(dev):
        y = x @ x
    want = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    assert y.dtype == want
    torch.testing.assert_close(y.float(), x @ x, atol=0.5, rtol=0.05)


@pytest.mark.gpu
def test_set_seed_repeats_cuda():
    llmcourse.set_seed(3)
    a = torch.rand(5, device="cuda")
    llmcourse.set_seed(3)
    assert torch.equal(a, torch.rand(5, device="cuda"))
