"""Two options of ``llmcourse autograde``: ``--student`` (regrade some students, keep
everyone else's results as they are) and late penalties (due dates in
``nbgrader_config.py``, nbgrader's ``AssignLatePenalties`` with the course's plugin).

The fast tests check names and settings without running a kernel: a mistyped or
invalid ``--student`` and every bad late-penalty setting stop the run before anyone
is graded. The slow ones grade the tiny fixture course, with a due date and 25 % off
per day late, into one folder twice: two students (one on time, one a day and a half
late), then one of them again with ``--student`` after both changed their notebooks.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import cli
from llmcourse.grading.course import Course, GradingError, sqlite_url
from llmcourse.grading.execution import nbgrader_meta
from llmcourse.grading.late import LatePenalty, check_late_settings, seconds_late
from llmcourse.grading.report import NotebookGrade, Row

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
ASSIGNMENT = "00_smoke"
DUE = "2027-01-15 23:59:59 UTC"
ON_TIME = "2027-01-15 23:00:00 UTC"
LATE = "2027-01-17 11:59:59 UTC"  # a day and a half late: two started days, 50 % off
LATE_SECONDS = 36 * 3600
LATE_SETTINGS = (f"c.LLMCourse.due_dates = {{{ASSIGNMENT!r}: {DUE!r}}}\n"
                 "c.LatePenalty.penalty_method = 'percent_per_day'\n"
                 "c.LatePenalty.percent_per_day = 25\n")


def make_course(dest: Path, settings: str = "") -> Path:
    """A copy of the fixture course whose ``nbgrader_config.py`` is the repository's plus ``settings``."""
    dest.mkdir(parents=True)
    shutil.copytree(FIXTURE / "solutions", dest / "solutions")
    shutil.copytree(FIXTURE / "exercises", dest / "exercises")
    (dest / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text() + "\n" + settings)
    return dest


def notebook(full_marks: bool = True):
    """The released notebook with the solution's answers (3 of 3 points), or with an ``add``
    that fails the hidden test (2 of 3)."""
    source = nbformat.read(str(FIXTURE / "solutions" / ASSIGNMENT / "arith.ipynb"), 4)
    nb = nbformat.read(str(FIXTURE / "exercises" / ASSIGNMENT / "arith.ipynb"), 4)
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
    if not full_marks:
        answers["add_answer"] = "def add(a, b):\n    return int(a) + int(b)"
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in answers:
            cell.source = answers[nbgrader_meta(cell)["grade_id"]]
    return nb


def submit(subs: Path, student: str, nb, timestamp: str | None = None) -> None:
    folder = subs / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / "arith.ipynb"))
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp)


def autograde(course: Path, subs: Path, out: Path, *flags: str) -> int:
    return cli.main(["autograde", str(subs), "--out", str(out), "--course", str(course), "--jobs", "2",
                     "--timeout", "20", "--student-timeout", "120", "-q", *flags])


def csv_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh)}


