"""``llmcourse validate``: every solution passes all its tests, every stub passes none.

nbgrader's own ``validate`` command exits 0 even when tests fail, so this runs
the notebooks itself, through the same ``Execute`` preprocessor and scoring
rule that autograding uses (:mod:`llmcourse.grading.execution`):

* the **solution** (``solutions/<a>/<nb>.ipynb``) must earn every point of every
  autograded test cell, and no other cell may raise;
* the **stub** is the released notebook (``exercises/<a>/<nb>.ipynb``) with its
  locked cells restored from the source, hidden tests included, exactly as
  ``nbgrader autograde`` would see an untouched submission. It must earn no
  point at all (a test that the empty stub passes checks nothing);
* the released notebook must carry no outputs, a ``python3`` kernelspec, and no
  solution or hidden-test text; and ``exercises/`` must equal a fresh generation.

Each notebook runs in a scratch copy of its assignment folder, so nothing is
written into ``solutions/`` or ``exercises/``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable

import nbformat

from llmcourse.grading.course import Course
from llmcourse.grading.execution import (
    CellOutcome,
    cell_seconds,
    copy_assignment_files,
    error_summary,
    execute_notebook,
    grading_env,
    is_autograded_test,
    nbgrader_meta,
    temp_environ,
    test_outcomes,
    timed_out,
)

LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@dataclass
class NotebookRun:
    """One execution of one notebook (the solution or the stub)."""

    assignment: str
    notebook: str
    kind: str  # "solution" or "stub"
    cells: list[CellOutcome] = field(default_factory=list)
    seconds: float = 0.0
    max_cell_seconds: float = 0.0  # the slowest single cell, for choosing a grading timeout
    problems: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class NotebookReport:
    assignment: str
    notebook: str
    solution: NotebookRun | None = None
    stub: NotebookRun | None = None
    problems: list[str] = field(default_factory=list)  # static checks of the release

    @property
    def ok(self) -> bool:
        runs = [r for r in (self.solution, self.stub) if r is not None]
        return not self.problems and all(r.ok for r in runs)


@dataclass
class ValidationReport:
    notebooks: list[NotebookReport] = field(default_factory=list)
    release_problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.notebooks) and not any(self.release_problems.values())


def _read(path: Path):
    with open(path, encoding="utf-8") as fh:
        return nbformat.read(fh, as_version=4)


def build_stub(course: Course, assignment: str, notebook: str):
    """The released notebook as autograding sees it: locked cells restored from the source."""
    source = _read(course.source_dir / assignment / f"{notebook}.ipynb")
    released = _read(course.release_dir / assignment / f"{notebook}.ipynb")
    by_id = {nbgrader_meta(c).get("grade_id"): c for c in source.cells if nbgrader_meta(c).get("grade_id")}
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        if meta.get("locked") and meta.get("grade_id") in by_id:
            cell.source = by_id[meta["grade_id"]].source
    return released


def run_notebook(course_root: str, assignment: str, notebook: str, kind: str, timeout: float | None,
                 jobs: int = 1) -> NotebookRun:
    """Execute the solution or the stub of one notebook and judge its test cells."""
    course = Course.load(course_root)
    run = NotebookRun(assignment=assignment, notebook=notebook, kind=kind)
    try:
        nb = (_read(course.source_dir / assignment / f"{notebook}.ipynb") if kind == "solution"
              else build_stub(course, assignment, notebook))
    except FileNotFoundError as exc:
        run.problems.append(f"{kind}: file not found: {exc.filename}")
        return run
    except Exception as exc:  # unreadable notebook
        run.problems.append(f"{kind}: cannot read notebook: {exc}")
        return run
    config = course.config(timeout=timeout)
    with tempfile.TemporaryDirectory(prefix=f"llmcourse-validate-{kind}-") as tmp:
        workdir = Path(tmp) / assignment
        src = course.source_dir if kind == "solution" else course.release_dir
        copy_assignment_files(src / assignment, workdir)
        start = time.perf_counter()
        try:
            with temp_environ(grading_env(jobs)):
                execute_notebook(nb, workdir, config, mode="validate")
        except Exception as exc:
            run.problems.append(f"{kind}: execution stopped: {type(exc).__name__}: {exc}")
        run.seconds = time.perf_counter() - start
    run.cells = test_outcomes(nb)
    run.max_cell_seconds = max(
        [t for t in (cell_seconds(c) for c in nb.cells if c.cell_type == "code") if t is not None], default=0.0
    )
    if not run.cells:
        run.problems.append(f"{kind}: no autograded test cells found")
    if kind == "solution":
        for cell in run.cells:
            if not cell.passed:
                why = "timed out" if cell.timed_out else (cell.error or f"scored {cell.score:g}/{cell.points:g}")
                run.problems.append(f"solution fails test {cell.grade_id}: {why}")
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and not is_autograded_test(cell):
                err = error_summary(cell)
                if err and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                    label = nbgrader_meta(cell).get("grade_id") or f"cell {index}"
                    what = "timed out" if timed_out(cell) else err
                    run.problems.append(f"solution: {label} raised {what}")
    else:
        for cell in run.cells:
            if cell.score > 0:
                run.problems.append(
                    f"stub passes test {cell.grade_id} ({cell.score:g}/{cell.points:g} points): "
                    "the test does not check the student's work"
                )
    return run


def _can_spawn() -> bool:
    """Worker processes re-import ``__main__``; impossible when it was read from stdin."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


