"""The course GPT: one longer pretraining run, trained once, committed with the package.

The Pretraining chapter trains small models live, in a minute. The chapters
after it (Generation, the attention views, fine-tuning, ethics) need a GPT that
writes words, so this module trains one for about an hour on two CPU cores, with
the same ``Trainer`` and the same IMDB stream, and stores the result in
``llmcourse/weights/``:

- ``course-gpt.safetensors``  the weights (the tied embedding stored once)
- ``course-gpt-tokenizer.json``  its byte-level BPE tokenizer
- ``course-gpt.json``  the provenance record: the recipe, SHA-256 hashes of the
  tokenizer, the training text, the token stream and the weights, the whole
  training log, wall time, the final losses and the held-out bits per byte

To train it again (it resumes from ``course-gpt.ckpt.pt`` in the output folder
if interrupted)::

    python -m llmcourse.training.course --out DIR

``--steps N`` stops after N updates and writes only the record: the tests use it
to show that the first losses of the committed log come from this code.

Introduced in: the Pretraining chapter.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmcourse.data import imdb_texts
from llmcourse.models import GPT, GPTConfig
from llmcourse.tokenizers import BPETokenizer
from llmcourse.training.corpus import cache_dir, digest, texts_digest
from llmcourse.training.objectives import stream_loss
from llmcourse.training.presets import PretrainPreset, make_trainer, preset_tokenizer
from llmcourse.training.trainer import TrainConfig, Trainer

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
WEIGHTS, TOKENIZER, RECORD, CHECKPOINT = (
    "course-gpt.safetensors", "course-gpt-tokenizer.json", "course-gpt.json", "course-gpt.ckpt.pt")
HELD_OUT_REVIEWS = 500  # the first validation reviews: the held-out text every model is scored on


def course_preset() -> PretrainPreset:
    """The course GPT's recipe: 4,096 BPE tokens, 4 layers of width 256, context 256, 1,200 steps.

    Chosen by measurement on this course's 2-core CPU: after the same 200 s of
    training (one thread, 4 layers of width 256), a 4,096-token BPE reached about
    2.6 bits per byte of held-out text against 2.8 for a 2,048-token one; and a
    model of about 4M parameters at ~1,800 tokens/s is what an hour of two cores
    can train on a few million tokens.

    Introduced in: the Pretraining chapter.
    """
    train = TrainConfig(max_steps=1_200, batch_size=16, lr=3e-3, warmup_steps=100, eval_interval=100,
                        eval_batches=16, checkpoint_interval=50, progress=True)
    return PretrainPreset("course", vocab_size=4_096, tokenizer_documents=5_000, block_size=256,
                          n_layer=4, n_head=4, d_model=256, gpt_train=train, bert_train=train)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_hash(tokenizer: BPETokenizer) -> str:
    """SHA-256 of the tokenizer's JSON (its merges, pattern and special tokens)."""
    return digest(tokenizer.to_json())


def held_out_bytes(texts: list[str]) -> int:
    """The length of ``texts`` in bytes, counting each document's end as one byte (as the streams do)."""
    return sum(len(t.encode("utf-8")) + 1 for t in texts)


def bits_per_byte(loss: float, n_tokens: int, n_bytes: int) -> float:
    """Convert a mean loss in nats per token over ``n_tokens`` predictions into bits per byte.

    Models with different tokenizers compare fairly this way: each pays for the
    same text, whatever it cuts it into.

    Introduced in: the Pretraining chapter.
    """
    return loss * n_tokens / (n_bytes * math.log(2))


def held_out_stream(tokenizer: BPETokenizer) -> tuple[np.ndarray, int]:
    """The held-out reviews as ``tokenizer``'s stream of ids, and their length in bytes."""
    from llmcourse.training.corpus import encode_corpus

    texts = imdb_texts("validation")[:HELD_OUT_REVIEWS]
    return encode_corpus(tokenizer, texts, workers=1), held_out_bytes(texts)


# ----------------------------------------------------------------------------- training


