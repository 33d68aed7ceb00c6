"""``llmcourse autograde``: grade a folder of submissions in parallel, robustly.

Input: ``SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb``.
Output (in ``--out DIR``):

* ``grades.csv``            one row per student and assignment:
                            ``student_id,assignment,score,max_score,status,notebooks``;
* ``gradebook.db``          a real nbgrader gradebook (SQLite) holding every grade,
                            so ``nbgrader export``/formgrader can work from it;
* ``feedback/<student_id>/<assignment>/<notebook>.html``  nbgrader's feedback page, made
                            safe to open and to send (:mod:`llmcourse.grading.feedback`:
                            no script from student content, no hidden tests unless
                            ``feedback_shows_tests``), or a short page saying why there is none;
* ``autograded/<student_id>/<assignment>/<notebook>.ipynb``  the executed notebooks;
* ``logs/<student_id>/<assignment>.log``  nbgrader's log for that submission;
* ``results.json``          everything above plus per-cell scores and timings.

Design
------
The stages: scan the submissions folder, untrusted input, without following or
reading anything unsafe (:mod:`llmcourse.grading.intake`); stage one scratch job
per gradable submission (:func:`plan_jobs`); run the jobs in worker processes
(:func:`run_jobs`, :mod:`llmcourse.grading.worker`), each student's kernel in the
sandbox and under the grading guard (:mod:`llmcourse.grading.supervisor`,
:mod:`llmcourse.grading.sandbox`, :mod:`llmcourse.grading.guard`); collect their
results (:func:`collect_result`); write the outputs.

Student code is hostile until proven otherwise. Its kernel runs under bubblewrap
(``sandbox="bwrap"``, the default; checked before anyone is graded, with a message
saying how to install it): no network; no view of ``solutions/``, the gradebook,
the job folder, other students, your home or the repository, only the Python
installation, the course package's ``src/``, a private working folder holding a
copy of its own notebook, and a private ``/tmp``; as a user of its own per
parallel job; with limits on memory, processes, file size (:class:`Limits`) and
the notebook's outputs; and nothing it starts outlives its notebook. Scores are
computed and written here and in the worker, where it cannot reach.
``sandbox="none"`` runs kernels with your rights, and says so.

nbgrader keeps its state in one SQLite gradebook and is not built to have
several processes autograde into it at once. So every (student, assignment)
pair is graded in an isolated scratch course root with a private copy of a
template gradebook (generated once per run from ``solutions/``), by a worker
process (:mod:`llmcourse.grading.worker`). Jobs share nothing and run side by
side; the parent alone writes ``DIR/gradebook.db``, copying each job's scores in
through :class:`nbgrader.api.Gradebook` once all are done. That keeps the
combined gradebook consistent without any locking, and a job that crashes,
hangs or is killed loses nothing but its own submission.

There is one worker process per parallel job, driven from a thread pool, and it
grades job after job, so nbgrader is imported once per worker rather than once
per student. A plain subprocess, unlike a ``ProcessPoolExecutor`` task, can be
given a hard wall-clock limit: a worker still busy after ``--student-timeout``
seconds is killed (its kernels exit with it) and the next job gets a fresh one.
Kernels get ``LLMCOURSE_DEVICE=cpu`` and an equal share of the CPU threads
(unless set otherwise), so grades never depend on the machine or on ``--jobs``.

Robustness (each case costs only the points it affects and is named in ``status``):

* a notebook that is not JSON, or JSON that is not a notebook: not run, 0 points
  for that notebook (``malformed notebook: ...``);
* a missing notebook, or one under another name: 0 points for it
  (``missing notebook: ...``, ``wrong notebook name: ...``); no folder at all for
  an assignment that other students submitted: ``missing submission: ...``;
* an edited or deleted test cell: nbgrader restores it from the source before
  running, so rewriting asserts earns nothing (``test cell modified (restored)``,
  ``test cell deleted (restored)``);
* a cell that runs past ``--timeout`` seconds (``while True: pass``): nbgrader
  interrupts it and goes on with the next cell (``timeout: ...``); a worker
  that still runs after ``--student-timeout`` seconds is killed (``timeout:``);
* a change to the grading environment that a test cell meets (a replaced
  ``torch.allclose``, builtin or exception hook, an object that equals anything,
  a test cell that never reports to the grader): 0 for that cell
  (``tampering detected: ...``);
* a limit that stops student code: ``memory limit: ...``, ``process limit: ...``,
  ``file size limit: ...``, ``output limit: ...`` (the notebook printed more than
  ``max_output_mb``; what followed was not kept and the cell was interrupted);
* anything else that stops nbgrader: ``error: ...`` for that notebook only;
* anything unsafe in the submissions folder (:mod:`llmcourse.grading.intake`) is
  never followed or read: a symbolic link, a hard link, a pipe or device
  (``unsafe file: ...``), a notebook over ``max_notebook_mb``
  (``notebook too large: ...``), JSON nested too deeply (``malformed notebook: ...``),
  a ``timestamp.txt`` that is no date (``bad timestamp: ...``, graded all the same),
  and a folder name that is no valid student id (``invalid student id: ...``: a row
  under a printable form of the name, but no gradebook entry and no output folder).

Re-running is safe: rows, feedback and gradebook entries of the assignments
being graded are replaced, those of other assignments are kept.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import nbformat

from llmcourse.grading.course import (
    RELEASE_DIR,
    SOURCE_DIR,
    Course,
    GradingError,
    is_ignored_name,
    sqlite_url,
)
from llmcourse.grading import intake, sandbox
from llmcourse.grading.execution import ensure_tool_path, grading_env, nbgrader_meta
from llmcourse.grading.sandbox import Limits
from llmcourse.grading.supervisor import DEFAULT_MAX_OUTPUT_MB, SANDBOXES, guard_plan

log = logging.getLogger("llmcourse.grading")

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "notebooks"]
NO_SANDBOX_WARNING = (
    "--sandbox none: student code runs with your rights, outside any sandbox: it can read "
    "solutions/, the hidden tests, the gradebook and other students' work, use the network, "
    "and change your files. Use it only for submissions you trust")


def fmt_points(value: float) -> str:
    value = round(float(value), 4)
    return str(int(value)) if value == int(value) else f"{value:g}"


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------
@dataclass
class CellGrade:
    score: float | None
    max_score: float
    needs_manual_grade: bool = False


@dataclass
class NotebookGrade:
    name: str
    cells: dict[str, CellGrade] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    graded: bool = False
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(c.score or 0.0 for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())


@dataclass
class Row:
    student_id: str
    assignment: str
    notebooks: dict[str, NotebookGrade] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timestamp: str | None = None
    valid_id: bool = True  # False: a folder name that is no student id; no gradebook entry, no feedback

    @property
    def score(self) -> float:
        return sum(n.score for n in self.notebooks.values())

    @property
    def max_score(self) -> float:
        return sum(n.max_score for n in self.notebooks.values())

    @property
    def status(self) -> str:
        if not self.issues:
            manual = any(c.needs_manual_grade for n in self.notebooks.values() for c in n.cells.values())
            return "ok (needs manual grading)" if manual else "ok"
        return "; ".join(self.issues)

    def csv_row(self) -> dict[str, str]:
        return {
            "student_id": self.student_id,
            "assignment": self.assignment,
            "score": fmt_points(self.score),
            "max_score": fmt_points(self.max_score),
            "status": self.status,
            "notebooks": " ".join(
                f"{n.name}.ipynb={fmt_points(n.score)}/{fmt_points(n.max_score)}"
                for n in self.notebooks.values()
            ),
        }


@dataclass
class AutogradeReport:
    out: Path
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, student_id: str, assignment: str) -> Row:
        for row in self.rows:
            if row.student_id == student_id and row.assignment == assignment:
                return row
        raise KeyError((student_id, assignment))


# ----------------------------------------------------------------------------
# scanning and checking submissions (in the parent, before anything runs)
# ----------------------------------------------------------------------------
def scan_submissions(
    course: Course, submissions: Path, assignments: Iterable[str] | None, warn: Callable[[str], None]
) -> tuple[list[intake.StudentFolder], list[str]]:
    """The students in ``submissions`` (see :mod:`llmcourse.grading.intake`) and the assignments to grade."""
    if not submissions.exists():
        raise GradingError(f"submissions folder {submissions} does not exist")
    if not submissions.is_dir():
        raise GradingError(f"submissions path {submissions} is not a folder")
    wanted = set(course.resolve_assignments(assignments)) if assignments else None
    students = intake.scan(submissions, course.assignments(), wanted, warn)
    if not students:
        raise GradingError(
            f"no student folders in {submissions} "
            "(expected SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb)"
        )
    names = sorted(wanted) if wanted is not None else sorted({a for s in students for a in s.assignments})
    if not names:
        raise GradingError(
            f"no submissions for any assignment of the course in {submissions}; "
            f"assignments are: {', '.join(course.assignments()) or '(none)'}"
        )
    return students, names


def load_submitted_notebook(path: Path, max_mb: float = intake.DEFAULT_MAX_NOTEBOOK_MB
                            ) -> tuple[object | None, str | None]:
    """Read a submitted notebook; return (notebook, None) or (None, why it is not graded)."""
    nb, _, problem = intake.read_notebook(path.parent, [path.name], max_mb)
    return nb, problem.removeprefix("malformed notebook: ") if problem else None


def compare_locked_cells(submitted, released) -> tuple[list[str], list[str]]:
    """Test cells (and other locked code cells) that were edited or deleted."""
    sub_cells = {}
    for cell in submitted.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id and grade_id not in sub_cells:
            sub_cells[grade_id] = cell
    modified, deleted = [], []
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("locked") or cell.cell_type != "code":
            continue
        grade_id = meta.get("grade_id")
        mine = sub_cells.get(grade_id)
        if mine is None:
            if meta.get("grade"):
                deleted.append(grade_id)
            continue
        if mine.cell_type != cell.cell_type or mine.source.strip() != cell.source.strip():
            modified.append(grade_id)
    return modified, deleted


def prepare_job(row: Row, submissions: Path, job_root: Path, released: dict, max_mb: float,
                warn: Callable[[str], None]) -> list[str]:
    """Check one student's assignment folder and stage what can be graded.

    Writes the notebooks that pass every check (and a valid ``timestamp.txt``),
    as the bytes that were checked, into ``job_root/submitted/<student>/<assignment>/``;
    records every problem in ``row.issues`` and returns the names of the notebooks to grade.
    """
    expected = list(released)
    folder = (row.student_id, row.assignment)
    dest = job_root / "submitted" / row.student_id / row.assignment
    dest.mkdir(parents=True)
    present: list[str] = []
    for entry in intake.list_folder(submissions, folder):
        shown = f"{submissions}/{intake.shown_path([*folder, entry.name])}"
        if is_ignored_name(entry.name):
            warn(f"ignoring {shown} (hidden or editor file)")
        elif entry.name.endswith(".ipynb"):
            present.append(entry.name[: -len(".ipynb")])
        elif entry.name == "timestamp.txt":
            row.timestamp, problem = intake.read_timestamp(submissions, [*folder, entry.name])
            if problem:
                row.issues.append(problem)
            elif row.timestamp:
                (dest / "timestamp.txt").write_text(row.timestamp, encoding="utf-8")
        else:
            warn(f"ignoring stray {entry.kind} {shown}")
    name_issues(row, expected, present)
    gradable = []
    for nb_name in expected:
        if nb_name not in present:
            continue
        nb, raw, problem = intake.read_notebook(submissions, [*folder, f"{nb_name}.ipynb"], max_mb)
        if problem:
            row.issues.append(problem)
            continue
        modified, deleted = compare_locked_cells(nb, released[nb_name])
        if modified:
            row.issues.append(f"test cell modified (restored): {nb_name}.ipynb {', '.join(modified)}")
        if deleted:
            row.issues.append(f"test cell deleted (restored): {nb_name}.ipynb {', '.join(deleted)}")
        (dest / f"{nb_name}.ipynb").write_bytes(raw)
        gradable.append(nb_name)
    return gradable


def name_issues(row: Row, expected: list[str], present: list[str]) -> None:
    """``missing notebook`` and ``wrong notebook name`` issues of one submission."""
    unexpected = sorted(intake.printable(nb) for nb in set(present) - set(expected))
    missing = [nb for nb in expected if nb not in present]
    if len(missing) == 1 and len(unexpected) == 1:
        row.issues.append(
            f"wrong notebook name: got {unexpected[0]}.ipynb, expected {missing[0]}.ipynb (not graded)"
        )
    else:
        row.issues.extend(f"missing notebook: {nb}.ipynb" for nb in missing)
        row.issues.extend(
            f"wrong notebook name: {nb}.ipynb is not part of {row.assignment} (not graded)" for nb in unexpected
        )


# ----------------------------------------------------------------------------
# the worker pool
# ----------------------------------------------------------------------------
@dataclass
class Job:
    row: Row
    root: Path
    notebooks: list[str]
    guard: dict = field(default_factory=dict)  # notebook -> what its grading guard watches (guard_plan)


@dataclass(frozen=True)
class RunSettings:
    """How every job of one run is graded."""

    timeout: float  # seconds per cell
    student_timeout: float  # seconds per job, then the worker is killed
    feedback_shows_tests: bool = False
    sandbox: str = "bwrap"  # "bwrap" or "none"
    limits: Limits = Limits()
    max_output_mb: float = DEFAULT_MAX_OUTPUT_MB

    def job_fields(self, uid: int) -> dict:
        return {"timeout": self.timeout, "feedback_shows_tests": self.feedback_shows_tests,
                "run": {"sandbox": self.sandbox, "uid": uid, "limits": asdict(self.limits),
                        "max_output_mb": self.max_output_mb}}


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a worker and everything it started (its kernels run in their own sessions,
    but exit by themselves once their parent is gone)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class WorkerProcess:
    """A long-lived ``python -m llmcourse.grading.worker --serve`` process.

    It grades one job at a time. A job that overruns its hard limit gets the
    process killed; the next job starts a fresh one.
    """

    STARTUP_LIMIT = 300.0

    def __init__(self, env: dict, log_path: Path) -> None:
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmcourse.grading.worker", "--serve"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True,
        )
        self._buffer = b""
        self._ready = False
        self._eof = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_line(self, limit: float) -> bytes | None:
        """Next line from the worker; None if it takes longer than ``limit`` s or the worker ends."""
        deadline = time.monotonic() + limit
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._eof = True
                    return None
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def run(self, job_file: Path, limit: float) -> str:
        """Send a job; return ``'done'``, ``'killed'`` (over ``limit`` s) or ``'died'``.

        The clock starts once the worker has finished importing nbgrader, so
        ``limit`` measures grading only.
        """
        if not self._ready:
            if self._read_line(self.STARTUP_LIMIT) != b"ready":
                self.close(kill=True)
                return "died"
            self._ready = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{job_file}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return "died"
        if self._read_line(limit) is None:
            if self._eof:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.close(kill=True)
                return "died"
            self.close(kill=True)
            return "killed"
        return "done"

    def close(self, kill: bool = False) -> None:
        if self.alive():
            if kill:
                _kill_group(self.proc)
            else:
                try:
                    self.proc.stdin.close()  # type: ignore[union-attr]
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    _kill_group(self.proc)
        self.log.close()


def run_job(job: Job, course: Course, settings: RunSettings, worker: WorkerProcess, uid: int) -> dict:
    """Have ``worker`` grade ``job``, its kernels running as user ``uid``; the result."""
    job_file = job.root / "job.json"
    job_file.write_text(json.dumps({
        "root": str(job.root),
        "course_root": str(course.root),
        "student": job.row.student_id,
        "assignment": job.row.assignment,
        "notebooks": job.notebooks,
        "guard": job.guard,
        **settings.job_fields(uid),
    }))
    start = time.perf_counter()
    outcome = worker.run(job_file, settings.student_timeout)
    seconds = time.perf_counter() - start
    if outcome == "killed":
        return {"ok": False, "killed": True, "seconds": seconds}
    result_file = job.root / "result.json"
    if outcome == "died" or not result_file.is_file():
        code = worker.proc.poll()
        return {"ok": False, "error": f"grading process stopped (exit code {code}) without a result",
                "seconds": seconds}
    result = json.loads(result_file.read_text())
    result["seconds"] = seconds
    return result


# ----------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------
def placeholder_feedback(path: Path, student: str, assignment: str, notebook: str, reason: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(assignment)}/{html.escape(notebook)}.ipynb</title></head>\n"
        f"<body><h1>{html.escape(assignment)}: {html.escape(notebook)}.ipynb</h1>\n"
        f"<p>Student: {html.escape(student)}</p>\n"
        f"<p>This notebook was not graded: {html.escape(reason)}.</p>\n"
        "<p>Score: 0</p>\n</body></html>\n",
        encoding="utf-8",
    )


def write_csv(path: Path, rows: list[Row], replaced_assignments: set[str]) -> None:
    """Write ``grades.csv``, keeping earlier rows of assignments not graded this time."""
    kept: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            for old in csv.DictReader(fh):
                if old.get("assignment") not in replaced_assignments:
                    kept.append({k: old.get(k, "") for k in CSV_COLUMNS})
    all_rows = kept + [r.csv_row() for r in rows]
    all_rows.sort(key=lambda r: (r["assignment"], r["student_id"]))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(all_rows)
    tmp.replace(path)


def record_in_gradebook(course: Course, db_path: Path, template_root: Path, template_db: Path,
                        rows: list[Row], assignments: list[str]) -> None:
    """Replace this run's assignments in the combined nbgrader gradebook with the new grades."""
    from nbgrader.api import Gradebook, MissingEntry

    from llmcourse.grading.release import generate

    course_id = course.base_config.CourseDirectory.get("course_id", "")
    db_url = sqlite_url(db_path)
    if not db_path.exists():
        shutil.copy(template_db, db_path)  # knows the assignments, holds no submissions
        os.chmod(db_path, 0o644)
    else:
        with Gradebook(db_url, course_id) as gb:
            for assignment in assignments:
                try:
                    existing = gb.find_assignment(assignment)
                except MissingEntry:
                    continue
                for submission in list(existing.submissions):
                    gb.remove_submission(assignment, submission.student.id)
        # nbgrader itself records (or updates) the assignments' notebooks and cells.
        generate(course, assignments, root=template_root, db_url=db_url)
    with Gradebook(db_url, course_id) as gb:
        for row in rows:
            if not row.valid_id:
                continue
            gb.update_or_create_student(row.student_id)
            kwargs = {"timestamp": row.timestamp} if row.timestamp else {}
            gb.add_submission(row.assignment, row.student_id, **kwargs)
            for nb in row.notebooks.values():
                for cell_id, cell in nb.cells.items():
                    grade = gb.find_grade(cell_id, nb.name, row.assignment, row.student_id)
                    grade.auto_score = cell.score
                    grade.needs_manual_grade = bool(cell.needs_manual_grade)
                for cell_id, text in nb.comments.items():
                    try:
                        comment = gb.find_comment(cell_id, nb.name, row.assignment, row.student_id)
                    except MissingEntry:
                        continue
                    comment.auto_comment = text
            gb.db.commit()


