"""Training throughput of the course's GPT: tokens per second, peak memory and (on a GPU) MFU.

    .venv/bin/python benchmarks/train_gpt.py                  # the Pretraining chapter's CPU preset
    .venv/bin/python benchmarks/train_gpt.py --device cuda    # GPT-2 small (124M, context 1,024), bf16,
                                                              # fused attention, torch.compile
    .venv/bin/python benchmarks/train_gpt.py --device cuda --no-compile

Each run goes through :class:`llmcourse.training.Trainer` exactly as training does
(AdamW, clipping, a ``loss.item()`` per step), on random token ids, for ``--steps``
measured steps after ``--warmup`` unmeasured ones (compilation happens there).

- tokens/s: tokens per step over the median step time (the mean is printed too);
- peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak
  resident set of the process (``ru_maxrss``), imports and data included;
- MFU (CUDA only): achieved FLOP/s over the H100's dense bf16 peak of 989 TFLOP/s,
  counting 6 N + 12 L d T FLOPs per token (``llmcourse.analysis.compute``).

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time

import numpy as np
import torch

from llmcourse.analysis.compute import H100_BF16_PEAK, mfu
from llmcourse.models import GPT, GPTConfig
from llmcourse.training import CausalLM, TrainConfig, Trainer
from llmcourse.training.presets import cpu_preset


def setup(device: torch.device, args) -> tuple[GPTConfig, TrainConfig]:
    if device.type == "cuda":
        model = GPTConfig.gpt2_small()
        train = TrainConfig(batch_size=args.batch or 16, lr=6e-4, warmup_steps=1, compile=args.compile,
                            eval_interval=10**9, progress=False)
    else:
        preset = cpu_preset()
        model = preset.gpt_config()
        train = dataclasses.replace(preset.gpt_train, eval_interval=10**9, warmup_steps=1, progress=False)
        if args.batch:
            train = dataclasses.replace(train, batch_size=args.batch)
    return model, dataclasses.replace(train, max_steps=args.warmup + args.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="measured steps")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps first (compilation)")
    parser.add_argument("--batch", type=int, default=0, help="sequences per step (default: the preset's)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    model_config, train_config = setup(device, args)
    torch.manual_seed(0)
    model = GPT(model_config).to(device)
    tokens = np.random.default_rng(0).integers(0, model_config.vocab_size, 2_000_000, dtype=np.int64)
    objective = CausalLM(model_config.block_size)
    trainer = Trainer(model, objective, tokens, tokens[:100_000], train_config)

    times: list[float] = []
    for step in range(train_config.max_steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_step()  # ends with loss.item(): the step is finished when it returns
        if step >= args.warmup:
            times.append(time.perf_counter() - start)

    tokens_per_step = trainer.tokens_per_step
    median = float(np.median(times))  # robust to a step slowed by other work on the machine
    tokens_per_s = tokens_per_step / median
    n_params = model.num_parameters()
    c = model_config
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device            {device} ({name})")
    print(f"model             GPT {c.n_layer} layers x {c.d_model} wide, {c.n_head} heads, context {c.block_size},"
          f" vocabulary {c.vocab_size:,}: {n_params:,} parameters")
    print(f"batch             {train_config.batch_size} x {c.block_size} = {tokens_per_step:,} tokens per step"
          f"{', bf16 autocast' if device.type == 'cuda' else ', float32'}"
          f"{', torch.compile' if train_config.compile else ''}")
    print(f"step time         {1e3 * median:.1f} ms median over {len(times)} steps"
          f" (mean {1e3 * float(np.mean(times)):.1f} ms)")
    print(f"throughput        {tokens_per_s:,.0f} tokens/s (at the median step time)")
    if device.type == "cuda":
        print(f"peak memory       {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (torch.cuda.max_memory_allocated)")
        fpt = trainer.flops_per_token()
        print(f"MFU               {mfu(tokens_per_s, fpt, H100_BF16_PEAK):.1%} of 989 TFLOP/s"
              f" ({tokens_per_s * fpt / 1e12:.0f} TFLOP/s achieved)")
    else:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        print(f"peak memory       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20:,.0f} MiB"
              " (peak resident set of the process)")


if __name__ == "__main__":
    main()
