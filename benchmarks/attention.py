"""Time and peak memory of causal self-attention: the readable reference against the fused kernel.

    .venv/bin/python benchmarks/attention.py                 # CPU, float32, T = 128 .. 4096
    .venv/bin/python benchmarks/attention.py --device cuda   # GPU, bf16 (default when CUDA is present)

The reference path (``llmcourse.nn.scaled_dot_product_attention``) materialises the
(T x T) scores and weights for every head; the fused path
(``llmcourse.nn.fused_attention`` = ``torch.nn.functional.scaled_dot_product_attention``
with ``is_causal=True``) does not. Both compute one batch of ``--heads`` heads of size
``--head-dim``.

Peak memory is the extra memory one call needs beyond its inputs:
on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the growth of the process's
peak resident set (``ru_maxrss``), measured in a fresh process per measurement so
that one run's peak does not hide the next one's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from llmcourse.nn import causal_mask, fused_attention, scaled_dot_product_attention

LENGTHS = [128, 256, 512, 1024, 2048, 4096]


def inputs(T: int, args, device: torch.device, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, T, args.head_dim)  # (B, h, T, hs)
    return [torch.randn(shape, generator=g).to(device, dtype) for _ in range(3)]


def attention_call(impl: str, q, k, v):
    if impl == "fused":
        return lambda: fused_attention(q, k, v, is_causal=True)
    mask = causal_mask(q.size(-2), device=q.device)
    return lambda: scaled_dot_product_attention(q, k, v, mask)[0]


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds per call, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_cpu(impl: str, T: int, args) -> dict:
    """One measurement in this (fresh) process: time, then peak RSS growth of one call."""
    torch.set_num_threads(args.threads)
    q, k, v = inputs(T, args, torch.device("cpu"), torch.float32)
    fn = attention_call(impl, q, k, v)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    seconds = timed(fn, torch.device("cpu"), args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"seconds": seconds, "peak_mb": peak / 1024}


def measure_in_subprocess(impl: str, T: int, args) -> dict:
    cmd = [sys.executable, __file__, "--one", impl, str(T), "--heads", str(args.heads),
           "--head-dim", str(args.head_dim), "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_cuda(impl: str, T: int, args) -> dict:
    device = torch.device("cuda")
    q, k, v = inputs(T, args, device, torch.bfloat16)
    fn = attention_call(impl, q, k, v)
    seconds = timed(fn, device, args.repeats)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return {"seconds": seconds, "peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process of a CPU run
        print(json.dumps(measure_cpu(args.one[0], int(args.one[1]), args)))
        return

    measure = measure_cuda if args.device == "cuda" else measure_in_subprocess
    dtype = "bf16" if args.device == "cuda" else "float32"
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"causal self-attention, {where}, {dtype}: batch {args.batch}, {args.heads} heads of size {args.head_dim}")
    print(f"{'T':>6} | {'reference ms':>12} {'fused ms':>9} {'speed-up':>8} | "
          f"{'reference MB':>12} {'fused MB':>9} {'ratio':>7}")
    for T in args.lengths:
        ref, fused = measure("reference", T, args), measure("fused", T, args)
        speed = ref["seconds"] / fused["seconds"]
        ratio = ref["peak_mb"] / fused["peak_mb"] if fused["peak_mb"] > 0.5 else float("inf")
        print(f"{T:>6} | {ref['seconds'] * 1e3:>12.2f} {fused['seconds'] * 1e3:>9.2f} {speed:>7.1f}x | "
              f"{ref['peak_mb']:>12.1f} {fused['peak_mb']:>9.1f} {ratio:>6.1f}x")
    weights_mb = args.batch * args.heads * max(args.lengths) ** 2 * (2 if args.device == "cuda" else 4) / 2**20
    print(f"(the T x T weights alone at T = {max(args.lengths)}: {weights_mb:.0f} MB)")


if __name__ == "__main__":
    main()