# ----------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------
def autograde(
    course: Course,
    submissions: Path | str,
    out: Path | str,
    jobs: int | None = None,
    timeout: float | None = None,
    student_timeout: float | None = None,
    assignments: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
    feedback_shows_tests: bool = False,
    max_notebook_mb: float = intake.DEFAULT_MAX_NOTEBOOK_MB,
    sandbox_kind: str = "bwrap",
    limits: Limits | None = None,
    max_output_mb: float = DEFAULT_MAX_OUTPUT_MB,
) -> AutogradeReport:
    """Grade every student in ``submissions`` into ``out``; see the module docstring.

    Feedback pages show the hidden tests' source only with ``feedback_shows_tests``;
    a notebook over ``max_notebook_mb`` megabytes is not read. Student kernels run in
    the bubblewrap sandbox with ``limits`` (``sandbox_kind="bwrap"``), or with your
    rights (``"none"``, with a warning); a notebook's outputs past ``max_output_mb``
    are not kept.
    """
    start_all = time.perf_counter()
    ensure_tool_path()
    submissions = Path(submissions).resolve()
    out = Path(out).resolve()
    report = AutogradeReport(out=out)
    say = progress or (lambda msg: None)

    def warn(msg: str) -> None:
        report.warnings.append(msg)
        log.warning(msg)

    if not 0 < max_notebook_mb < float("inf"):
        raise GradingError("--max-notebook-mb must be a finite, positive number of megabytes")
    if not 0 < max_output_mb < float("inf"):
        raise GradingError("--max-output-mb must be a finite, positive number of megabytes")
    check_sandbox(sandbox_kind, warn)
    students, names = scan_submissions(course, submissions, assignments, warn)
    if out == submissions or submissions in out.parents:
        raise GradingError(f"--out {out} must not be inside the submissions folder {submissions}")
    timeout = float(timeout if timeout is not None else course.cell_timeout())
    if timeout <= 0:
        raise GradingError("--timeout must be a positive number of seconds")
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    if student_timeout is None:
        student_timeout = max(300.0, 20 * timeout)
    settings = RunSettings(timeout=timeout, student_timeout=float(student_timeout),
                           feedback_shows_tests=feedback_shows_tests, sandbox=sandbox_kind,
                           limits=limits or Limits(), max_output_mb=float(max_output_mb))
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="llmcourse-autograde-") as tmp:
        tmp = Path(tmp)
        template = tmp / "template"
        say(f"preparing {', '.join(names)} from {course.source_dir}")
        released = prepare_template(course, names, template, warn)
        jobs_to_run = plan_jobs(report, students, names, submissions, released, template, tmp,
                                max_notebook_mb, warn)
        say(f"grading {len(jobs_to_run)} submission(s) with {jobs} parallel job(s), "
            f"{fmt_points(timeout)} s per cell, " + (f"sandboxed ({settings.limits.describe()})"
                                                    if sandbox_kind == "bwrap" else "NOT sandboxed"))
        results = run_jobs(jobs_to_run, course, settings, jobs, tmp, say)
        clear_outputs(out, names)
        for job, result in results:
            collect_result(job, result, out, settings)
        write_placeholder_feedback(report)
        say("recording grades in the gradebook")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not in session.*")
            record_in_gradebook(course, out / "gradebook.db", template, template / "gradebook.db",
                                report.rows, names)

    write_csv(out / "grades.csv", report.rows, set(names))
    report.seconds = time.perf_counter() - start_all
    write_results_json(report)
    return report


