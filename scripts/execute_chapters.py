"""Execute the book's chapters several at a time, into the cache that `jupyter-book build` reads.

With ``execute_notebooks: cache`` (``_config.yml``), ``jupyter-book build`` executes every
chapter whose code is not in its jupyter-cache yet, one after another. This script runs those
chapters first, ``--jobs`` kernels at a time, longest first, with the build's own reader,
working directory and cell timeout, and stores each executed notebook in the same cache. The
build that follows finds every chapter there and executes nothing again.

    .venv/bin/python scripts/execute_chapters.py [--path-output DIR] [--jobs N]

``--path-output`` is the folder given to ``jupyter-book build --path-output`` (default: the
repository, as ``make book`` builds). Each kernel gets ``OMP_NUM_THREADS`` cores divided by the
jobs, unless the variable is set already. A chapter that fails is printed with its traceback and
left out of the cache, so the build runs it again and reports it as usual; the script then
exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# The chapters that train models, longest first (as measured in `make test`): on an empty cache
# they start first so that the jobs end together; later runs use the times the cache recorded.
LONGEST_FIRST = ("finetuning", "finetuning_gpt", "ethics", "pretraining", "introduction", "interpreting")


def toc_chapters(root: Path = REPO) -> list[Path]:
    """The MyST-Markdown notebooks that ``_toc.yml`` lists, in book order."""
    from myst_nb.core.read import is_myst_markdown_notebook

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("chapters"))
            walk(entry.get("sections"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    paths = [root / f"{name}.md" for name in names]
    return [p for p in paths if p.is_file() and is_myst_markdown_notebook(p.read_text(encoding="utf-8"))]


def execution_settings(root: Path = REPO) -> dict:
    """The ``execute`` section of ``_config.yml``, checked for the settings this script follows."""
    settings = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")).get("execute", {})
    if settings.get("execute_notebooks") != "cache":
        raise SystemExit("_config.yml: execute_notebooks is not 'cache'; "
                         "the build would not read what this script stores")
    if settings.get("run_in_temp") or settings.get("allow_errors"):
        raise SystemExit("_config.yml: this script runs chapters in their own folder and stops at the first error; "
                         "run_in_temp and allow_errors must be false")
    return settings


def read_chapter(path: Path):
    """The notebook that myst-nb reads from ``path`` (so the cache's hash of its code matches the build's)."""
    from myst_nb.core.read import myst_nb_reader_plugin

    return myst_nb_reader_plugin(str(path))


def execute_chapter(path: Path, timeout: int, threads: str) -> tuple[object, float, str | None]:
    """Run one chapter in a fresh kernel (in a worker process); return (notebook, seconds, traceback or None)."""
    from jupyter_cache.executors.utils import single_nb_execution

    os.environ["OMP_NUM_THREADS"] = threads  # the kernel inherits this process's environment
    os.environ.pop("MPLBACKEND", None)  # the kernel keeps ipykernel's inline backend
    notebook = read_chapter(path)
    result = single_nb_execution(notebook, cwd=str(path.parent), timeout=timeout, allow_errors=False)
    return notebook, result.time, result.exc_string if result.err is not None else None


def expected_seconds(cache, path: Path) -> float:
    """How long ``path`` took when last cached, or, never run, a rank from ``LONGEST_FIRST``."""
    runs = [r for r in cache.list_cache_records() if r.uri == str(path) and "execution_seconds" in r.data]
    if runs:
        return max(runs, key=lambda r: r.created).data["execution_seconds"]
    return -LONGEST_FIRST.index(path.stem) if path.stem in LONGEST_FIRST else -len(LONGEST_FIRST)


def main(argv: list[str] | None = None) -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path-output", type=Path, default=REPO,
                        help="jupyter-book's --path-output (default: the repository)")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4), help="chapters executed at once")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    settings = execution_settings()
    cache_path = settings.get("cache") or args.path_output.resolve() / "_build" / ".jupyter_cache"
    cache = get_cache(str(cache_path))
    todo = []
    for path in toc_chapters():
        try:
            cache.match_cache_notebook(read_chapter(path))
        except KeyError:
            todo.append(path)
    todo.sort(key=lambda p: expected_seconds(cache, p), reverse=True)  # longest first: the jobs end together
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // args.jobs))
    print(f"{len(todo)} chapters to execute, {args.jobs} at a time, {threads} thread(s) each; cache {cache_path}",
          flush=True)

    failed = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(execute_chapter, path, settings.get("timeout", 30), threads): path for path in todo}
        for future in as_completed(futures):
            path = futures[future]
            name = path.relative_to(REPO)
            try:
                notebook, seconds, error = future.result()
            except Exception as exc:  # the worker itself died (out of memory, killed)
                notebook, seconds, error = None, 0.0, f"{type(exc).__name__}: {exc}"
            if error is None:
                cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path), data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
                print(f"  {name}: {seconds:.0f} s", flush=True)
            else:
                failed.append(name)
                print(f"  {name} FAILED after {seconds:.0f} s (left for the build to run and report):\n{error}",
                      flush=True)
    print(f"executed in {time.perf_counter() - start:.0f} s"
          + (f"; failed: {', '.join(map(str, failed))}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
