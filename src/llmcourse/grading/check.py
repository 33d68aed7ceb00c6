"""``llmcourse check NOTEBOOK``: what a student can learn about a notebook before submitting it.

It answers four questions, in plain words (:func:`format_check`):

1. **Is it the right notebook?** Its nbgrader cell ids (``grade_id``) are matched
   against the course's released notebooks, ``exercises/<assignment>/<notebook>.ipynb``
   (:func:`identify`). A notebook that matches none stops the check; one saved under
   another file name is named, since autograding gives it 0 points.
2. **Are its test cells intact?** The locked cells are compared with the released
   ones by the comparison autograding uses
   (:func:`llmcourse.grading.stage.compare_locked_cells`). When the notebook *is*
   the released file, edited in place, the reference is its last committed version
   (git), or else nbgrader's checksums of the cells (:func:`reference_notebook`).
3. **Does it run top to bottom within the time limit?** It runs as autograding runs
   it (:func:`run_notebook`): the same preprocessor, sandbox and guard
   (:class:`llmcourse.grading.supervisor.GuardedExecute`), the course's per-cell
   ``Execute.timeout``, the same refusal when bubblewrap is missing and the same
   warning for ``--sandbox none`` (:func:`llmcourse.grading.run.check_sandbox`).
4. **Which visible tests pass?** The test cells of the student's own notebook, scored
   by nbgrader's rule (an error or output on stderr fails the cell).

Only what the notebook holds is run, as it is: the hidden tests live in
``solutions/``, which a check never reads, so the last line says that hidden tests
decide the grade and that this is no score. Exit status 0 only when every answer
is yes and every visible test passes.

Introduced in: the grading tools (README, "For students").
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat

from llmcourse.grading import intake
from llmcourse.grading.course import (
    CONFIG_FILE,
    RELEASE_DIR,
    Course,
    GradingError,
    find_config_file,
    is_ignored_name,
    load_config,
)
from llmcourse.grading.execution import (
    ensure_tool_path,
    error_summary,
    grading_env,
    is_autograded_test,
    nbgrader_meta,
    temp_environ,
    timed_out,
)
from llmcourse.grading.report import fmt_points
from llmcourse.grading.run import RunSettings, check_sandbox
from llmcourse.grading.sandbox import Limits, slot_uid

log = logging.getLogger("llmcourse.grading")
NOT_A_SCORE = "Hidden tests decide the grade; this is not a score."


@dataclass
class CheckReport:
    """What :func:`check` found about one notebook."""

    path: Path
    released: list[str] = field(default_factory=list)  # every released notebook, "assignment/name.ipynb"
    assignment: str | None = None  # None: the notebook is none of the course's
    notebook: str | None = None
    reference: str = ""  # what the test cells were compared with
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    sandbox: str = "bwrap"
    timeout: float = 0.0
    seconds: float = 0.0
    ran: bool = False
    run_problems: list[str] = field(default_factory=list)  # cells that raised or were interrupted, limits hit
    tests: list[tuple[str, str]] = field(default_factory=list)  # (grade id, why it failed or '')

    @property
    def expected_name(self) -> str:
        return f"{self.notebook}.ipynb"

    @property
    def renamed(self) -> bool:
        return self.notebook is not None and self.path.name != self.expected_name

    @property
    def passed(self) -> int:
        return sum(1 for _, error in self.tests if not error)

    @property
    def ok(self) -> bool:
        return (self.ran and not self.renamed and not self.modified and not self.deleted
                and not self.run_problems and bool(self.tests) and self.passed == len(self.tests))


# ----------------------------------------------------------------------------
# the course's released notebooks
# ----------------------------------------------------------------------------
def released_course(root: Path | str | None, notebook: Path) -> Course:
    """The course whose ``exercises/`` a check compares with: ``root``, or else the nearest
    folder with ``nbgrader_config.py`` and ``exercises/`` above the notebook, above the current
    folder, or the repository this package was installed from. ``solutions/`` is not needed."""
    if root is not None:
        candidates = [Path(root).resolve()]
    else:
        here = [notebook.resolve().parent, Path.cwd().resolve()]
        candidates = [d for start in here for d in (start, *start.parents) if (d / CONFIG_FILE).is_file()]
        candidates.append(Path(__file__).resolve().parents[3])
    for directory in candidates:
        config_file = find_config_file(directory) if (directory / RELEASE_DIR).is_dir() else None
        if config_file is not None:
            return Course(root=directory, config_file=config_file, base_config=load_config(config_file))
    where = f"at {candidates[0]}" if root is not None else "above the notebook or the current folder; pass --course DIR"
    raise GradingError(f"no course found: expected a folder with {CONFIG_FILE} and {RELEASE_DIR}/ {where}")


def released_notebooks(course: Course) -> dict[tuple[str, str], Any]:
    """``{(assignment, notebook): notebook}`` for every ``exercises/<assignment>/<notebook>.ipynb``."""
    found = {}
    for folder in sorted(p for p in course.release_dir.iterdir() if p.is_dir() and not is_ignored_name(p.name)):
        for path in sorted(p for p in folder.glob("*.ipynb") if not is_ignored_name(p.name)):
            found[(folder.name, path.stem)] = nbformat.read(str(path), as_version=4)
    return found


def grade_ids(nb: Any) -> set[str]:
    """The ids of the cells that count: answers and tests (an id like ``intro`` recurs across notebooks)."""
    return {str(meta["grade_id"]) for meta in map(nbgrader_meta, nb.cells)
            if meta.get("grade_id") and (meta.get("grade") or meta.get("solution"))}


def identify(nb: Any, file_name: str, released: dict[tuple[str, str], Any]) -> tuple[str, str] | None:
    """The released notebook that shares the most answer and test cell ids with ``nb`` (on a tie,
    the one of the same file name), or None when it shares none with any."""
    mine = grade_ids(nb)
    shared = {key: len(mine & grade_ids(other)) for key, other in released.items()}
    best = max(shared, key=lambda key: (shared[key], f"{key[1]}.ipynb" == file_name), default=None)
    return best if best is not None and shared[best] > 0 else None


def reference_notebook(path: Path, released_path: Path, released_nb: Any) -> tuple[Any | None, str]:
    """What ``path``'s test cells are compared with, and how to say it.

    The released notebook; but a notebook that *is* the released file, edited in place,
    is compared with its last committed version, or (None) by nbgrader's checksums.
    """
    shown = f"{RELEASE_DIR}/{released_path.parent.name}/{released_path.name}"
    if not (released_path.exists() and os.path.samefile(path, released_path)):
        return released_nb, f"the released {shown}"
    committed = committed_copy(released_path)
    if committed is not None:
        return committed, f"{shown} as last committed to git"
    return None, "the checksums nbgrader stored in each test cell"


def committed_copy(path: Path) -> Any | None:
    """The notebook at ``path`` as last committed to git, or None (no git, or not committed)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    nb, _ = intake.parse_notebook(done.stdout, path.name)
    return nb