def check_sandbox(kind: str, warn: Callable[[str], None]) -> None:
    """Stop, saying how to fix it, unless student kernels can run as ``kind`` asks; warn for ``none``."""
    if kind not in SANDBOXES:
        raise GradingError(f"--sandbox must be one of {', '.join(SANDBOXES)}, got {kind!r}")
    if kind == "none":
        warn(NO_SANDBOX_WARNING)
        return
    sandbox.check_available()  # SandboxUnavailable (a GradingError) says what to install or change


def prepare_template(course: Course, names: list[str], template: Path, warn: Callable[[str], None]) -> dict:
    """Generate the assignments once into ``template`` (with its gradebook); return the
    released notebooks as ``{assignment: {notebook: nb}}``."""
    from llmcourse.grading.release import compare_trees, generate

    generate(course, names, root=template, db_url=sqlite_url(template / "gradebook.db"))
    for assignment in names:
        if compare_trees(template / RELEASE_DIR / assignment, course.release_dir / assignment):
            warn(f"exercises/{assignment}/ differs from a fresh generation of solutions/{assignment}/; "
                 "grading against solutions/ (run `llmcourse release` to update exercises/)")
    return {
        assignment: {
            nb: nbformat.read(str(template / RELEASE_DIR / assignment / f"{nb}.ipynb"), as_version=4)
            for nb in course.notebooks(assignment)
        }
        for assignment in names
    }


