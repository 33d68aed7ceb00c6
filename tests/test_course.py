"""The committed course GPT: it loads, it reproduces its record, and it comes from this code."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from llmcourse.data import imdb_texts
from llmcourse.models import GPT
from llmcourse.training import imdb_tokens
from llmcourse.training.corpus import texts_digest
from llmcourse.training.course import (
    RECORD,
    WEIGHTS,
    WEIGHTS_DIR,
    bits_per_byte,
    course_gpt,
    course_preset,
    course_record,
    course_trainer,
    held_out_bytes,
    sha256_file,
    tokenizer_hash,
)
from llmcourse.training.presets import preset_tokenizer


@pytest.fixture(scope="module")
def record():
    return course_record()


def test_weights_are_small_and_match_the_record(record):
    path = WEIGHTS_DIR / WEIGHTS
    assert path.stat().st_size <= 25 * 2**20, f"{path} is {path.stat().st_size / 2**20:.1f} MiB, over 25 MiB"
    assert sha256_file(path) == record["weights_sha256"]
    model, tokenizer = course_gpt()
    assert isinstance(model, GPT) and not model.training
    assert model.num_parameters() == record["parameters"]
    assert model.lm_head.weight is model.token_embedding.weight, "the tied embedding is restored as one matrix"
    assert tokenizer.vocab_size == model.config.vocab_size == course_preset().vocab_size


def test_record_holds_its_provenance(record):
    h = record["history"]
    assert record["steps"] == course_preset().gpt_train.max_steps == h["step"][-1]
    assert len(h["train_loss"]) == len(h["lr"]) == len(h["tokens"]) == record["steps"]
    assert h["eval_step"][-1] == record["steps"] and record["final_val_loss"] == h["val_loss"][-1]
    assert record["final_val_loss"] < h["val_loss"][0] - 1.0, "the run learned: its validation loss fell"
    assert record["wall_seconds"] > 0 and record["environment"]["torch"]
    held = record["held_out"]
    assert held["bits_per_byte"] == pytest.approx(bits_per_byte(held["loss"], held["tokens"] - 1, held["bytes"] - 1))


def test_record_hashes_match_this_tokenizer_and_data(record):
    tokenizer = preset_tokenizer(course_preset())  # trained again here from the same reviews (or cached)
    assert tokenizer_hash(tokenizer) == record["tokenizer_sha256"]
    assert tokenizer_hash(course_gpt()[1]) == record["tokenizer_sha256"]
    assert texts_digest(imdb_texts("train")) == record["training_text_sha256"]
    import hashlib

    stream = np.asarray(imdb_tokens(tokenizer, "train"))
    assert len(stream) == record["training_stream_tokens"]
    assert hashlib.sha256(stream.tobytes()).hexdigest() == record["training_stream_sha256"]


def test_committed_weights_reproduce_the_recorded_validation_loss(record):
    trainer = course_trainer()
    loss = trainer.evaluate()  # the same fixed validation batches the run evaluated on
    assert loss == pytest.approx(record["final_val_loss"], rel=1e-4, abs=1e-4)


def test_held_out_bytes_counts_utf8_and_document_ends():
    assert held_out_bytes(["ab", "é"]) == 2 + 1 + 2 + 1
    assert bits_per_byte(math.log(2), 10, 10) == pytest.approx(1.0)
    assert bits_per_byte(math.log(2), 10, 20) == pytest.approx(0.5)  # two bytes per token: half a bit each


def test_rerunning_the_command_reproduces_the_first_losses(record, tmp_path):
    """The same command, stopped after a few updates, gives the committed log's first losses."""
    steps = 4
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "llmcourse.training.course", "--out", str(tmp_path),
                           "--steps", str(steps), "--threads", "1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rerun = json.loads((tmp_path / RECORD).read_text())
    assert rerun["steps"] == steps
    assert rerun["tokenizer_sha256"] == record["tokenizer_sha256"]
    assert rerun["training_stream_sha256"] == record["training_stream_sha256"]
    want = record["history"]["train_loss"][:steps]
    got = rerun["history"]["train_loss"]
    # float32 on another CPU may differ in the last digits; another seed or recipe differs by far more
    assert np.allclose(got, want, rtol=0, atol=2e-3), f"re-run losses {got} differ from the record's {want}"
    assert rerun["history"]["lr"] == pytest.approx(record["history"]["lr"][:steps])


def test_course_command_rejects_nonsense(tmp_path):
    done = subprocess.run([sys.executable, "-m", "llmcourse.training.course", "--out", str(tmp_path), "--steps", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--steps must be a positive integer" in done.stderr


def test_course_gpt_reports_a_missing_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m llmcourse.training.course"):
        course_gpt(folder=tmp_path)


@torch.no_grad()
def test_course_gpt_writes_known_words(record):
    """Greedy decoding from the committed weights does not loop from the first tokens."""
    from llmcourse.generation import generate

    model, tokenizer = course_gpt()
    out = generate(model, torch.tensor(tokenizer.encode("This movie was")), 24, temperature=0)
    words = tokenizer.decode(out.tolist()).split()
    assert len(set(words[:8])) >= 6, f"greedy decoding repeats itself at once: {' '.join(words)}"
