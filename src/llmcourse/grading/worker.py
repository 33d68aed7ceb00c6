"""Grade one student's submission of one assignment in an isolated course root.

Run by :mod:`llmcourse.grading.run` as ``python -m llmcourse.grading.worker
JOB.json`` (or ``--serve``), one job per (student, assignment). The job folder already holds

* ``solutions/<assignment>/``                      the instructor source,
* ``gradebook.db``                                 a gradebook that knows the assignment,
* ``submitted/<student>/<assignment>/*.ipynb``     the notebooks that passed the parent's checks.

The job says how to run student code (``sandbox``: ``bwrap`` or ``none``, the
sandbox's user id and limits, the output limit, and per notebook what the
grading guard watches); :mod:`llmcourse.grading.supervisor` runs each kernel
accordingly. Student code never sees the job folder: its kernel gets a copy of
the student's own notebook in a private working folder, while the gradebook, the
hidden tests and ``result.json`` stay here.

With ``--serve`` it grades one job after another, reading job files from
stdin, so a batch pays nbgrader's import time once per worker process. The
worker runs nbgrader's ``Autograde`` and ``GenerateFeedback`` converters,
one notebook at a time (a notebook that breaks nbgrader costs only its own
points), then writes ``result.json`` next to the job file: per notebook, per
graded cell, the score nbgrader recorded, and nbgrader's late penalty (from the
job's ``timestamp.txt`` and the due date in its gradebook), plus what went wrong
(the supervisor's report: tampering, limits hit, outputs cut). Feedback pages
are made safe to open and to send by :mod:`llmcourse.grading.feedback` (the
hidden tests are shown only when the job says ``feedback_shows_tests``).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sys
import time
import traceback
import warnings
from html import escape
from pathlib import Path

import nbformat

from llmcourse.grading import feedback, supervisor
from llmcourse.grading.course import Course, sqlite_url
from llmcourse.grading.execution import (
    ensure_tool_path,
    nbgrader_meta,
    test_outcomes,
    timed_out,
)
from llmcourse.grading.release import nbgrader_logger, run_converter
from llmcourse.grading.sandbox import Limits


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return (lines[-1] if lines else "unknown failure")[:300]


# The page's contents list every test cell as "Test cell" (nbgrader's template). A
# test cell whose first line is a comment ("# Tests of `merge`") is listed by that line.
TOC_TEST_CELL = re.compile(r'<a href="#([^"]+)">Test cell</a>')


def test_cell_titles(nb) -> dict[str, str]:
    """grade id -> the first line of each graded test cell that starts with a comment, without the ``#``."""
    titles = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        lines = cell.source.strip().splitlines()
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution") and lines:
            if lines[0].startswith("#") and not lines[0].startswith("###"):
                titles[meta["grade_id"]] = lines[0].lstrip("#").strip()
    return titles


def name_test_cells(html_path: Path, titles: dict[str, str]) -> None:
    """List each test cell in a feedback page's contents by its title, or else by its grade id, in place."""
    def label(match: re.Match) -> str:
        gid = match.group(1)
        title = titles.get(gid)
        text = (re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(title)) if title
                else f"Test cell <code>{escape(gid)}</code>")
        return f'<a href="#{gid}">{text}</a>'

    text = html_path.read_text(encoding="utf-8")
    html_path.write_text(TOC_TEST_CELL.sub(label, text), encoding="utf-8")


def _coursedir(cfg, student: str, assignment: str, notebook: str):
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=cfg, log=nbgrader_logger())
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    coursedir.notebook_id = notebook
    return coursedir


def grade_notebook(cfg, root: Path, student: str, assignment: str, notebook: str) -> dict:
    """Autograde one submitted notebook, then write its feedback page; say what went wrong."""
    from nbgrader.converters import Autograde, GenerateFeedback

    entry: dict = {"graded": False, "cells": {}, "comments": {}, "timeouts": [], "errors": []}
    converter = Autograde(coursedir=_coursedir(cfg, student, assignment, notebook), config=cfg,
                          log=nbgrader_logger())
    converter.force = True
    converter.create_student = True
    supervisor.REPORTS.pop(notebook, None)
    ok, log = run_converter(converter)
    print(f"== nbgrader autograde {student}/{assignment}/{notebook}.ipynb", flush=True)
    print(log, flush=True)
    report = supervisor.REPORTS.pop(notebook, None)
    entry["supervisor"] = report.as_dict() if report is not None else {}
    autograded = root / "autograded" / student / assignment / f"{notebook}.ipynb"
    if not ok or not autograded.is_file():
        reason = _last_line(log)
        if "DeadKernelError" in log or "Kernel died" in log:
            reason = "the kernel died while running the notebook"
        if report is None or not report.memory_killed_mb:  # a memory kill is reported as such
            entry["errors"].append(f"{notebook}.ipynb could not be autograded: {reason}")
        return entry
    entry["graded"] = True
    nb = nbformat.read(str(autograded), as_version=4)
    for index, cell in enumerate(nb.cells):
        if timed_out(cell):
            entry["timeouts"].append(nbgrader_meta(cell).get("grade_id") or f"cell {index + 1}")
    entry["cell_errors"] = {c.grade_id: c.error for c in test_outcomes(nb) if c.error}

    generator = GenerateFeedback(coursedir=_coursedir(cfg, student, assignment, notebook), config=cfg,
                                 log=nbgrader_logger())
    generator.force = True
    fb_ok, fb_log = run_converter(generator)
    print(f"== nbgrader generate_feedback {student}/{assignment}/{notebook}.ipynb", flush=True)
    print(fb_log, flush=True)
    html = root / "feedback" / student / assignment / f"{notebook}.html"
    if fb_ok and html.is_file():
        name_test_cells(html, test_cell_titles(nb))
        feedback.make_safe(html)  # no script, no remote load (MathJax's CDN included): TeX shows as source
        entry["feedback"] = str(html)
    else:
        entry["errors"].append(f"feedback for {notebook}.ipynb failed: {_last_line(fb_log)}")
    return entry


