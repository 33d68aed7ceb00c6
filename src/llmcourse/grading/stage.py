"""Stage one scratch job per gradable submission: the second stage of ``llmcourse autograde``.

Once the submissions folder has been scanned
(:func:`llmcourse.grading.intake.scan_submissions`), :func:`prepare_template`
generates the assignments once from ``solutions/`` into a template course root
with its own gradebook (holding each assignment's due date, so that nbgrader's
late penalty applies in every job), and :func:`plan_jobs` makes one
:class:`~llmcourse.grading.report.Row` per (student, assignment), every graded
cell at 0 points, and for each submission that can be graded a :class:`Job`: a
scratch course root of its own, holding

* ``submitted/<student>/<assignment>/``: the notebooks that pass every check
  (:func:`prepare_job`), written as the very bytes that were checked, and a
  valid ``timestamp.txt``;
* ``solutions/<assignment>/`` without its notebooks (nbgrader grades from the
  cells stored in the gradebook, so the hidden tests are not copied next to
  student code);
* ``gradebook.db``: a private copy of the template's gradebook;

and, per notebook, what the grading guard watches (:func:`guard_plans`, from
:func:`llmcourse.grading.supervisor.guard_plan`). Whatever is wrong with a
submission goes into its row's ``issues``: no folder for the assignment, a
missing or misnamed notebook (:func:`name_issues`), one that is unsafe, too
large or malformed (read through :mod:`llmcourse.grading.intake`), test cells
edited or deleted (:func:`compare_locked_cells`; nbgrader restores them). Nothing
here runs student code, and jobs share nothing, so the run stage
(:mod:`llmcourse.grading.run`) can grade them side by side.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import nbformat

from llmcourse.grading import intake, late
from llmcourse.grading.course import RELEASE_DIR, SOURCE_DIR, Course, is_ignored_name, sqlite_url
from llmcourse.grading.execution import nbgrader_meta
from llmcourse.grading.report import AutogradeReport, CellGrade, NotebookGrade, Row
from llmcourse.grading.supervisor import guard_plan


@dataclass
class Job:
    row: Row
    root: Path
    notebooks: list[str]
    guard: dict = field(default_factory=dict)  # notebook -> what its grading guard watches (guard_plan)


def plan_jobs(report: AutogradeReport, students: list[intake.StudentFolder], names: list[str],
              submissions: Path, released: dict, template: Path, tmp: Path, max_mb: float,
              warn: Callable[[str], None], due_dates: dict[str, datetime] | None = None) -> list[Job]:
    """One row per (student, assignment) in ``report``; one scratch job per gradable submission.

    A row's ``late_seconds`` counts from its assignment's entry in ``due_dates``.
    """
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
            row.late_seconds = late.seconds_late(row.timestamp, (due_dates or {}).get(assignment))
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


def prepare_template(course: Course, names: list[str], template: Path, warn: Callable[[str], None],
                     due_dates: dict[str, datetime] | None = None) -> dict:
    """Generate the assignments once into ``template`` (with its gradebook, and ``due_dates``
    in it); return the released notebooks as ``{assignment: {notebook: nb}}``."""
    from nbgrader.api import Gradebook

    from llmcourse.grading.release import compare_trees, generate

    db_url = sqlite_url(template / "gradebook.db")
    generate(course, names, root=template, db_url=db_url)
    with Gradebook(db_url, course.base_config.CourseDirectory.get("course_id", "")) as gb:
        late.record_due_dates(gb, names, due_dates or {})
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


def guard_plans(template: Path, names: list[str], released: dict) -> dict:
    """``{assignment: {notebook: guard_plan}}`` from the instructor's source notebooks."""
    return {assignment: {nb: guard_plan(nbformat.read(str(template / SOURCE_DIR / assignment / f"{nb}.ipynb"),
                                                      as_version=4))
                         for nb in released[assignment]}
            for assignment in names}


def empty_grade(name: str, released_nb) -> NotebookGrade:
    """Every graded cell of a notebook at 0 points: what a notebook that is not run earns."""
    grade = NotebookGrade(name)
    for cell in released_nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            grade.cells[meta["grade_id"]] = CellGrade(0.0, float(meta.get("points", 0)))
    return grade


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


def load_submitted_notebook(path: Path, max_mb: float = intake.DEFAULT_MAX_NOTEBOOK_MB
                            ) -> tuple[object | None, str | None]:
    """Read a submitted notebook; return (notebook, None) or (None, why it is not graded)."""
    nb, _, problem = intake.read_notebook(path.parent, [path.name], max_mb)
    return nb, problem.removeprefix("malformed notebook: ") if problem else None
