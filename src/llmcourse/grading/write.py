"""Write the outputs of ``llmcourse autograde``: its last stage, in the parent process alone.

* :func:`clear_outputs`, before results are collected: removes earlier runs'
  feedback, notebooks and logs of the assignments graded now (those of other
  assignments are kept);
* :func:`write_placeholder_feedback`: a short page saying why
  (:func:`placeholder_feedback`) for every notebook nbgrader made no feedback for;
* :func:`record_in_gradebook`: the combined nbgrader gradebook, ``gradebook.db``,
  with this run's assignments replaced; only this process writes it, once every
  job is done, so it stays consistent without any locking;
* :func:`write_csv`: ``grades.csv``, keeping the rows of other assignments;
* :func:`write_results_json`: ``results.json``, the rows plus issues, per-cell
  scores and timings;
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
import shutil
from dataclasses import asdict
from pathlib import Path

from llmcourse.grading.course import Course, sqlite_url
from llmcourse.grading.report import AutogradeReport, Row, fmt_points

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "notebooks"]


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
