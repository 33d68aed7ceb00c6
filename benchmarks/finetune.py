"""Fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes: seconds per epoch and peak memory of each regime.

    .venv/bin/python benchmarks/finetune.py                 # CPU, 2 threads
    .venv/bin/python benchmarks/finetune.py --device cuda   # bf16 autocast
    .venv/bin/python benchmarks/finetune.py --regimes lora-qv,full --steps 10

Regimes (chapter 8, Fine-tuning):

- ``features``: the frozen encoder's mean-pooled vectors for the whole training split,
  computed once (forward only, no gradients); a logistic regression then trains on them;
- ``head``: a classification head on the frozen encoder, trained through the ``Trainer``;
- ``last-2``: the head and the last two blocks;
- ``last-2-cached``: the same, trained on the stored output of the four frozen blocks below
  them (computed once, before the clock starts; its time is printed apart), so that only
  the top two blocks run at each step;
- ``lora-qv``: LoRA (r = 4, alpha = 8) on the query and value projections, plus the head;
- ``lora-all``: LoRA (r = 4) on every linear layer of the encoder, plus the head;
- ``full``: every parameter.

Every trained regime runs through :class:`llmcourse.training.Trainer` (AdamW, clipping,
bf16 autocast on CUDA) with the ``Classification`` objective: ``--warmup`` unmeasured
steps, then ``--steps`` measured ones (the trainer's own per-update clock,
which ends at the update's ``loss.item()``). Seconds per epoch = the median step time times
the steps of one pass over the 6,824 training sentences at ``--batch``. Each regime runs
in its own process, so the CPU's peak resident memory (``ru_maxrss``, imports and data
included) is that regime's; on CUDA the peak is ``torch.cuda.max_memory_allocated``.

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import torch

REGIMES = ("features", "head", "last-2", "last-2-cached", "lora-qv", "lora-all", "full")


def build(regime: str):
    """The classifier for ``regime``, with exactly the parameters it trains left trainable."""
    from llmcourse.finetune import BertClassifier, add_lora, freeze, unfreeze_last
    from llmcourse.models import from_minilm

    model = BertClassifier(from_minilm())
    if regime == "full":
        model.encoder.pooler.requires_grad_(False)
        return model
    freeze(model.encoder)
    if regime in ("last-2", "last-2-cached"):
        unfreeze_last(model, 2)
    elif regime == "lora-qv":
        add_lora(model.encoder, r=4, alpha=8, target_modules=("query", "value"))
    elif regime == "lora-all":
        add_lora(model.encoder, r=4, alpha=8, target_modules="all-linear")
    return model


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_regime(regime: str, device: torch.device, args) -> dict:
    from llmcourse.finetune import count_trainable, encode_sentences
    from llmcourse.data import rotten_tomatoes
    from llmcourse.tokenizers import WordPieceTokenizer
    from llmcourse.training import Classification, TrainConfig, Trainer

    tokenizer = WordPieceTokenizer.from_minilm()
    train, val = rotten_tomatoes("train"), rotten_tomatoes("validation")
    data = encode_sentences(tokenizer, [e.text for e in train], [e.label for e in train], max_length=64)
    val_data = encode_sentences(tokenizer, [e.text for e in val], [e.label for e in val], max_length=64)
    steps_per_epoch = math.ceil(data.n_sentences / args.batch)
    model = build(regime).to(device)
    if regime == "features":
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            for i in range(0, data.n_sentences, args.batch):
                ids = data.ids[i : i + args.batch]  # (B, T), cut to the batch's longest sentence as training does
                ids = ids[:, : int((ids != data.pad_id).sum(1).max())].to(device)
                model.sentence_vectors(ids, (ids != data.pad_id).long())
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch = time.perf_counter() - start
        return {"regime": regime, "trainable": 0, "s_per_step": epoch / steps_per_epoch, "s_per_epoch": epoch,
                "peak_mb": peak_memory_mb(device)}
    config = TrainConfig(max_steps=args.warmup + args.steps, batch_size=args.batch, lr=1e-4, warmup_steps=1,
                         eval_interval=10**9, progress=False)
    extra = {}
    if regime == "last-2-cached":
        from llmcourse.finetune import CachedClassification, TopClassifier, frozen_states

        start = time.perf_counter()
        data, val_data = frozen_states(model, data, k=2), frozen_states(model, val_data, k=2)
        extra["caching_s"] = time.perf_counter() - start
        model, objective = TopClassifier(model, 2), CachedClassification(data.width, pool=args.pool)
    else:
        objective = Classification(block_size=data.width, pad_id=data.pad_id, pool=args.pool)
    trainer = Trainer(model, objective, data, val_data, config)
    history = trainer.fit()
    times = np.diff([0.0, *history.seconds])  # seconds of each update (its loss.item() waits for the device)
    step = float(np.median(times[args.warmup :]))
    return {"regime": regime, "trainable": count_trainable(model), "s_per_step": step,
            "s_per_epoch": step * steps_per_epoch, "peak_mb": peak_memory_mb(device), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, from {REGIMES}")
    parser.add_argument("--steps", type=int, default=15, help="measured steps per regime")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    parser.add_argument("--batch", type=int, default=32, help="sentences per step")
    parser.add_argument("--pool", type=int, default=1,
                        help="draw this many batches, sort by length, train on one (1: plain random batches)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one regime, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.one:
        print(json.dumps(run_regime(args.one, device, args)))
        return
    regimes = args.regimes.split(",")
    unknown = sorted(set(regimes) - set(REGIMES))
    if unknown:
        parser.error(f"unknown regimes {unknown}; choose from {REGIMES}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes (6,824 sentences, batch {args.batch}, "
          f"pool {args.pool}) on {name}")
    print(f"{'regime':<14} {'trainable':>11} {'s/step':>8} {'s/epoch':>9} {'peak MB':>9}")
    for regime in regimes:
        cmd = [sys.executable, __file__, "--one", regime, "--device", args.device, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--threads", str(args.threads),
               "--pool", str(args.pool)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['regime']:<14} {r['trainable']:>11,} {r['s_per_step']:>8.3f} {r['s_per_epoch']:>9.1f} "
              f"{r['peak_mb']:>9.0f}" + (f"   (stored states first: {r['caching_s']:.1f} s)" if "caching_s" in r else ""),
              flush=True)


if __name__ == "__main__":
    main()
