"""Autograding throughput: notebooks graded per minute, and the overhead per notebook.

    .venv/bin/python benchmarks/autograde.py                          # the course's assignments
    .venv/bin/python benchmarks/autograde.py --course tests/grading_fixtures --students 300
    .venv/bin/python benchmarks/autograde.py --jobs 1,2 --no-cluster --students 20

It generates ``--students`` submissions of every assignment of ``--course`` (half
the released notebook filled with the solution's answers, half the untouched stub,
so both passing and failing tests are graded), then grades the same folder with
``llmcourse autograde`` on ``--jobs`` local parallel jobs each, and on a Dask
cluster of ``--cluster-workers`` local worker processes (one thread each), the
way ``--cluster`` sends jobs to remote machines.

For each run it prints the wall time, the notebooks graded per minute, the speed-up
over one job, and, per notebook, the median of

- ``total``: the time its worker spent on it (nbgrader's autograde and feedback,
  the sandboxed kernel's start and stop, the student's code),
- ``kernel``: of which starting the sandboxed kernel,
- ``imports``: of which the guard's set-up, which loads the modules the tests
  import (torch, say) before any student code runs, so that the student's own
  ``import torch`` then costs nothing: time moved out of ``code``, not added,
- ``code``: the student's cells as the kernel timed them (``metadata.execution``
  of the executed notebook),
- ``overhead`` = total - code - imports: what grading adds to the student's own code.

Student kernels run in the bubblewrap sandbox, as in real grading. It prints numbers
and asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

from llmcourse.grading.autograde import autograde
from llmcourse.grading.course import Course
from llmcourse.grading.execution import nbgrader_meta

REPO = Path(__file__).resolve().parents[1]


def filled(source, stub):
    """The released ``stub`` with the answers of the instructor's ``source``."""
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
    nb = copy.deepcopy(stub)
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in answers:
            cell.source = answers[nbgrader_meta(cell)["grade_id"]]
    return nb


def make_submissions(course: Course, assignments: list[str], students: int, subs: Path) -> int:
    """``students`` folders, each with every assignment; returns the number of notebooks."""
    count = 0
    for assignment in assignments:
        for name in course.notebooks(assignment):
            source = nbformat.read(str(course.source_dir / assignment / f"{name}.ipynb"), 4)
            stub = nbformat.read(str(course.release_dir / assignment / f"{name}.ipynb"), 4)
            versions = (filled(source, stub), stub)
            for i in range(students):
                folder = subs / f"student{i:04d}" / assignment
                folder.mkdir(parents=True, exist_ok=True)
                nbformat.write(versions[i % 2], str(folder / f"{name}.ipynb"))
                count += 1
    return count


def _seconds(stamp_a: str, stamp_b: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(stamp_b) - parse(stamp_a)).total_seconds()


def code_seconds(path: Path) -> float:
    """The student's cells' own run time, from the kernel's timing of each cell."""
    total = 0.0
    for cell in nbformat.read(str(path), 4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            total += _seconds(timing["iopub.execute_input"], timing["shell.execute_reply"])
    return total


def measure(label: str, course: Course, subs: Path, out: Path, n_notebooks: int, **options) -> dict:
    start = time.perf_counter()
    report = autograde(course, subs, out, **options)
    wall = time.perf_counter() - start
    totals, kernels, imports, codes = [], [], [], []
    for row in report.rows:
        for nb in row.notebooks.values():
            executed = out / "autograded" / row.student_id / row.assignment / f"{nb.name}.ipynb"
            if nb.graded and executed.is_file():
                totals.append(nb.seconds)
                kernels.append(nb.kernel_seconds)
                imports.append(nb.guard_seconds)
                codes.append(code_seconds(executed))
    overheads = [t - g - c for t, g, c in zip(totals, imports, codes)]
    return {"run": label, "notebooks": n_notebooks, "graded": len(totals), "wall": wall,
            "per_minute": 60 * len(totals) / wall,
            "total": statistics.median(totals), "kernel": statistics.median(kernels),
            "imports": statistics.median(imports), "code": statistics.median(codes),
            "overhead": statistics.median(overheads)}


def local_cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=REPO, help="course root (default: this course)")
    parser.add_argument("--assignments", default="", help="comma-separated (default: every assignment)")
    parser.add_argument("--students", type=int, default=300, help="submissions of every assignment")
    parser.add_argument("--jobs", default=f"1,2,{os.cpu_count()}", help="local parallel jobs to try")
    parser.add_argument("--cluster-workers", type=int, default=2, help="local Dask worker processes")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Dask run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: the course's)")
    args = parser.parse_args(argv)

    course = Course.load(args.course)
    assignments = course.resolve_assignments([a for a in args.assignments.split(",") if a])
    print(f"{args.students} submission(s) of {', '.join(assignments)}; {os.cpu_count()} CPU(s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="llmcourse-bench-") as tmp:
        tmp = Path(tmp)
        n = make_submissions(course, assignments, args.students, tmp / "subs")
        runs = []
        for jobs in sorted({int(j) for j in args.jobs.split(",")}):
            runs.append(measure(f"local, {jobs} job(s)", course, tmp / "subs", tmp / f"out-{jobs}", n,
                                jobs=jobs, timeout=args.timeout))
            shutil.rmtree(tmp / f"out-{jobs}")
            print(runs[-1], flush=True)
        if not args.no_cluster:
            with local_cluster(args.cluster_workers) as dask:
                runs.append(measure(f"Dask, {args.cluster_workers} worker(s)", course, tmp / "subs",
                                    tmp / "out-dask", n, cluster=dask.scheduler_address, timeout=args.timeout))
            print(runs[-1], flush=True)
    one = next((r["wall"] for r in runs if r["run"] == "local, 1 job(s)"), None)
    print(f"\n{'run':<22} {'notebooks':>9} {'wall s':>8} {'per min':>8} {'speed-up':>8} "
          f"{'total s':>8} {'kernel s':>8} {'imports s':>9} {'code s':>7} {'overhead s':>10}  (medians per notebook)")
    for r in runs:
        speedup = f"{one / r['wall']:.2f}" if one else "-"
        print(f"{r['run']:<22} {r['graded']:>9} {r['wall']:>8.1f} {r['per_minute']:>8.1f} {speedup:>8} "
              f"{r['total']:>8.2f} {r['kernel']:>8.2f} {r['imports']:>9.2f} {r['code']:>7.2f} {r['overhead']:>10.2f}")


if __name__ == "__main__":
    sys.exit(main())