def grade(job: dict) -> dict:
    """Grade every notebook of one job and read back the scores nbgrader recorded."""
    from nbgrader.api import Gradebook, MissingEntry

    root = Path(job["root"])
    student, assignment = job["student"], job["assignment"]
    course = Course.load(job["course_root"])
    db_url = sqlite_url(root / "gradebook.db")
    cfg = course.config(root=root, db_url=db_url, timeout=job.get("timeout"))
    feedback.configure(cfg, show_tests=bool(job.get("feedback_shows_tests")))
    run = job.get("run", {})
    supervisor.configure(cfg, run.get("sandbox", "bwrap"), int(run.get("uid", 0) or 65534),
                         Limits(**run.get("limits", {})), float(run.get("max_output_mb", 20)))
    result: dict = {"student": student, "assignment": assignment, "notebooks": {}}

    for notebook in job["notebooks"]:
        submitted = root / "submitted" / student / assignment / f"{notebook}.ipynb"
        supervisor.configure_notebook(cfg, job.get("guard", {}).get(notebook, {}), submitted)
        start = time.perf_counter()
        entry = grade_notebook(cfg, root, student, assignment, notebook)
        entry["seconds"] = time.perf_counter() - start
        result["notebooks"][notebook] = entry

    with Gradebook(db_url, cfg.CourseDirectory.get("course_id", "")) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            submission = None
        if submission is not None:
            for nb in submission.notebooks:
                entry = result["notebooks"].get(nb.name)
                if entry is None or not entry["graded"]:
                    continue
                entry["late_penalty"] = float(nb.late_submission_penalty or 0.0)
                for g in nb.grades:
                    entry["cells"][g.name] = {
                        "score": None if g.auto_score is None else float(g.auto_score),
                        "max_score": float(g.max_score),
                        "needs_manual_grade": bool(g.needs_manual_grade),
                    }
                for c in nb.comments:
                    entry["comments"][c.name] = c.auto_comment
    return result


def run_job_file(job_file: Path) -> bool:
    """Grade the job described in ``job_file``; write ``result.json`` beside it."""
    try:
        job = json.loads(job_file.read_text())
        result = grade(job)
        result["ok"] = True
    except Exception:
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        result = {"ok": False, "error": _last_line(text), "traceback": text}
    out = job_file.with_name("result.json")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    return bool(result["ok"])


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when the one that started it dies, so a
    lost cluster worker (or a killed parent) leaves no grading running behind it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own clean-up has to do
        return
    if os.getppid() == 1:  # the parent was already gone before the call
        os._exit(1)


def serve() -> int:
    """Grade job after job: read a job file path per line on stdin, answer ``done`` on stdout.

    Keeping one process for many jobs saves nbgrader's import time for every
    submission after the first. While a job runs, this process's stdout and
    stderr (and so the kernel's) go to ``worker.log`` in that job's folder; the
    answers go through a private copy of the original stdout.
    """
    _die_with_parent()
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    import nbgrader.converters  # noqa: F401  (pay the import cost before the first job's clock starts)

    answer.write("ready\n")
    answer.flush()
    for line in sys.stdin:
        job_file = Path(line.strip())
        if not line.strip():
            continue
        with open(job_file.with_name("worker.log"), "ab") as logfile:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(logfile.fileno(), 1)
            os.dup2(logfile.fileno(), 2)
            ok = run_job_file(job_file)
            sys.stdout.flush()
            sys.stderr.flush()
        answer.write(f"done {'ok' if ok else 'failed'} {job_file}\n")
        answer.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ensure_tool_path()
    warnings.filterwarnings("ignore", message=".*not in session.*")
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 1:
        print("usage: python -m llmcourse.grading.worker (JOB.json | --serve)", file=sys.stderr)
        return 2
    return 0 if run_job_file(Path(argv[0])) else 1


if __name__ == "__main__":
    sys.exit(main())