def empty_grade(name: str, released_nb) -> NotebookGrade:
    """Every graded cell of a notebook at 0 points: what a notebook that is not run earns."""
    grade = NotebookGrade(name)
    for cell in released_nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            grade.cells[meta["grade_id"]] = CellGrade(0.0, float(meta.get("points", 0)))
    return grade


def plan_jobs(report: AutogradeReport, students: list[intake.StudentFolder], names: list[str],
              submissions: Path, released: dict, template: Path, tmp: Path, max_mb: float,
              warn: Callable[[str], None]) -> list[Job]:
    """One row per (student, assignment) in ``report``; one scratch job per gradable submission."""
    planned: list[Job] = []
    plans = guard_plans(template, names, released)
    for student in students:
        for assignment in names:
            row = Row(student_id=student.student_id, assignment=assignment, valid_id=student.valid_id)
            report.rows.append(row)
            row.notebooks = {nb: empty_grade(nb, released[assignment][nb]) for nb in released[assignment]}
            problem = student.problem or student.assignments.get(assignment)
            if problem:
                row.issues.append(problem)
                continue
            if assignment not in student.assignments:
                row.issues.append(f"missing submission: no folder {student.name}/{assignment}/")
                continue
            job_root = tmp / "jobs" / student.name / assignment
            try:
                gradable = prepare_job(row, submissions, job_root, released[assignment], max_mb, warn)
            except Exception as exc:  # an unreadable submission must not stop the batch
                row.issues.append(f"error: could not read the submission ({type(exc).__name__}: {exc})")
                continue
            if gradable:
                # nbgrader grades from the cells stored in the gradebook, so the source
                # notebooks, hidden tests and all, are not copied next to the student's code
                # (which in any case runs in a sandbox that sees none of the job folder)
                shutil.copytree(template / SOURCE_DIR / assignment, job_root / SOURCE_DIR / assignment,
                                ignore=shutil.ignore_patterns("*.ipynb"))
                shutil.copy(template / "gradebook.db", job_root / "gradebook.db")
                guard = {nb: plans[assignment][nb] for nb in gradable}
                planned.append(Job(row=row, root=job_root, notebooks=gradable, guard=guard))
    return planned


