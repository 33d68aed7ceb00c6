"""Write the outputs of ``llmcourse autograde``: its last stage, in the parent process alone.

* :func:`clear_outputs`, before results are collected: removes earlier runs'
  feedback, notebooks and logs of the assignments graded now (those of other
  assignments are kept, and with ``--student`` those of other students);
* :func:`write_placeholder_feedback`: a short page saying why
  (:func:`placeholder_feedback`) for every notebook nbgrader made no feedback for;
* :func:`check_database`, before anyone is graded: connects once to the database
  named by ``--db`` (any SQLAlchemy URL nbgrader supports, PostgreSQL say), so a
  URL that is malformed or cannot be reached stops the run at once;
  :func:`masked_url` is such a URL as it may be printed, its password hidden;
* :func:`record_in_gradebook`: the combined nbgrader gradebook, ``gradebook.db``
  or the ``--db`` database, with this run's assignments replaced; only this
  process writes it, once every job is done, so it stays consistent without any
  locking;
* :func:`write_csv`: ``grades.csv``, keeping the rows of other assignments
  (and students), with each row's lateness and late penalty in its last columns;
* :func:`write_results_json`: ``results.json``, the rows plus issues, per-cell
  scores and timings, keeping the entries of other assignments (and students);

What a run replaces is every (student, assignment) pair for which
:func:`replaces` is true: the assignments graded, for every student, or with
``--student`` for those students only.
* :func:`format_summary`: the table ``llmcourse autograde`` prints.

A row whose folder name is no valid student id gets no gradebook entry and no
path named after it.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from llmcourse.grading import late
from llmcourse.grading.course import Course, GradingError, sqlite_url
from llmcourse.grading.report import AutogradeReport, Row, fmt_points

# New columns go last, so that readers of the first six keep working.
CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "notebooks", "late_seconds", "penalty"]


def replaces(student_id: str, assignment: str, names, students: set[str] | None) -> bool:
    """Whether a run that grades ``names`` (for ``students``, None: everyone) replaces this pair."""
    return assignment in names and (students is None or student_id in students)


def clear_outputs(out: Path, names: list[str], students: set[str] | None = None) -> None:
    """Remove earlier runs' feedback, notebooks and logs of the assignments graded now
    (of ``students`` only, when given)."""
    for kind in ("feedback", "autograded", "logs"):
        base = out / kind
        if not base.is_dir():
            continue
        for student_dir in base.iterdir():
            if students is not None and student_dir.name not in students:
                continue
            for assignment in names:
                for stale in (student_dir / assignment, student_dir / f"{assignment}.log"):
                    if stale.is_dir():
                        shutil.rmtree(stale)
                    elif stale.exists():
                        stale.unlink()


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


def masked_url(db_url: str) -> str:
    """``db_url`` as typed, but its password, in the URL or its query, shown as ``***``.

    The password is what SQLAlchemy's parser takes for one (``scheme://user:PASSWORD@``),
    or ``user:PASSWORD@`` in a string without a scheme, so nothing that could be a
    password is printed even when the URL is malformed.
    """
    shown = re.sub(r"^([\w+]+://[^:/]*:)[^@]*@", r"\1***@", db_url)
    if shown == db_url:
        shown = re.sub(r"^([^:/@]*:)[^@/]*@", r"\1***@", db_url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", shown, flags=re.IGNORECASE)


def check_database(db_url: str) -> str:
    """Connect to the gradebook database ``db_url`` once; return it as :func:`masked_url` shows it.

    Raises :class:`GradingError` naming the URL (password masked) and the reason when
    the URL is malformed, names a database or driver SQLAlchemy does not know, or
    cannot be reached.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    shown = masked_url(db_url)

    def reason(exc: Exception) -> str:
        message = " ".join(str(getattr(exc, "orig", None) or exc).split())
        message = message.replace(db_url, shown)
        password = getattr(url, "password", None)
        return message.replace(password, "***") if password else message

    url = None
    try:
        url = make_url(db_url)
        # a host that never answers fails in seconds, not after the system's TCP timeout
        timeout = {"connect_timeout": 10} if url.get_driver_name() in ("psycopg2", "psycopg", "pymysql") else {}
        engine = create_engine(url, connect_args=timeout)
    except Exception as exc:  # malformed, unknown database, driver not installed
        raise GradingError(f"--db {shown} is not a database URL SQLAlchemy can use: {reason(exc)}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise GradingError(f"cannot reach the gradebook database --db {shown}: {reason(exc)}") from None
    finally:
        engine.dispose()
    return shown


def forget_submissions(db_url: str, course_id: str, assignments: list[str],
                       students: set[str] | None = None) -> None:
    """Remove every submission of ``assignments`` (by ``students``, when given) from the gradebook
    at ``db_url``, if it has them."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id) as gb:
        for assignment in assignments:
            try:
                existing = gb.find_assignment(assignment)
            except MissingEntry:
                continue
            for submission in list(existing.submissions):
                if replaces(submission.student.id, assignment, assignments, students):
                    gb.remove_submission(assignment, submission.student.id)


def stamp_new_database(db_url: str, template_db: Path) -> None:
    """Give a database without tables the template gradebook's schema version.

    nbgrader makes the tables of a new gradebook itself, but first runs ``alembic``
    in a subprocess to learn the version to record, which takes seconds; the
    template gradebook, made by the same nbgrader, has it already. This writes
    just what nbgrader would (its ``alembic_version`` table), so it skips that step.
    """
    import sqlite3
    from contextlib import closing

    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(db_url)
    try:
        if inspect(engine).get_table_names():
            return
        with closing(sqlite3.connect(template_db)) as template:
            (version,) = template.execute("SELECT version_num FROM alembic_version").fetchone()
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
    finally:
        engine.dispose()


def record_in_gradebook(course: Course, db_path: Path, template_root: Path, template_db: Path,
                        rows: list[Row], assignments: list[str], db_url: str | None = None,
                        students: set[str] | None = None) -> None:
    """Replace this run's assignments (of ``students`` only, when given) in the combined
    nbgrader gradebook with the new grades, due dates and late penalties.

    The gradebook is the SQLite file ``db_path``, or the database at ``db_url``
    (any SQLAlchemy URL nbgrader supports) when one is given.
    """
    from nbgrader.api import Gradebook, MissingEntry

    from llmcourse.grading.release import generate

    course_id = course.base_config.CourseDirectory.get("course_id", "")
    if db_url is None and not db_path.exists():
        shutil.copy(template_db, db_path)  # knows the assignments, holds no submissions
        os.chmod(db_path, 0o644)
        db_url = sqlite_url(db_path)
    else:
        db_url = db_url or sqlite_url(db_path)
        stamp_new_database(db_url, template_db)
        forget_submissions(db_url, course_id, assignments, students)  # nbgrader makes the tables if none
        # nbgrader itself records (or updates) the assignments' notebooks and cells.
        generate(course, assignments, root=template_root, db_url=db_url)
    with Gradebook(db_url, course_id) as gb:
        late.record_due_dates(gb, assignments, course.due_dates())
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
                if nb.late_penalty:
                    gb.find_submission_notebook(nb.name, row.assignment, row.student_id
                                                ).late_submission_penalty = nb.late_penalty
                for cell_id, text in nb.comments.items():
                    try:
                        comment = gb.find_comment(cell_id, nb.name, row.assignment, row.student_id)
                    except MissingEntry:
                        continue
                    comment.auto_comment = text
            gb.db.commit()


def write_csv(path: Path, rows: list[Row], replaced_assignments: set[str],
              students: set[str] | None = None) -> None:
    """Write ``grades.csv``, keeping earlier rows of assignments (or students) not graded this time."""
    kept: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            for old in csv.DictReader(fh):
                if not replaces(old.get("student_id"), old.get("assignment"), replaced_assignments, students):
                    kept.append({k: old.get(k, "") for k in CSV_COLUMNS})
    all_rows = kept + [r.csv_row() for r in rows]
    all_rows.sort(key=lambda r: (r["assignment"], r["student_id"]))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(all_rows)
    tmp.replace(path)


def write_results_json(report: AutogradeReport, names: list[str] | None = None,
                       students: set[str] | None = None) -> None:
    """``results.json``: the CSV rows plus issues, per-cell scores and timings; with ``names``,
    the earlier entries this run does not replace (:func:`replaces`) are kept, first."""
    path = report.out / "results.json"
    kept = []
    if names is not None and path.is_file():
        try:
            kept = [old for old in json.loads(path.read_text()).get("rows", [])
                    if not replaces(old.get("student_id"), old.get("assignment"), names, students)]
        except (ValueError, AttributeError):  # not ours, or cut short: start afresh
            kept = []
    data = {
        "seconds": report.seconds,
        "warnings": report.warnings,
        "rows": kept + [
            {**row.csv_row(), "timestamp": row.timestamp, "issues": row.issues, "seconds": row.seconds,
             "notebooks": {k: asdict(v) for k, v in row.notebooks.items()}}
            for row in report.rows
        ],
    }
    path.write_text(json.dumps(data, indent=1))


def format_summary(report: AutogradeReport) -> str:
    lines = [f"{'student_id':<20}{'assignment':<22}{'score':>8}  {'time':>7}  status"]
    for row in sorted(report.rows, key=lambda r: (r.assignment, r.student_id)):
        lines.append(
            f"{row.student_id:<20}{row.assignment:<22}"
            f"{fmt_points(row.score) + '/' + fmt_points(row.max_score):>8}  {row.seconds:6.1f}s  {row.status}"
        )
    lines.append(f"{len(report.rows)} row(s) in {report.seconds:.1f} s; grades in {report.out / 'grades.csv'}, "
                 f"feedback in {report.out / 'feedback'}, "
                 f"gradebook {report.gradebook or report.out / 'gradebook.db'}")
    return "\n".join(lines)