def static_release_checks(course: Course, assignment: str, notebook: str) -> list[str]:
    """What a released notebook must look like, without running it."""
    path = course.release_dir / assignment / f"{notebook}.ipynb"
    if not path.is_file():
        return [f"released notebook {path.relative_to(course.root)} is missing (run `llmcourse release`)"]
    try:
        nb = _read(path)
    except Exception as exc:
        return [f"released notebook cannot be read: {exc}"]
    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"released notebook kernelspec is {kernel!r}, expected 'python3'")
    for index, cell in enumerate(nb.cells):
        label = nbgrader_meta(cell).get("grade_id") or f"cell {index}"
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"released notebook has outputs in {label}")
        for marker in LEAK_MARKERS:
            if marker in cell.source:
                problems.append(f"released notebook shows {marker!r} in {label}")
    return problems


def validate(
    course: Course,
    assignments: Iterable[str] | None = None,
    jobs: int | None = None,
    timeout: float | None = None,
    check_release: bool = True,
    kinds: tuple[str, ...] = ("solution", "stub"),
) -> ValidationReport:
    """Check solutions and stubs of some or all assignments; see the module docstring."""
    from llmcourse.grading.release import release_differences

    start = time.perf_counter()
    names = course.resolve_assignments(assignments)
    report = ValidationReport()
    tasks = []
    for assignment in names:
        for notebook in course.notebooks(assignment):
            report.notebooks.append(
                NotebookReport(assignment, notebook, problems=static_release_checks(course, assignment, notebook))
            )
            for kind in kinds:
                tasks.append((str(course.root), assignment, notebook, kind, timeout))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
    if jobs == 1 or not _can_spawn():
        runs = [run_notebook(*task, jobs=1) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_notebook, *task, jobs=jobs) for task in tasks]
            runs = [f.result() for f in futures]
    by_key = {(n.assignment, n.notebook): n for n in report.notebooks}
    for run in runs:
        setattr(by_key[(run.assignment, run.notebook)], run.kind, run)
    if check_release:
        report.release_problems = release_differences(course, names)
    report.seconds = time.perf_counter() - start
    return report


def format_report(report: ValidationReport) -> str:
    """A per-notebook, per-test-cell table for the terminal."""
    lines = []
    for nbr in report.notebooks:
        runs = [r for r in (nbr.solution, nbr.stub) if r is not None]
        lines.append(f"{nbr.assignment}/{nbr.notebook}.ipynb")
        header = f"  {'test cell':<28}{'points':>7}"
        for run in runs:
            header += f"  {run.kind:<40}"
        lines.append(header.rstrip())
        ids = []
        for run in runs:
            for cell in run.cells:
                if cell.grade_id not in ids:
                    ids.append(cell.grade_id)
        for grade_id in ids:
            points = next(c.points for r in runs for c in r.cells if c.grade_id == grade_id)
            row = f"  {grade_id:<28}{points:>7g}"
            for run in runs:
                cell = next((c for c in run.cells if c.grade_id == grade_id), None)
                if cell is None:
                    text = "-"
                else:
                    verdict = "pass" if cell.passed else ("timeout" if cell.timed_out else "fail")
                    expected = cell.passed if run.kind == "solution" else cell.score == 0
                    mark = "ok " if expected else "BAD"
                    text = f"{mark} {verdict}"
                    if cell.seconds is not None:
                        text += f" {cell.seconds:6.2f}s"
                    if cell.error:
                        text += " " + cell.error.split(":")[0][:22]
                row += f"  {text:<40}"
            lines.append(row.rstrip())
        timing = f"  {'run time (kernel start included)':<35}"
        for run in runs:
            timing += f"  {run.score:g}/{run.max_score:g} pts in {run.seconds:.1f} s".ljust(42)
        lines.append(timing.rstrip())
        problems = list(nbr.problems) + [p for r in runs for p in r.problems]
        for problem in problems:
            lines.append(f"  PROBLEM: {problem}")
        lines.append("  OK" if nbr.ok else "  FAILED")
        lines.append("")
    for assignment, problems in sorted(report.release_problems.items()):
        if problems:
            lines.append(f"exercises/{assignment}/ is out of date:")
            lines.extend(f"  {p}" for p in problems)
        else:
            lines.append(f"exercises/{assignment}/ equals a fresh generation")
    bad = sum(not n.ok for n in report.notebooks)
    lines.append(
        f"{len(report.notebooks)} notebook(s) checked in {report.seconds:.1f} s: "
        + ("all OK" if report.ok else f"{bad} notebook(s) with problems"
           + ("; exercises/ out of date" if any(report.release_problems.values()) else ""))
    )
    return "\n".join(lines)