def guard_plans(template: Path, names: list[str], released: dict) -> dict:
    """``{assignment: {notebook: guard_plan}}`` from the instructor's source notebooks."""
    return {assignment: {nb: guard_plan(nbformat.read(str(template / SOURCE_DIR / assignment / f"{nb}.ipynb"),
                                                      as_version=4))
                         for nb in released[assignment]}
            for assignment in names}


def run_jobs(planned: list[Job], course: Course, settings: RunSettings, jobs: int,
             tmp: Path, say: Callable[[str], None]) -> list[tuple[Job, dict]]:
    """Grade the jobs on ``jobs`` worker processes; one job's failure is only its own result.

    Each worker thread is a slot with a sandbox user of its own (:func:`sandbox.slot_uid`):
    the process limit counts a user's processes, so one student's fork bomb never takes
    another's share, and a killed worker's replacement reuses the slot's user.
    """
    env = dict(os.environ)
    env.update(grading_env(jobs))
    lock = threading.Lock()
    done = [0]
    local = threading.local()
    workers: list[WorkerProcess] = []
    slots = [0]

    def work(job: Job) -> tuple[Job, dict]:
        try:
            worker = getattr(local, "worker", None)
            if worker is None or not worker.alive():
                with lock:
                    worker = WorkerProcess(env, tmp / f"worker-{len(workers)}.log")
                    workers.append(worker)
                    if not hasattr(local, "slot"):
                        local.slot, slots[0] = slots[0] % sandbox.SLOTS_PER_RUN, slots[0] + 1
                local.worker = worker
            result = run_job(job, course, settings, worker, sandbox.slot_uid(local.slot))
        except Exception as exc:  # never let one submission stop the batch
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
        with lock:
            done[0] += 1
            say(f"[{done[0]}/{len(planned)}] {job.row.student_id}/{job.row.assignment} "
                f"in {result.get('seconds', 0):.1f} s")
        return job, result

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        results = list(pool.map(work, planned))
    except BaseException:  # Ctrl-C: stop every worker now rather than after its job
        for worker in list(workers):
            worker.close(kill=True)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for worker in workers:
        worker.close()
    return results


