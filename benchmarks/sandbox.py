"""What the grading sandbox and guard add to grading one notebook: kernel start with and without.

Starts a python3 kernel the way ``llmcourse autograde`` does, over and over, alternating
a plain kernel (``--sandbox none``) and a sandboxed one (``--sandbox bwrap``), and
times each step: start until the kernel answers, a first cell, shutting down. Then
the grading guard's set-up in a fresh kernel (the snapshot of what the tests rely
on), for a notebook without torch and one whose tests import torch, and the cost
of running a test cell through the judge.

    .venv/bin/python benchmarks/sandbox.py            # 5 rounds
    .venv/bin/python benchmarks/sandbox.py --rounds 10

Prints numbers only (the test suite never asserts on time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from llmcourse.grading import guard, sandbox
from llmcourse.grading.execution import ensure_tool_path, grading_env

KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]


async def run(kc, code: str, silent: bool = False) -> float:
    start = time.perf_counter()
    reply = await kc.execute_interactive(code, timeout=300, silent=silent, store_history=not silent,
                                         output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{code[:40]!r}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    return time.perf_counter() - start


async def kernel_round(manager_class, cwd: str, setup: str | None = None,
                       preload: str | None = None) -> dict[str, float]:
    """Start a kernel, run one cell (after ``preload`` and ``setup``, if given), shut it down;
    seconds per step."""
    config = Config({"SandboxedKernelManager": {"uid": sandbox.slot_uid(0)}})
    km = manager_class(kernel_name="python3", config=config)
    times = {}
    start = time.perf_counter()
    await km.start_kernel(cwd=cwd, extra_arguments=KERNEL_ARGS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=300)
        times["start"] = time.perf_counter() - start
        if preload is not None:
            times["imports"] = await run(kc, preload, silent=True)
        if setup is not None:
            times["guard setup"] = await run(kc, setup, silent=True)
        times["first cell"] = await run(kc, "1 + 1")
        if setup is not None:
            await run(kc, "__llmcourse_judge__.load('n1', 't', 'assert [1, 2] == [1, 2]')", silent=True)
            times["test cell via judge"] = await run(kc, "__llmcourse_judge__.run('t', 'n1')")
            times["test cell directly"] = await run(kc, "assert [1, 2] == [1, 2]")
    finally:
        kc.stop_channels()
        stop = time.perf_counter()
        await km.shutdown_kernel()
        times["shutdown"] = time.perf_counter() - stop
    times["total"] = time.perf_counter() - start
    return times


def guard_setup(folder: str, modules: list[str]) -> str:
    path = Path(folder) / f"verdicts-{secrets.token_hex(4)}"
    path.touch(mode=0o666)
    return guard.setup_code(secrets.token_hex(32), str(path), modules, {})


def summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def show(title: str, values: dict[str, float]) -> None:
    print(f"{title:<34}" + "  ".join(f"{k} {v:6.3f} s" for k, v in values.items()))


async def main(rounds: int) -> None:
    ensure_tool_path()
    os.environ.update(grading_env(1))
    sandbox.check_available()
    # Folders outside /tmp (the sandbox's private /tmp would cover them), removed at the end.
    with tempfile.TemporaryDirectory(prefix="llmcourse-bench-", dir=Path.home()) as base:
        cwd = os.path.join(base, "work")
        os.mkdir(cwd)
        await kernels(rounds, cwd)
        os.chmod(cwd, 0o755)
        await guards(rounds, cwd, base)


async def kernels(rounds: int, cwd: str) -> None:
    plain, boxed = [], []
    for _ in range(rounds):  # alternate, so that a busy moment costs both alike
        plain.append(await kernel_round(AsyncKernelManager, cwd))
        boxed.append(await kernel_round(sandbox.SandboxedKernelManager, cwd))
    p, b = summary(plain), summary(boxed)
    print(f"kernel start to shutdown, median of {rounds} rounds (CPUs: {os.cpu_count()})")
    show("  plain kernel (--sandbox none)", p)
    show("  sandboxed kernel (bwrap)", b)
    print(f"  sandbox overhead per notebook: {b['total'] - p['total']:+.3f} s "
          f"(start {b['start'] - p['start']:+.3f} s, shutdown {b['shutdown'] - p['shutdown']:+.3f} s)")


async def guards(rounds: int, cwd: str, base: str) -> None:
    torch_modules = ["torch", "torch.nn.functional", "random"]
    print("the grading guard (in a plain kernel; the snapshot is taken once the test cells' imports are loaded)")
    for label, modules, preload in (("tests without torch", ["random"], None),
                                    ("tests importing torch", torch_modules, "import torch.nn.functional")):
        guarded = []
        for _ in range(max(1, rounds // 2)):
            folder = tempfile.mkdtemp(dir=base)
            os.chmod(folder, 0o777)
            guarded.append(await kernel_round(AsyncKernelManager, cwd, setup=guard_setup(folder, modules),
                                              preload=preload))
        g = summary(guarded)
        keys = ("imports", "guard setup", "test cell via judge", "test cell directly")
        show(f"  {label}", {k: g[k] for k in keys if k in g})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.rounds))
    except sandbox.SandboxUnavailable as exc:
        sys.exit(f"no sandbox here: {exc}")
