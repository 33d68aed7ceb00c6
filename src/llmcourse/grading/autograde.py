"""``llmcourse autograde``: grade a folder of submissions in parallel, robustly.

Input: ``SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb``.
Output (in ``--out DIR``):

* ``grades.csv``            one row per student and assignment:
                            ``student_id,assignment,score,max_score,status,notebooks,late_seconds,penalty``
                            (``score`` after the late penalty);
* ``gradebook.db``          a real nbgrader gradebook (SQLite) holding every grade,
                            so ``nbgrader export``/formgrader can work from it; with
                            ``db_url`` (``--db``) that gradebook is written to any
                            database nbgrader supports (PostgreSQL, say) instead;
* ``feedback/<student_id>/<assignment>/<notebook>.html``  nbgrader's feedback page, made
                            safe to open and to send (:mod:`llmcourse.grading.feedback`:
                            no script from student content, no hidden tests unless
                            ``feedback_shows_tests``), or a short page saying why there is none;
* ``autograded/<student_id>/<assignment>/<notebook>.ipynb``  the executed notebooks;
* ``logs/<student_id>/<assignment>.log``  nbgrader's log for that submission;
* ``results.json``          everything above plus per-cell scores and timings.

Design
------
The stages, each a module of its own, that :func:`autograde` calls in turn:

1. scan the submissions folder, untrusted input, without following or reading
   anything unsafe (:func:`llmcourse.grading.intake.scan_submissions`);
2. stage one scratch job per gradable submission (:mod:`llmcourse.grading.stage`);
3. run the jobs in worker processes (:mod:`llmcourse.grading.run`,
   :mod:`llmcourse.grading.worker`), each student's kernel in the sandbox and
   under the grading guard (:mod:`llmcourse.grading.supervisor`,
   :mod:`llmcourse.grading.sandbox`, :mod:`llmcourse.grading.guard`);
4. collect their results (:mod:`llmcourse.grading.collect`);
5. write the outputs (:mod:`llmcourse.grading.write`).

What they pass along, the rows of scores and status, is :mod:`llmcourse.grading.report`.

Student code is hostile until proven otherwise. Its kernel runs under bubblewrap
(``sandbox="bwrap"``, the default; checked before anyone is graded, with a message
saying how to install it): no network; no view of ``solutions/``, the gradebook,
the job folder, other students, your home or the repository, only the Python
installation, the course package's ``src/``, a private working folder holding a
copy of its own notebook, and a private ``/tmp``; as a user of its own per
parallel job; with limits on memory, processes, file size
(:class:`~llmcourse.grading.sandbox.Limits`) and the notebook's outputs; and
nothing it starts outlives its notebook. Scores are computed and written here
and in the worker, where it cannot reach.
``sandbox="none"`` runs kernels with your rights, and says so.

nbgrader keeps its state in one SQLite gradebook and is not built to have
several processes autograde into it at once. So every (student, assignment)
pair is graded in an isolated scratch course root with a private copy of a
template gradebook (generated once per run from ``solutions/``), by a worker
process (:mod:`llmcourse.grading.worker`). Jobs share nothing and run side by
side; the parent alone writes ``DIR/gradebook.db`` (or the ``db_url`` database),
copying each job's scores in through :class:`nbgrader.api.Gradebook` once all
are done. That keeps the
combined gradebook consistent without any locking, and a job that crashes,
hangs or is killed loses nothing but its own submission.

There is one worker process per parallel job (:mod:`llmcourse.grading.run`),
driven from a thread pool, and it grades job after job, so nbgrader is imported
once per worker rather than once per student. A plain subprocess, unlike a
``ProcessPoolExecutor`` task, can be given a hard wall-clock limit: a worker
still busy after ``--student-timeout`` seconds is killed (its kernels exit with
it) and the next job gets a fresh one.
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

Late submissions: an assignment's due date (``LLMCourse.due_dates`` in
``nbgrader_config.py``) goes into the gradebook every job starts from, so that
nbgrader's own ``AssignLatePenalties``, with the plugin configured there
(:mod:`llmcourse.grading.late`), takes the penalty off a submission whose
``timestamp.txt`` is later; a bad setting stops the run before anyone is graded.

Re-running is safe: rows, feedback and gradebook entries of the assignments
being graded are replaced, those of other assignments are kept. With ``students``
(``--student``) only those students' entries are replaced, everyone else's kept.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

from llmcourse.grading import intake
from llmcourse.grading.cluster import cluster_session, run_jobs_on_cluster
from llmcourse.grading.collect import collect_result
from llmcourse.grading.course import Course, GradingError
from llmcourse.grading.execution import ensure_tool_path
from llmcourse.grading.intake import scan_submissions
from llmcourse.grading.late import check_late_settings
from llmcourse.grading.report import AutogradeReport, fmt_points
from llmcourse.grading.run import RunSettings, check_sandbox, progress_bar, run_jobs
from llmcourse.grading.sandbox import Limits
from llmcourse.grading.stage import compare_locked_cells, load_submitted_notebook, plan_jobs, prepare_template
from llmcourse.grading.supervisor import DEFAULT_MAX_OUTPUT_MB
from llmcourse.grading.write import (
    check_database,
    clear_outputs,
    format_summary,
    record_in_gradebook,
    write_csv,
    write_placeholder_feedback,
    write_results_json,
)

# Imported from here by other modules: ``format_summary`` (the command line) and
# ``compare_locked_cells``, ``load_submitted_notebook``, ``fmt_points`` (the tests).
__all__ = ["autograde", "compare_locked_cells", "fmt_points", "format_summary", "load_submitted_notebook"]

log = logging.getLogger("llmcourse.grading")


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
    cluster: str | None = None,
    db_url: str | None = None,
    students: Iterable[str] | None = None,
) -> AutogradeReport:
    """Grade every student in ``submissions`` into ``out``; see the module docstring.

    Feedback pages show the hidden tests' source only with ``feedback_shows_tests``;
    a notebook over ``max_notebook_mb`` megabytes is not read. Student kernels run in
    the bubblewrap sandbox with ``limits`` (``sandbox_kind="bwrap"``), or with your
    rights (``"none"``, with a warning); a notebook's outputs past ``max_output_mb``
    are not kept. With ``cluster`` (a Dask scheduler's address) the jobs run on its
    workers (:mod:`llmcourse.grading.cluster`) instead of ``jobs`` local processes.
    The gradebook is ``out/gradebook.db``, or the database at ``db_url`` (any
    SQLAlchemy URL nbgrader supports), which is connected to before anyone is graded.
    ``students`` (ids, each a folder in ``submissions``) regrades only them.
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
    if db_url is not None:
        report.gradebook = check_database(db_url)  # a URL that fails, fails before any grading
    check_sandbox(sandbox_kind, warn)
    due_dates = check_late_settings(course)
    only = {students} if isinstance(students, str) else set(students) if students else None
    students, names = scan_submissions(course, submissions, assignments, warn)
    students = intake.select_students(students, only, submissions)  # --student: the others are kept
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

    with cluster_session(cluster, sandbox_kind) as (client, threads), \
            tempfile.TemporaryDirectory(prefix="llmcourse-autograde-") as tmp:
        tmp = Path(tmp)
        template = tmp / "template"
        say(f"preparing {', '.join(names)} from {course.source_dir}")
        released = prepare_template(course, names, template, warn, due_dates)
        jobs_to_run = plan_jobs(report, students, names, submissions, released, template, tmp,
                                max_notebook_mb, warn, due_dates)
        where = f"on {cluster} ({threads} worker thread(s))" if client else f"with {jobs} parallel job(s)"
        say(f"grading {len(jobs_to_run)} submission(s) {where}, "
            f"{fmt_points(timeout)} s per cell, " + (f"sandboxed ({settings.limits.describe()})"
                                                    if sandbox_kind == "bwrap" else "NOT sandboxed"))
        with progress_bar(len(jobs_to_run), enabled=progress is not None) as done:
            results = (run_jobs_on_cluster(client, jobs_to_run, course, settings, done, warn) if client
                       else run_jobs(jobs_to_run, course, settings, jobs, tmp, done))
        clear_outputs(out, names, only)
        for job, result in results:
            collect_result(job, result, out, settings)
        write_placeholder_feedback(report)
        say("recording grades in the gradebook")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not in session.*")
            record_in_gradebook(course, out / "gradebook.db", template, template / "gradebook.db",
                                report.rows, names, db_url=db_url, students=only)

    write_csv(out / "grades.csv", report.rows, set(names), only)
    report.seconds = time.perf_counter() - start_all
    write_results_json(report, names, only)
    return report