def clear_outputs(out: Path, names: list[str]) -> None:
    """Remove earlier runs' feedback, notebooks and logs of the assignments graded now."""
    for kind in ("feedback", "autograded", "logs"):
        base = out / kind
        if not base.is_dir():
            continue
        for student_dir in base.iterdir():
            for assignment in names:
                for stale in (student_dir / assignment, student_dir / f"{assignment}.log"):
                    if stale.is_dir():
                        shutil.rmtree(stale)
                    elif stale.exists():
                        stale.unlink()


def collect_result(job: Job, result: dict, out: Path, settings: RunSettings) -> None:
    """Copy one job's scores into its row, and its feedback, notebook and log into ``out``."""
    timeout, student_timeout = settings.timeout, settings.student_timeout
    row = job.row
    row.seconds = float(result.get("seconds", 0.0))
    log_src = job.root / "worker.log"
    if log_src.is_file():
        (out / "logs" / row.student_id).mkdir(parents=True, exist_ok=True)
        shutil.copy(log_src, out / "logs" / row.student_id / f"{row.assignment}.log")
    if result.get("killed"):
        row.issues.append(f"timeout: grading stopped after {fmt_points(student_timeout)} s "
                          f"(--student-timeout); {', '.join(n + '.ipynb' for n in job.notebooks)} scored 0")
        return
    if not result.get("ok"):
        row.issues.append(f"error: {result.get('error', 'grading failed')}")
        return
    row.seconds = sum(float(i.get("seconds", 0.0)) for i in result["notebooks"].values())
    for nb_name, info in result["notebooks"].items():
        grade = row.notebooks[nb_name]
        grade.seconds = float(info.get("seconds", 0.0))
        row.issues.extend(supervisor_issues(f"{nb_name}.ipynb", info.get("supervisor") or {}, settings))
        row.issues.extend(f"error: {err}" for err in info.get("errors", []))
        if not info.get("graded"):
            continue
        grade.graded = True
        for cell_id, cell in info["cells"].items():
            grade.cells[cell_id] = CellGrade(cell["score"], cell["max_score"], cell["needs_manual_grade"])
        grade.comments = dict(info.get("comments", {}))
        if info.get("timeouts"):
            row.issues.append(f"timeout: {nb_name}.ipynb {', '.join(info['timeouts'])} ran longer than "
                              f"{fmt_points(timeout)} s and was interrupted")
        if info.get("feedback"):
            dest = out / "feedback" / row.student_id / row.assignment / f"{nb_name}.html"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(info["feedback"], dest)
        src_nb = job.root / "autograded" / row.student_id / row.assignment / f"{nb_name}.ipynb"
        if src_nb.is_file():
            dest = out / "autograded" / row.student_id / row.assignment / f"{nb_name}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src_nb, dest)
            os.chmod(dest, 0o644)


