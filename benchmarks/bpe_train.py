"""Train byte-level BPE on IMDB reviews: the course's pure-Python trainer beside the Rust `tokenizers` one.

Both learn the same number of merges (``--vocab-size`` minus the 256 bytes) from the
same first reviews of the IMDB training split (at least ``--mb`` megabytes of UTF-8).
Ours pre-splits with the GPT-4 pattern, `tokenizers` with its ByteLevel pre-tokenizer
(the GPT-2 pattern). Encoding speed is measured on the held-out validation reviews,
one review at a time, starting from an empty cache.

    python benchmarks/bpe_train.py                 # 5 MB, vocabulary 4,096
    python benchmarks/bpe_train.py --mb 1 --vocab-size 1024

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from llmcourse.data import imdb_texts
from llmcourse.tokenizers import GPT4_SPLIT_PATTERN, BPETokenizer


def first_megabytes(texts: list[str], mb: float) -> list[str]:
    """The shortest prefix of ``texts`` holding at least ``mb`` megabytes of UTF-8."""
    out, size = [], 0
    for text in texts:
        if size >= mb * 1_000_000:
            break
        out.append(text)
        size += len(text.encode("utf-8"))
    return out


def n_bytes(texts: list[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def encode_all(encode: Callable[[str], list[int]], texts: list[str]) -> tuple[int, float]:
    """Total tokens and seconds to encode ``texts`` one by one."""
    n_tokens = 0
    start = time.perf_counter()
    for text in texts:
        n_tokens += len(encode(text))
    return n_tokens, time.perf_counter() - start


def train_ours(texts: list[str], vocab_size: int) -> BPETokenizer:
    return BPETokenizer.train(texts, vocab_size, pattern=GPT4_SPLIT_PATTERN)


def train_rust(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def measures(train_s: float, tokens: int, encode_s: float, encode_bytes: int) -> list[float]:
    """Training seconds, encoding megabytes per second, bytes per token."""
    return [train_s, encode_bytes / 1e6 / encode_s, encode_bytes / tokens]


def print_table(rows: list[list[str]]) -> None:
    header = ["", "train (s)", "encode (MB/s)", "bytes per token"]
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.rjust(w) if k else cell.ljust(w) for k, (cell, w) in enumerate(zip(r, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0, help="megabytes of IMDB text to train on (default 5)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size, 256 bytes included (default 4096)")
    parser.add_argument("--encode-mb", type=float, default=2.0, help="megabytes of validation reviews to encode (default 2)")
    args = parser.parse_args()

    train_texts = first_megabytes(imdb_texts("train"), args.mb)
    held_out = first_megabytes(imdb_texts("validation"), args.encode_mb)
    train_bytes, held_out_bytes = n_bytes(train_texts), n_bytes(held_out)
    print(f"training text: {len(train_texts):,} reviews, {train_bytes / 1e6:.2f} MB; vocabulary {args.vocab_size:,}")
    print(f"encoding text: {len(held_out):,} held-out reviews, {held_out_bytes / 1e6:.2f} MB")
    print(f"CPU cores visible: {os.cpu_count()} (tokenizers may use all of them; ours uses one)\n")

    ours, ours_train_s = timed(lambda: train_ours(train_texts, args.vocab_size))
    ours_tokens, ours_encode_s = encode_all(ours.encode, held_out)
    rust, rust_train_s = timed(lambda: train_rust(train_texts, args.vocab_size))
    rust_tokens, rust_encode_s = encode_all(lambda t: rust.encode(t).ids, held_out)

    ours_m = measures(ours_train_s, ours_tokens, ours_encode_s, held_out_bytes)
    rust_m = measures(rust_train_s, rust_tokens, rust_encode_s, held_out_bytes)
    ratios = [x / y for x, y in zip(ours_m, rust_m)]
    print_table(
        [
            ["llmcourse (Python)", f"{ours_m[0]:.2f}", f"{ours_m[1]:.2f}", f"{ours_m[2]:.3f}"],
            ["tokenizers (Rust)", f"{rust_m[0]:.2f}", f"{rust_m[1]:.2f}", f"{rust_m[2]:.3f}"],
            ["ratio ours / Rust", f"{ratios[0]:.1f}x", f"{ratios[1]:.2f}x", f"{ratios[2]:.3f}x"],
        ]
    )
    print("(each ratio divides our number by the Rust one: train > 1 means ours is slower,")
    print(" encode > 1 means ours is faster, bytes per token > 1 means ours compresses better)")
    print(f"\nmerges learned: ours {len(ours.merges):,}, tokenizers {rust.get_vocab_size() - 256:,}")


if __name__ == "__main__":
    main()