def files_of(out: Path, student: str) -> dict[str, tuple[bytes, int]]:
    """Every output file of one student: its bytes and modification time."""
    found = {}
    for kind in ("feedback", "autograded", "logs"):
        for path in sorted((out / kind).glob(f"{student}/**/*")):
            if path.is_file():
                found[str(path.relative_to(out))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def results_of(out: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in json.loads((out / "results.json").read_text())["rows"]}


def gradebook_of(out: Path, students: list[str]) -> dict[str, dict]:
    """What the gradebook holds for each student's submission, value for value."""
    from nbgrader.api import Gradebook

    with Gradebook(sqlite_url(out / "gradebook.db"), "llmcourse") as gb:
        values = {"duedate": gb.find_assignment(ASSIGNMENT).duedate}
        for student in students:
            sub = gb.find_submission(ASSIGNMENT, student)
            values[student] = {
                "id": sub.id, "timestamp": sub.timestamp, "score": sub.score,
                "penalty": sub.late_submission_penalty, "seconds_late": sub.total_seconds_late,
                "grades": {(nb.name, g.name): (g.id, g.auto_score) for nb in sub.notebooks for g in nb.grades},
                "comments": {(nb.name, c.name): c.auto_comment for nb in sub.notebooks for c in nb.comments},
            }
    return values


# ----------------------------------------------------------------------------
# settings and names (fast, no kernel)
# ----------------------------------------------------------------------------
def test_due_dates_are_read_in_utc(tmp_path):
    course = Course.load(make_course(tmp_path / "course", f"c.LLMCourse.due_dates = {{'00_smoke': "
                                                          "'2027-01-16T00:59:59+01:00'}\n"))
    assert course.due_dates() == {ASSIGNMENT: datetime(2027, 1, 15, 23, 59, 59)}
    assert Course.load(FIXTURE).due_dates() == {}, "the repository's settings set no due date"


def test_percent_per_day_counts_started_days():
    plugin = LatePenalty(penalty_method="percent_per_day", percent_per_day=25)
    assert plugin.late_submission_penalty("s", 3, 1) == 0.75  # a second late is a started day
    assert plugin.late_submission_penalty("s", 3, 24 * 3600) == 0.75
    assert plugin.late_submission_penalty("s", 3, LATE_SECONDS) == 1.5
    assert plugin.late_submission_penalty("s", 3, 30 * 24 * 3600) == 3  # never more than the score
    assert LatePenalty(penalty_method="zero").late_submission_penalty("s", 3, 1) == 3  # nbgrader's own
    assert LatePenalty(penalty_method="none").late_submission_penalty("s", 3, 1) is None


def test_late_seconds_and_columns_without_a_due_date():
    assert seconds_late(LATE, datetime(2027, 1, 15, 23, 59, 59)) == LATE_SECONDS
    assert seconds_late(ON_TIME, datetime(2027, 1, 15, 23, 59, 59)) == 0
    assert seconds_late(LATE, None) == 0 and seconds_late(None, datetime(2027, 1, 1)) == 0
    row = Row("alice", ASSIGNMENT, {"arith": NotebookGrade("arith")}, timestamp=LATE)
    assert (row.csv_row()["late_seconds"], row.csv_row()["penalty"]) == ("0", "0")
    assert list(row.csv_row())[:6] == ["student_id", "assignment", "score", "max_score", "status", "notebooks"]


@pytest.mark.parametrize("settings, message", [
    ("c.LLMCourse.due_dates = {'00_smoke': 'next friday'}",
     "LLMCourse.due_dates['00_smoke'] in"),
    ("c.LLMCourse.due_dates = {'00_smoke': '2027-02-30 12:00:00 UTC'}",
     "LLMCourse.due_dates['00_smoke'] in"),
    ("c.LLMCourse.due_dates = {'00_smoke': '2027-01-15 23:59:59 Mars/Olympus'}", "no known time zone"),
    ("c.LLMCourse.due_dates = {'99_nope': '2027-01-15 23:59:59 UTC'}",
     "LLMCourse.due_dates in"),
    ("c.LLMCourse.due_dates = ['2027-01-15']", "must be a dict"),
    ("c.LatePenalty.penalty_method = 'percent_per_day'\nc.LatePenalty.percent_per_day = -5",
     "LatePenalty.percent_per_day must be a number of percent, at least 0, got -5"),
    ("c.LatePenalty.penalty_method = 'half'", "'penalty_method' trait of a LatePenalty"),
    ("c.AssignLatePenalties.plugin_class = 'no.such.Plugin'", "AssignLatePenalties.plugin_class in"),
], ids=["not-a-date", "no-such-day", "unknown-zone", "unknown-assignment", "not-a-dict", "negative-percent",
        "unknown-method", "missing-plugin"])
def test_bad_late_settings_stop_before_anyone_is_graded(tmp_path, capsys, settings, message):
    course = make_course(tmp_path / "course", settings + "\n")
    submit(tmp_path / "subs", "alice", notebook(), LATE)
    assert autograde(course, tmp_path / "subs", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert message in err and str(course / "nbgrader_config.py") in err, err
    assert not (tmp_path / "out").exists(), "nothing graded, nothing written"
    with pytest.raises(GradingError, match="in " + str(course)):
        check_late_settings(Course.load(course))


@pytest.mark.parametrize("student, message", [
    ("bob", "--student bob: no such student folder in"),
    ("../alice", "invalid student id: --student '../alice' holds a path separator"),
    ("a..b", "invalid student id: --student 'a..b' holds '..'"),
    ("=cmd", "invalid student id: --student '=cmd' may hold only letters"),
], ids=["no-folder", "path", "dots", "formula"])
def test_unknown_or_invalid_student_stops_before_anyone_is_graded(tmp_path, capsys, student, message):
    submit(tmp_path / "subs", "alice", notebook())
    assert autograde(FIXTURE, tmp_path / "subs", tmp_path / "out", "--student", "alice",
                     "--student", student) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing graded, nothing written"


# ----------------------------------------------------------------------------
# one course with a due date, graded twice into one folder (slow)
# ----------------------------------------------------------------------------
KEPT = ["ontime"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("options")
    course = make_course(tmp / "course", LATE_SETTINGS)
    subs, out = tmp / "subs", tmp / "out"
    submit(subs, "ontime", notebook(full_marks=False), ON_TIME)
    submit(subs, "late", notebook(), LATE)
    first = {"code": autograde(course, subs, out), "rows": csv_rows(out), "results": results_of(out),
             "gradebook": gradebook_of(out, ["ontime", "late"]), "files": {s: files_of(out, s) for s in KEPT}}
    with open(out / "grades.csv", newline="") as fh:
        first["header"] = next(csv.reader(fh))
    submit(subs, "late", notebook(full_marks=False), LATE)  # regraded: 2 points, still 50 % off
    submit(subs, "ontime", notebook())  # full marks now, but not named, so not regraded
    second = {"code": autograde(course, subs, out, "--student", "late"), "rows": csv_rows(out),
              "results": results_of(out), "gradebook": gradebook_of(out, ["ontime", "late"]),
              "files": {s: files_of(out, s) for s in KEPT}}
    return {"first": first, "second": second, "out": out}


@pytest.mark.slow
def test_late_submission_loses_the_configured_penalty(graded):
    first = graded["first"]
    assert first["code"] == 0
    assert first["header"] == ["student_id", "assignment", "score", "max_score", "status", "notebooks",
                               "late_seconds", "penalty"]
    got = {s: (r["score"], r["max_score"], r["late_seconds"], r["penalty"], r["status"])
           for s, r in first["rows"].items()}
    assert got == {"ontime": ("2", "3", "0", "0", "ok"),
                   "late": ("1.5", "3", str(LATE_SECONDS), "1.5", "ok")}
    assert first["rows"]["late"]["notebooks"] == "arith.ipynb=3/3", "the notebook column shows points earned"


@pytest.mark.slow
def test_gradebook_holds_due_date_timestamp_and_penalty(graded):
    for run in ("first", "second"):
        book, rows = graded[run]["gradebook"], graded[run]["rows"]
        assert book["duedate"] == datetime(2027, 1, 15, 23, 59, 59)
        for student, row in rows.items():
            entry = book[student]
            assert entry["score"] - entry["penalty"] == pytest.approx(float(row["score"]))
            assert entry["penalty"] == pytest.approx(float(row["penalty"]))
            assert entry["seconds_late"] == float(row["late_seconds"])
    book = graded["first"]["gradebook"]
    assert book["late"]["timestamp"] == datetime(2027, 1, 17, 11, 59, 59)
    assert book["ontime"]["timestamp"] == datetime(2027, 1, 15, 23, 0, 0) and not book["ontime"]["penalty"]


@pytest.mark.slow
def test_student_option_regrades_only_that_student(graded):
    first, second = graded["first"], graded["second"]
    assert second["code"] == 0
    late = second["rows"]["late"]
    assert (late["score"], late["penalty"], late["notebooks"]) == ("1", "1", "arith.ipynb=2/3")
    assert second["results"]["late"]["score"] == "1"
    for student in KEPT:  # the notebook changed too, but the student was not named
        assert second["rows"][student] == first["rows"][student]
        assert second["results"][student] == first["results"][student]
        assert second["gradebook"][student] == first["gradebook"][student]
        assert second["files"][student] == first["files"][student], "bytes and modification times"
        assert any(name.startswith("feedback/") for name in second["files"][student])