LIMIT_NAMES = {"memory": "memory limit", "processes": "process limit", "file size": "file size limit"}


def supervisor_issues(notebook: str, report: dict, settings: RunSettings) -> list[str]:
    """The ``status`` entries for what the supervisor saw while ``notebook`` ran."""
    issues = []
    tampering = report.get("tampering") or {}
    if tampering:
        issues.append("tampering detected: " + "; ".join(f"{notebook} {cell}: {what}"
                                                          for cell, what in tampering.items()))
    limits = settings.limits
    values = {"memory": f"--memory-mb {limits.memory_mb}", "processes": f"--max-processes {limits.processes}",
              "file size": f"--max-file-mb {limits.file_size_mb}"}
    if report.get("memory_killed_mb"):
        issues.append(f"memory limit: {notebook} used {report['memory_killed_mb']} MB in all, more than "
                      f"{values['memory']}; its kernel was stopped and the notebook scored 0")
    for kind, cells in (report.get("limits") or {}).items():
        issues.append(f"{LIMIT_NAMES.get(kind, kind + ' limit')}: {notebook} {', '.join(cells)} "
                      f"stopped at {values.get(kind, kind)}")
    if report.get("output_cut"):
        issues.append(f"output limit: {notebook} printed more than --max-output-mb {settings.max_output_mb:g}; "
                      "later output was not kept")
    return issues