def _environment(threads: int) -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": _cpu_name(), "threads": threads}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def train_course_gpt(out: str | Path, steps: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train the course GPT into ``out`` (resuming there); ``steps`` stops early and saves only the record.

    Introduced in: the Pretraining chapter.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    preset = course_preset()
    tokenizer = preset_tokenizer(preset)
    trainer = make_trainer(preset, "gpt")
    full = steps is None
    trainer.config = dataclasses.replace(trainer.config, checkpoint_path=str(out / CHECKPOINT) if full else None,
                                         progress=full)
    first_steps: list[int] = []  # the first update this invocation made (> 1 after a resume)
    callbacks = [lambda t: first_steps.append(t.step) if not first_steps else None]
    start = time.perf_counter()
    try:
        trainer.fit(callbacks=callbacks + ([] if full else [_stop_after(steps)]))
    except _Stop:
        pass
    wall = time.perf_counter() - start
    record = _record(preset, tokenizer, trainer, wall, threads)
    record["resumed_from_step"] = first_steps[0] - 1 if first_steps else trainer.step
    if full:
        from safetensors.torch import save_model

        save_model(trainer.raw_model, str(out / WEIGHTS), metadata={"record": RECORD})
        tokenizer.save(out / TOKENIZER)
        record |= _final_numbers(trainer.raw_model.eval(), tokenizer)
        record["weights_sha256"] = sha256_file(out / WEIGHTS)
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


class _Stop(Exception):
    pass


def _stop_after(steps: int):
    def callback(trainer: Trainer) -> None:
        if trainer.step >= steps:
            raise _Stop

    return callback


def _record(preset: PretrainPreset, tokenizer: BPETokenizer, trainer: Trainer, wall: float,
            threads: int) -> dict[str, Any]:
    values = dataclasses.asdict(preset)
    values.pop("bert_train")
    for field in ("checkpoint_path", "checkpoint_interval", "progress"):
        values["gpt_train"].pop(field)
    h = trainer.history
    stream = np.asarray(trainer.train_tokens)
    return {
        "command": "python -m llmcourse.training.course",
        "preset": values,
        "model_config": dataclasses.asdict(trainer.raw_model.config),
        "parameters": trainer.raw_model.num_parameters(),
        "tokenizer_sha256": tokenizer_hash(tokenizer),
        "training_text_sha256": texts_digest(imdb_texts("train")),
        "training_stream_sha256": hashlib.sha256(stream.tobytes()).hexdigest(),
        "training_stream_tokens": int(len(stream)),
        "environment": _environment(threads),
        "wall_seconds": wall,  # of this invocation (a resumed run counts only what it added)
        "training_seconds": h.seconds[-1] if h.seconds else 0.0,  # every update of the run, evaluations excluded
        "steps": trainer.step,
        "tokens": h.tokens[-1] if h.tokens else 0,
        "final_train_loss": float(np.mean(h.train_loss[-50:])) if h.train_loss else None,
        "final_val_loss": h.val_loss[-1] if h.val_loss else None,
        "history": h.as_dict(),
    }


def _final_numbers(model: GPT, tokenizer: BPETokenizer) -> dict[str, Any]:
    ids, n_bytes = held_out_stream(tokenizer)
    with torch.no_grad():
        loss = stream_loss(model, ids, model.config.block_size)
    return {"held_out": {"reviews": HELD_OUT_REVIEWS, "tokens": int(len(ids)), "bytes": n_bytes,
                         "loss": loss, "bits_per_byte": bits_per_byte(loss, len(ids) - 1, n_bytes - 1)}}


# ----------------------------------------------------------------------------- loading


def course_record(folder: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The provenance record of the committed course GPT.

    Introduced in: the Pretraining chapter.
    """
    path = Path(folder) / RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: train the course GPT with `python -m llmcourse.training.course`")
    return json.loads(path.read_text(encoding="utf-8"))


def course_gpt(device: torch.device | str = "cpu", folder: str | Path = WEIGHTS_DIR) -> tuple[GPT, BPETokenizer]:
    """The committed course GPT (in eval mode) and its tokenizer.

    Introduced in: the Pretraining chapter; used by the chapters after it.
    """
    from safetensors.torch import load_model

    folder = Path(folder)
    record = course_record(folder)
    model = GPT(GPTConfig(**record["model_config"]))
    load_model(model, str(folder / WEIGHTS))
    tokenizer = BPETokenizer.load(folder / TOKENIZER)
    if tokenizer_hash(tokenizer) != record["tokenizer_sha256"]:
        raise ValueError(f"{folder / TOKENIZER} does not match the record's tokenizer hash")
    return model.to(device).eval(), tokenizer


def course_trainer(folder: str | Path = WEIGHTS_DIR) -> Trainer:
    """A trainer of the course recipe holding the committed weights (to evaluate them as training did)."""
    trainer = make_trainer(course_preset(), "gpt")
    model, _ = course_gpt(folder=folder)
    trainer.raw_model.load_state_dict(model.state_dict())
    return trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmcourse.training.course", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="output folder (default: the package's weights/)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many updates; write only the record")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    record = train_course_gpt(args.out, args.steps, args.threads)
    print(f"course GPT: {record['steps']} steps in {record['wall_seconds']:.0f} s; "
          f"validation loss {record['final_val_loss']}; record in {Path(args.out) / RECORD}")


if __name__ == "__main__":
    main()