def changed_by_checksum(nb: Any) -> list[str]:
    """Locked code cells whose source no longer matches the checksum nbgrader stored at release."""
    from nbgrader.utils import compute_checksum

    changed = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or not meta.get("locked") or not meta.get("checksum"):
            continue
        try:
            same = compute_checksum(cell) == meta["checksum"]
        except (KeyError, TypeError, ValueError):  # metadata edited too
            same = False
        if not same:
            changed.append(str(meta.get("grade_id")))
    return changed


# ----------------------------------------------------------------------------
# running it as autograding would
# ----------------------------------------------------------------------------
def run_notebook(nb: Any, raw: bytes, name: str, released_nb: Any, course: Course, settings: RunSettings,
                 tmp: Path) -> tuple[Any, list[str], float]:
    """Execute a copy of ``nb`` as autograding does; return it executed, what went wrong, seconds.

    The kernel gets a copy of the notebook (``raw``, under ``name``) in its working
    folder, as in grading, and the released notebook's kernel. A notebook still
    running after ``settings.student_timeout`` seconds has its kernel killed
    (:func:`_stop_after`), as grading kills a student's worker.
    """
    from nbclient.exceptions import DeadKernelError
    from nbgrader.utils import setenv

    from llmcourse.grading import supervisor
    from llmcourse.grading.collect import supervisor_issues

    work = tmp / "work"  # copied into the sandbox, whose user must be able to read it
    work.mkdir(mode=0o755)
    (work / name).write_bytes(raw)
    cfg = course.config(timeout=settings.timeout)
    supervisor.configure(cfg, settings.sandbox, slot_uid(0), settings.limits, settings.max_output_mb)
    supervisor.configure_notebook(cfg, supervisor.guard_plan(released_nb), work / name)
    executed = copy.deepcopy(nb)
    executed.metadata["kernelspec"] = released_nb.metadata.get("kernelspec", {"name": "python3"})
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executor = supervisor.GuardedExecute(config=cfg)
    problems: list[str] = []
    stopped = threading.Event()
    start = time.perf_counter()
    try:
        with temp_environ(grading_env(1)), setenv(NBGRADER_EXECUTION="autograde"), \
                _quiet(tmp / "kernel.log"), _stop_after(executor, settings.student_timeout, stopped):
            executor.preprocess(executed, {"metadata": {"path": str(work)}, "unique_key": name})
    except DeadKernelError:
        what = (f"was stopped after {fmt_points(settings.student_timeout)} s, the limit for a whole notebook"
                if stopped.is_set() else "died while running the notebook")
        problems.append(f"the kernel {what}; the cells after that did not run")
    except Exception as exc:  # a kernel that cannot start, a guard that cannot be set up
        problems.append(f"the notebook could not be run: {type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    report = getattr(executor, "report", None)
    if report is not None:
        problems += supervisor_issues(name, report.as_dict(), settings)
    return executed, cell_problems(executed, settings.timeout) + problems, seconds


@contextmanager
def _stop_after(executor: Any, seconds: float, stopped: threading.Event) -> Iterator[None]:
    """Kill the kernel's process group (its sandbox goes with it) if it still runs after ``seconds``,
    and set ``stopped``.

    A loop that swallows the interrupt would otherwise keep the kernel busy while
    every later cell waits out its own limit.
    """

    def kill() -> None:
        provisioner = getattr(getattr(executor, "km", None), "provisioner", None)
        group = getattr(provisioner, "pgid", None)
        if group:
            stopped.set()
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextmanager
def _quiet(log: Path) -> Iterator[None]:
    """Send what the kernel and nbclient print (start-up notes, timeout warnings) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy_of in zip((1, 2), saved):
                os.dup2(copy_of, fd)
                os.close(copy_of)


def where(cell: Any, index: int) -> str:
    """``cell 6 (test_top_k)``, or ``cell 6 (# Top-k with k = 3: ...)`` for a cell without an id."""
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    label = nbgrader_meta(cell).get("grade_id") or (first if len(first) <= 40 else first[:37].rstrip() + "...")
    return f"cell {index + 1}" + (f" ({label})" if label else "")


def cell_problems(nb: Any, timeout: float) -> list[str]:
    """Cells that ran past the time limit, and cells other than tests that raised an error."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if timed_out(cell):
            problems.append(f"{where(cell, index)} ran longer than {fmt_points(timeout)} s and was interrupted")
        elif not is_autograded_test(cell) and any(o.get("output_type") == "error" for o in cell.outputs):
            problems.append(f"{where(cell, index)} raised {error_summary(cell)}")
    return problems


def visible_tests(nb: Any, timeout: float) -> list[tuple[str, str]]:
    """``(grade id, why it failed or '')`` for every test cell of the executed notebook."""
    tests = []
    for cell in nb.cells:
        if is_autograded_test(cell):
            if timed_out(cell):
                error = f"interrupted after {fmt_points(timeout)} s"
            elif cell.execution_count is None and not cell.outputs:
                error = "did not run"
            else:
                error = error_summary(cell)
            tests.append((str(nbgrader_meta(cell).get("grade_id")), error))
    return tests


# ----------------------------------------------------------------------------
# the check
# ----------------------------------------------------------------------------
def read_student_notebook(path: Path, max_mb: float = intake.DEFAULT_MAX_NOTEBOOK_MB) -> tuple[Any, bytes]:
    """The notebook and its bytes, read with autograding's checks; or :class:`GradingError` saying why not."""
    if not path.exists() and not path.is_symlink():
        raise GradingError(f"{path}: no such file")
    if path.is_dir():
        raise GradingError(f"{path} is a folder; give the path of a notebook (.ipynb file)")
    nb, raw, problem = intake.read_notebook(path.parent, [path.name], max_mb)
    if problem:
        raise GradingError(f"{path} cannot be checked, and would not be graded: {problem}")
    return nb, raw


def check(path: Path | str, course_root: Path | str | None = None, timeout: float | None = None,
          sandbox_kind: str = "bwrap", warn: Callable[[str], None] | None = None,
          progress: Callable[[str], None] | None = None, notebook_timeout: float | None = None) -> CheckReport:
    """Check one notebook (see the module docstring); raises :class:`GradingError` for a file
    that is missing or no notebook, and when the sandbox cannot run.

    ``timeout`` limits each cell (default: the course's); ``notebook_timeout`` the whole
    notebook (default: autograde's ``--student-timeout``, 20 cells' worth, at least 300 s).
    """
    from llmcourse.grading.stage import compare_locked_cells

    ensure_tool_path()
    path = Path(path)
    nb, raw = read_student_notebook(path)
    course = released_course(course_root, path)
    released = released_notebooks(course)
    report = CheckReport(path=path, released=[f"{a}/{n}.ipynb" for a, n in released], sandbox=sandbox_kind)
    found = identify(nb, path.name, released)
    if found is None:
        return report
    report.assignment, report.notebook = found
    released_path = course.release_dir / report.assignment / report.expected_name
    reference, report.reference = reference_notebook(path, released_path, released[found])
    if reference is None:
        report.modified = changed_by_checksum(nb)
    else:
        report.modified, report.deleted = compare_locked_cells(nb, reference)

    check_sandbox(sandbox_kind, warn or log.warning)
    report.timeout = float(timeout if timeout is not None else course.cell_timeout())
    settings = RunSettings(timeout=report.timeout, sandbox=sandbox_kind, limits=Limits(),
                           student_timeout=notebook_timeout or max(300.0, 20 * report.timeout))  # autograde's
    (progress or (lambda msg: None))(f"running {path.name} top to bottom, {fmt_points(report.timeout)} s per cell ...")
    with tempfile.TemporaryDirectory(prefix="llmcourse-check-") as tmp:
        executed, report.run_problems, report.seconds = run_notebook(
            nb, raw, report.expected_name, released[found], course, settings, Path(tmp))
    report.ran = True
    report.tests = visible_tests(executed, report.timeout)
    return report


# ----------------------------------------------------------------------------
# saying it
# ----------------------------------------------------------------------------
def _names(ids: list[str]) -> str:
    return ", ".join(ids[:-1]) + f" and {ids[-1]}" if len(ids) > 1 else ids[0]


def format_check(report: CheckReport) -> str:
    """The report, in plain words; the last line is never a score."""
    lines = [f"Checking {report.path}"]
    if report.notebook is None:
        known = ", ".join(report.released) or "none in exercises/"
        lines += [f"- Notebook: none of the course's. None of its answer or test cells (by their nbgrader "
                  f"grade_id) belongs to a released notebook ({known}).",
                  "  Work in the notebook from exercises/<assignment>/ and keep its cells; "
                  "a notebook the course does not know cannot be graded.",
                  "Nothing was run. " + NOT_A_SCORE]
        return "\n".join(lines)
    lines.append(f"- Notebook: {report.expected_name} of assignment {report.assignment} "
                 f"(recognised by its cell ids); submit it as {report.assignment}/{report.expected_name}.")
    if report.renamed:
        lines.append(f"- File name: {report.path.name} is not {report.expected_name}. Rename it before you "
                     "submit: a notebook under another name is not graded, and scores 0 for that notebook.")
    else:
        lines.append("- File name: as expected.")
    lines += _test_cell_lines(report) + _run_lines(report) + _test_lines(report)
    to_fix = [what for what, wrong in (("its file name", report.renamed),
                                       ("its test cells", report.modified or report.deleted),
                                       ("how it runs", report.run_problems)) if wrong]
    if to_fix:
        lines.insert(-1, f"Before you submit, fix {_names(to_fix)} (above).")
    return "\n".join(lines)


def _test_cell_lines(report: CheckReport) -> list[str]:
    changes = ([f"{_names(report.modified)} edited"] if report.modified else []) + (
        [f"{_names(report.deleted)} deleted"] if report.deleted else [])
    if not changes:
        return [f"- Test cells: intact (compared with {report.reference})."]
    return [f"- Test cells: {' and '.join(changes)} (compared with {report.reference}).",
            "  Grading puts the released test cells back, so changing them earns nothing; "
            "this check ran your notebook as it is."]


def _run_lines(report: CheckReport) -> list[str]:
    how = "in the grading sandbox" if report.sandbox == "bwrap" else "WITHOUT the sandbox (--sandbox none)"
    limit = f"{fmt_points(report.timeout)} s"
    if not report.run_problems:
        return [f"- Run: top to bottom in {report.seconds:.1f} s, {how}, every cell within the limit of "
                f"{limit}."]
    return ([f"- Run: {report.seconds:.1f} s, {how}, with a limit of {limit} per cell, but:"]
            + [f"    {problem}" for problem in report.run_problems])


def _test_lines(report: CheckReport) -> list[str]:
    if not report.tests:
        return ["- Visible tests: none in this notebook.", "No visible test ran. " + NOT_A_SCORE]
    width = max(len(grade_id) for grade_id, _ in report.tests)
    lines = ["- Visible tests:"]
    for grade_id, error in report.tests:
        lines.append(f"    pass  {grade_id}" if not error else f"    FAIL  {grade_id:<{width}}  {error}")
    total = len(report.tests)
    if report.passed == total:
        lines.append(f"All {total} visible test{'s' if total > 1 else ''} passed. Hidden tests decide the "
                     "grade and may still fail; this is not a score.")
    else:
        lines.append(f"{report.passed} of {total} visible tests pass. {NOT_A_SCORE}")
    return lines