def write_placeholder_feedback(report: AutogradeReport) -> None:
    """A short page saying why, for every notebook that has no nbgrader feedback."""
    for row in report.rows:
        if not row.valid_id:  # never a path named by a folder name that is no student id
            continue
        for nb_name in row.notebooks:
            html_path = report.out / "feedback" / row.student_id / row.assignment / f"{nb_name}.html"
            if not html_path.exists():
                reasons = [i for i in row.issues if nb_name in i or i.startswith("missing submission")]
                placeholder_feedback(html_path, row.student_id, row.assignment, nb_name,
                                     "; ".join(reasons) or row.status)


def write_results_json(report: AutogradeReport) -> None:
    """``results.json``: the CSV rows plus issues, per-cell scores and timings."""
    data = {
        "seconds": report.seconds,
        "warnings": report.warnings,
        "rows": [
            {**row.csv_row(), "issues": row.issues, "seconds": row.seconds,
             "notebooks": {k: asdict(v) for k, v in row.notebooks.items()}}
            for row in report.rows
        ],
    }
    (report.out / "results.json").write_text(json.dumps(data, indent=1))


def format_summary(report: AutogradeReport) -> str:
    lines = [f"{'student_id':<20}{'assignment':<22}{'score':>8}  {'time':>7}  status"]
    for row in sorted(report.rows, key=lambda r: (r.assignment, r.student_id)):
        lines.append(
            f"{row.student_id:<20}{row.assignment:<22}"
            f"{fmt_points(row.score) + '/' + fmt_points(row.max_score):>8}  {row.seconds:6.1f}s  {row.status}"
        )
    lines.append(f"{len(report.rows)} row(s) in {report.seconds:.1f} s; grades in {report.out / 'grades.csv'}, "
                 f"feedback in {report.out / 'feedback'}, gradebook {report.out / 'gradebook.db'}")
    return "\n".join(lines)
