"""Tests of the instructor pipeline: release, validate, autograde (``llmcourse ...``).

Everything runs twice over: on every assignment found in ``solutions/`` (so a
new exercise is checked as soon as it lands) and on a tiny two-question course
in ``tests/grading_fixtures/`` (so the pipeline is exercised even when the
course has no exercise yet).
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import cli
from llmcourse.grading.autograde import compare_locked_cells, fmt_points, load_submitted_notebook
from llmcourse.grading.course import Course, normalized_notebook_json, sqlite_url
from llmcourse.grading.execution import nbgrader_meta

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
COURSE_ROOTS = {"fixture": FIXTURE, "course": REPO}


def _assignments() -> list:
    params = []
    for key, root in COURSE_ROOTS.items():
        for assignment in Course.load(root).assignments():
            params.append(pytest.param(key, assignment, id=f"{key}-{assignment}"))
    return params


def _notebooks() -> list:
    params = []
    for key, root in COURSE_ROOTS.items():
        course = Course.load(root)
        for assignment in course.assignments():
            for notebook in course.notebooks(assignment):
                params.append(pytest.param(key, assignment, notebook, id=f"{key}-{assignment}-{notebook}"))
    return params


ASSIGNMENTS = _assignments()
NOTEBOOKS = _notebooks()
COURSES = [pytest.param(key, id=key) for key, root in COURSE_ROOTS.items() if Course.load(root).assignments()]


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


# ----------------------------------------------------------------------------
# configuration and static checks (fast)
# ----------------------------------------------------------------------------
def test_config_maps_course_layout_and_limits():
    course = Course.load(REPO)
    cfg = course.config()
    assert cfg.CourseDirectory.source_directory == "solutions"
    assert cfg.CourseDirectory.release_directory == "exercises"
    assert cfg.CourseDirectory.root == str(REPO)
    assert cfg.CourseDirectory.db_url == sqlite_url(REPO / ".nbgrader" / "gradebook.db")
    assert cfg.Execute.timeout > 0 and cfg.Execute.interrupt_on_timeout is True
    assert cfg.Execute.raise_on_iopub_timeout is False
    assert "NotImplementedError" in cfg.ClearSolutions.code_stub["python"]
    assert cfg.OverwriteCells.add_missing_cells is True
    moved = course.config(root="/tmp/elsewhere", timeout=7)
    assert moved.CourseDirectory.root == "/tmp/elsewhere"
    assert moved.CourseDirectory.db_url == sqlite_url("/tmp/elsewhere/.nbgrader/gradebook.db")
    assert moved.Execute.timeout == 7
    assert course.config().Execute.timeout == cfg.Execute.timeout == course.cell_timeout()  # not mutated


def test_gitignore_keeps_gradebook_out_of_git():
    assert ".nbgrader/" in (REPO / ".gitignore").read_text().split()


@pytest.mark.parametrize("key,assignment,notebook", NOTEBOOKS)
def test_released_notebook_is_clean(key, assignment, notebook):
    """No outputs, the python3 kernel, and no solution or hidden-test text in exercises/."""
    from llmcourse.grading.validate import static_release_checks

    course = Course.load(COURSE_ROOTS[key])
    assert static_release_checks(course, assignment, notebook) == []


@pytest.mark.parametrize("key,assignment,notebook", NOTEBOOKS)
def test_solution_notebook_has_graded_tests_with_ids(key, assignment, notebook):
    nb = _read(COURSE_ROOTS[key] / "solutions" / assignment / f"{notebook}.ipynb")
    tests = [c for c in nb.cells if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")]
    assert tests, "an exercise needs at least one autograded test cell"
    assert all(float(nbgrader_meta(c)["points"]) > 0 for c in tests)
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c).get("grade_id")]
    assert len(ids) == len(set(ids)), "nbgrader grade_ids must be unique"
    assert any(nbgrader_meta(c).get("solution") for c in nb.cells)


# ----------------------------------------------------------------------------
# submission checks (fast, no kernels)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "not valid JSON"),
        (b'{"cells": [', "not valid JSON"),
        (b"[1, 2, 3]", "not a Jupyter notebook"),
        (b'{"hello": "world"}', "not a Jupyter notebook"),
        (b'{"cells": "nope", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "not a valid Jupyter notebook"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
    ],
)
def test_malformed_notebooks_are_named(tmp_path, content, expected):
    path = tmp_path / "bpe.ipynb"
    path.write_bytes(content)
    nb, problem = load_submitted_notebook(path)
    assert nb is None and expected in problem and "bpe.ipynb" in problem


def test_locked_cell_comparison_finds_edits_and_deletions():
    released = _read(FIXTURE / "exercises" / "00_smoke" / "arith.ipynb")
    assert compare_locked_cells(released, released) == ([], [])
    edited = copy.deepcopy(released)
    for cell in edited.cells:
        if nbgrader_meta(cell).get("grade_id") == "add_test":
            cell.source = "pass"
    edited.cells = [c for c in edited.cells if nbgrader_meta(c).get("grade_id") != "mean_test"]
    assert compare_locked_cells(edited, released) == (["add_test"], ["mean_test"])


# ----------------------------------------------------------------------------
# the command line (fast)
# ----------------------------------------------------------------------------
def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("release", "validate", "autograde", "list"):
        assert command in text
    for command in ("release", "validate", "autograde"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
    assert "--timeout" in capsys.readouterr().out


def test_cli_without_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage: llmcourse" in capsys.readouterr().out


def test_cli_list(capsys):
    assert cli.main(["list", "--course", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "00_smoke" in out and "arith.ipynb" in out and "mean_test" in out and "3 point(s)" in out


@pytest.mark.parametrize("command", [["release"], ["validate"]])
def test_cli_unknown_assignment(capsys, command):
    assert cli.main([*command, "no_such_assignment", "--course", str(FIXTURE)]) == 1
    err = capsys.readouterr().err
    assert "unknown assignment 'no_such_assignment'" in err and "00_smoke" in err


def test_cli_autograde_missing_submissions_folder(tmp_path, capsys):
    code = cli.main(["autograde", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
                     "--course", str(FIXTURE)])
    assert code == 1
    err = capsys.readouterr().err
    assert "submissions folder" in err and "nowhere does not exist" in err
    assert not (tmp_path / "out").exists()


def test_cli_autograde_empty_or_unrelated_submissions(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    assert cli.main(["autograde", str(subs), "--out", str(tmp_path / "out"), "--course", str(FIXTURE)]) == 1
    assert "no student folders" in capsys.readouterr().err
    (subs / "alice" / "99_unknown").mkdir(parents=True)
    assert cli.main(["autograde", str(subs), "--out", str(tmp_path / "out"), "--course", str(FIXTURE)]) == 1
    err = capsys.readouterr().err
    assert "no submissions for any assignment" in err and "99_unknown" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["autograde", "subs"], "--out"),
        (["autograde", "subs", "--out", "o", "--jobs", "0"], "at least 1"),
        (["autograde", "subs", "--out", "o", "--timeout", "-3"], "more than 0"),
        (["autograde", "subs", "--out", "o", "--timeout", "soon"], "number of seconds"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_course_folder(tmp_path, capsys):
    assert cli.main(["list", "--course", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["list", "--course", str(tmp_path)]) == 1
    assert "no solutions/" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("llmcourse")
    assert exe.exists(), "pip install -e . should create the llmcourse console script"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "autograde" in done.stdout


# ----------------------------------------------------------------------------
# release: committed exercises/ == a fresh, deterministic generation
# ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("key", COURSES)
def test_committed_exercises_equal_fresh_generation(key):
    from llmcourse.grading.release import release_differences

    course = Course.load(COURSE_ROOTS[key])
    differences = release_differences(course)
    assert differences == {a: [] for a in course.assignments()}, (
        f"exercises/ is out of date in {course.root}: run `llmcourse release` there and commit"
    )


def _copy_course(src: Path, dest: Path) -> Path:
    """A scratch copy of a course, with the repository's nbgrader settings."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copytree(src / "solutions", dest / "solutions")
    if (src / "exercises").exists():
        shutil.copytree(src / "exercises", dest / "exercises")
    return dest


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")
def test_release_is_deterministic_and_normalises_metadata(tmp_path):
    """Volatile metadata, odd kernels and missing cell ids never reach exercises/."""
    from llmcourse.grading.release import generate

    course_dir = _copy_course(FIXTURE, tmp_path / "course")
    path = course_dir / "solutions" / "00_smoke" / "arith.ipynb"
    raw = json.loads(path.read_text())
    raw["metadata"]["kernelspec"] = {"name": "my-laptop-env", "display_name": "Mine", "language": "python"}
    raw["metadata"]["language_info"] = {"name": "python", "version": "3.99.1"}
    raw["metadata"]["widgets"] = {"state": {"x": 1}}
    for cell in raw["cells"]:
        cell.pop("id", None)
        cell["metadata"]["ExecuteTime"] = {"end_time": "2024-01-01T00:00:00"}
        cell["metadata"]["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00Z"}
        cell["metadata"]["scrolled"] = True
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "left over\n"}]
            cell["execution_count"] = 7
    path.write_text(json.dumps(raw))
    course = Course.load(course_dir)
    generate(course, ["00_smoke"], root=tmp_path / "a", db_url=sqlite_url(tmp_path / "a.db"))
    generate(course, ["00_smoke"], root=tmp_path / "b", db_url=sqlite_url(tmp_path / "b.db"))
    first = (tmp_path / "a" / "exercises" / "00_smoke" / "arith.ipynb").read_bytes()
    second = (tmp_path / "b" / "exercises" / "00_smoke" / "arith.ipynb").read_bytes()
    assert first == second
    nb = json.loads(first)
    assert nb["metadata"] == {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for cell in nb["cells"]:
        assert set(cell["metadata"]) <= {"nbgrader", "deletable", "editable", "tags"}
        assert cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
def test_cli_release_writes_what_is_committed(tmp_path, capsys):
    course_dir = _copy_course(FIXTURE, tmp_path / "course")
    committed = course_dir / "exercises" / "00_smoke" / "arith.ipynb"
    expected = committed.read_bytes()
    committed.write_text("{}")
    stale = course_dir / "exercises" / "99_gone"
    stale.mkdir()
    (stale / "old.ipynb").write_text("{}")
    assert cli.main(["release", "--course", str(course_dir)]) == 0
    assert "released exercises/00_smoke/" in capsys.readouterr().out
    assert committed.read_bytes() == expected
    assert not stale.exists(), "releasing everything removes exercises without a source"
    assert normalized_notebook_json(committed) == normalized_notebook_json(
        FIXTURE / "exercises" / "00_smoke" / "arith.ipynb"
    )


# ----------------------------------------------------------------------------
# validate: every solution passes all its tests, every stub passes none
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _validation(key: str):
    from llmcourse.grading.validate import validate

    course = Course.load(COURSE_ROOTS[key])
    return validate(course, jobs=2, check_release=False)


def _notebook_report(key: str, assignment: str, notebook: str):
    report = _validation(key)
    return next(n for n in report.notebooks if (n.assignment, n.notebook) == (assignment, notebook))


@pytest.mark.slow
@pytest.mark.parametrize("key,assignment,notebook", NOTEBOOKS)
def test_solution_passes_every_test(key, assignment, notebook):
    run = _notebook_report(key, assignment, notebook).solution
    assert run.problems == []
    assert run.cells, "no autograded test cells ran"
    assert all(c.passed for c in run.cells)
    assert run.score == run.max_score > 0
    print(f"{assignment}/{notebook}: solution ran in {run.seconds:.1f} s (slowest cell {run.max_cell_seconds:.2f} s)")


@pytest.mark.slow
@pytest.mark.parametrize("key,assignment,notebook", NOTEBOOKS)
def test_released_stub_passes_no_test(key, assignment, notebook):
    run = _notebook_report(key, assignment, notebook).stub
    assert run.problems == []
    assert run.cells, "no autograded test cells ran"
    assert all(c.score == 0 for c in run.cells)


@pytest.mark.slow
def test_validate_reports_weak_tests_and_broken_solutions(tmp_path, capsys):
    """A test the stub passes and a solution that fails a test are both caught, exit 1."""
    course_dir = _copy_course(FIXTURE, tmp_path / "course")
    path = course_dir / "solutions" / "00_smoke" / "arith.ipynb"
    nb = _read(path)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id == "add_test":
            cell.source = "assert callable(add)"  # the stub passes this: a useless test
        if grade_id == "mean_answer":
            cell.source = cell.source.replace("sum(xs) / len(xs)", "sum(xs) // len(xs)")
    nbformat.write(nb, str(path))
    assert cli.main(["release", "--course", str(course_dir)]) == 0
    capsys.readouterr()
    code = cli.main(["validate", "--course", str(course_dir), "--jobs", "2", "--skip-release-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "stub passes test add_test" in out
    assert "solution fails test mean_test" in out
    assert "FAILED" in out


@pytest.mark.slow
def test_validate_cli_succeeds_on_fixture(capsys):
    assert cli.main(["validate", "--course", str(FIXTURE), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "add_test" in out and "mean_test" in out and "all OK" in out
    assert "exercises/00_smoke/ equals a fresh generation" in out


# ----------------------------------------------------------------------------
# autograde: one batch with every kind of submission (the fixture's graded twice)
# ----------------------------------------------------------------------------
STUDENTS = [
    "solution", "stub", "half", "edited_tests", "unmarked_tests", "deleted_test", "endless_loop",
    "bad_json", "not_a_notebook", "missing_notebook", "wrong_name", "no_folder",
]
# A loop that swallows the interrupt: only the per-student hard limit stops it.
# It is course-independent, so only the fixture batch pays for it.
HARD_STUDENT = "hangs_hard"
# Tampering and endless loops are handled the same way whatever the assignment, and each costs
# a kernel run (the loop a whole cell timeout): the course batch gives them one assignment, its
# first, while every assignment gets a solution, a stub and a half-done notebook.
TAMPERING = ("edited_tests", "unmarked_tests", "deleted_test", "endless_loop")
# Only the fixture batch is graded a second time (the rerun checks a mechanism, not the course).
RERUN = ("fixture",)


def students(key: str) -> list[str]:
    return STUDENTS + ([HARD_STUDENT] if key == "fixture" else [])


def tampered_assignments(course: Course, key: str) -> list[str]:
    """The assignments that get the tampering students (all of the fixture's, one of the course's)."""
    assignments = course.assignments()
    return assignments if key == "fixture" else assignments[:1]

HARD_LOOP = (
    "while True:  # ignores the interrupt that ends an ordinary endless loop\n"
    "    try:\n"
    "        while True:\n"
    "            pass\n"
    "    except KeyboardInterrupt:\n"
    "        pass"
)


def make_submissions(course: Course, released_root: Path, subs: Path, hard: bool,
                     tampered: list[str]) -> None:
    """Fake submissions for every assignment of ``course``: one student per robustness case.

    The students in ``TAMPERING`` submit only the assignments in ``tampered``.
    """
    for assignment in course.assignments():
        for notebook in course.notebooks(assignment):
            source = _read(course.source_dir / assignment / f"{notebook}.ipynb")
            stub = _read(released_root / assignment / f"{notebook}.ipynb")
            answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
            answer_ids = [nbgrader_meta(c)["grade_id"] for c in stub.cells if nbgrader_meta(c).get("solution")]
            test_ids = [nbgrader_meta(c)["grade_id"] for c in stub.cells
                        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")]

            def filled(ids):
                nb = copy.deepcopy(stub)
                for cell in nb.cells:
                    if nbgrader_meta(cell).get("grade_id") in ids:
                        cell.source = answers[nbgrader_meta(cell)["grade_id"]]
                return nb

            def put(student, nb=None, text=None, name=f"{notebook}.ipynb"):
                folder = subs / student / assignment
                if student in TAMPERING and assignment not in tampered:
                    return folder
                folder.mkdir(parents=True, exist_ok=True)
                if nb is not None:
                    nbformat.write(nb, str(folder / name))
                if text is not None:
                    (folder / name).write_text(text)
                return folder

            solution = filled(answer_ids)
            put("solution", solution)
            put("stub", stub)
            put("half", filled(answer_ids[: max(1, len(answer_ids) // 2)]))
            edited = copy.deepcopy(stub)  # rewrites every assert: must still score 0
            for cell in edited.cells:
                if nbgrader_meta(cell).get("grade_id") in test_ids:
                    cell.source = "pass"
            put("edited_tests", edited)
            unmarked = copy.deepcopy(stub)  # also strips the nbgrader metadata of the test cells
            for cell in unmarked.cells:
                if nbgrader_meta(cell).get("grade_id") in test_ids:
                    cell.source = "pass"
                    del cell.metadata["nbgrader"]
            put("unmarked_tests", unmarked)
            deleted = copy.deepcopy(solution)
            deleted.cells = [c for c in deleted.cells if nbgrader_meta(c).get("grade_id") != test_ids[0]]
            put("deleted_test", deleted)
            loop = copy.deepcopy(solution)
            for cell in loop.cells:
                if nbgrader_meta(cell).get("grade_id") == answer_ids[0]:
                    cell.source = "while True:\n    pass"
            put("endless_loop", loop)
            if hard:
                stuck = copy.deepcopy(solution)
                for cell in stuck.cells:
                    if nbgrader_meta(cell).get("grade_id") == answer_ids[0]:
                        cell.source = HARD_LOOP
                stuck.cells.extend(nbformat.v4.new_code_cell("pass") for _ in range(10))
                put(HARD_STUDENT, stuck)
            put("bad_json", text='{"cells": [')
            put("not_a_notebook", text=json.dumps({"hello": "world"}))
            (put("missing_notebook") / "notes.txt").write_text("I forgot to attach it")
            put("wrong_name", solution, name=f"{notebook}-final.ipynb")
            folder = put("solution")  # Jupyter's autosave folder, holding the stub: must be ignored
            (folder / ".ipynb_checkpoints").mkdir(exist_ok=True)
            nbformat.write(stub, str(folder / ".ipynb_checkpoints" / f"{notebook}-checkpoint.ipynb"))
    (subs / "no_folder").mkdir(parents=True, exist_ok=True)
    (subs / ".ipynb_checkpoints").mkdir(exist_ok=True)
    (subs / "README.txt").write_text("stray file")


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as fh:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(fh)}


def _batch(key: str, tmp: Path):
    """Autograde the fake submissions of one course twice into the same folder."""
    from llmcourse.grading.release import generate

    course = Course.load(COURSE_ROOTS[key])
    released = tmp / "released"
    generate(course, course.assignments(), root=released, db_url=sqlite_url(tmp / "released.db"))
    subs = tmp / "submissions"
    make_submissions(course, released / "exercises", subs, hard=key == "fixture",
                     tampered=tampered_assignments(course, key))
    # Cell timeout: well above the slowest cell of any solution (measured by validate).
    slowest = max(
        (n.solution.max_cell_seconds for n in _validation(key).notebooks if n.solution), default=0.0
    )
    timeout = max(5, math.ceil(4 * slowest + 3))
    # Hard limit per student: far above any honest job; the fixture's is low so that
    # the interrupt-proof loop is cut short quickly (its 14 stuck cells need 70 s).
    limit = 15 if key == "fixture" else 3 * timeout + 10
    out = tmp / "out"
    argv = ["autograde", str(subs), "--out", str(out), "--course", str(course.root), "--jobs", "2",
            "--timeout", str(timeout), "--student-timeout", str(limit), "-q"]
    start = time.perf_counter()
    first_code = cli.main(argv)
    first_seconds = time.perf_counter() - start
    first_csv = (out / "grades.csv").read_text()
    first_results = json.loads((out / "results.json").read_text())
    codes, csvs = [first_code], [first_csv]
    if key in RERUN:
        codes.append(cli.main(argv))
        csvs.append((out / "grades.csv").read_text())
    return {
        "course": course, "out": out, "timeout": timeout, "limit": limit, "codes": codes,
        "csv": csvs, "results": first_results, "seconds": first_seconds,
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    done: dict[str, dict] = {}

    def get(key: str) -> dict:
        if key not in done:
            done[key] = _batch(key, tmp_path_factory.mktemp(f"autograde-{key}"))
        return done[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("key", COURSES)
def test_autograde_batch(batch, key, capsys):
    b = batch(key)
    course, out = b["course"], b["out"]
    assert b["codes"] == [0] * len(b["codes"])
    rows = _rows(out / "grades.csv")
    assignments = course.assignments()
    tampered = tampered_assignments(course, key)
    assert set(rows) == {(s, a) for s in students(key) for a in assignments}
    with open(out / "grades.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:5] == ["student_id", "assignment", "score", "max_score", "status"]

    for assignment in assignments:
        def row(student):
            r = rows[(student, assignment)]
            return float(r["score"]), float(r["max_score"]), r["status"]

        score, top, status = row("solution")
        assert top > 0 and score == top and status == "ok"
        assert row("stub")[0] == 0 and row("stub")[2] == "ok"
        score, _, status = row("half")
        assert 0 < score < top and status == "ok"
        if assignment in tampered:
            score, _, status = row("edited_tests")
            assert score == 0 and status.startswith("test cell modified (restored)")
            score, _, status = row("unmarked_tests")
            assert score == 0 and status.startswith("test cell deleted (restored)")
            score, _, status = row("deleted_test")
            assert score == top and status.startswith("test cell deleted (restored)")
            score, _, status = row("endless_loop")
            assert score < top and status.startswith("timeout") and "interrupted" in status
        else:
            assert all(row(s)[0] == 0 and row(s)[2].startswith("missing submission") for s in TAMPERING)
        if key == "fixture":
            score, _, status = row(HARD_STUDENT)
            assert score == 0 and status.startswith("timeout: grading stopped after")
        for student in ("bad_json", "not_a_notebook"):
            score, _, status = row(student)
            assert score == 0 and status.startswith("malformed notebook:")
        assert "not valid JSON" in row("bad_json")[2]
        assert "not a Jupyter notebook" in row("not_a_notebook")[2]
        assert row("missing_notebook")[0] == 0 and row("missing_notebook")[2].startswith("missing notebook:")
        assert row("wrong_name")[0] == 0 and "wrong notebook name" in row("wrong_name")[2]
        assert row("no_folder")[0] == 0 and row("no_folder")[2].startswith("missing submission")
        assert all(float(r["max_score"]) == top for (s, a), r in rows.items() if a == assignment)

        for student in students(key):
            for notebook in course.notebooks(assignment):
                html = out / "feedback" / student / assignment / f"{notebook}.html"
                assert html.is_file() and html.stat().st_size > 0, html
        solution_html = (out / "feedback" / "solution" / assignment / f"{course.notebooks(assignment)[0]}.html")
        assert fmt_points(top) in solution_html.read_text()
        assert not re.search(r"src=[\"']https?://", solution_html.read_text()), "feedback must load nothing remote"

    warnings = " ".join(b["results"]["warnings"])
    assert "README.txt" in warnings and ".ipynb_checkpoints" in warnings and "notes.txt" in warnings

    with capsys.disabled():
        per_nb = {}
        for r in b["results"]["rows"]:
            for name, nb in r["notebooks"].items():
                if nb["graded"] and r["student_id"] in ("solution", "stub", "half"):
                    per_nb.setdefault(f"{r['assignment']}/{name}", []).append(nb["seconds"])
        for name, times in sorted(per_nb.items()):
            print(f"\n[autograde timing] {name}: {sum(times) / len(times):.1f} s per notebook "
                  f"(autograde + feedback, mean of {len(times)}); whole batch of "
                  f"{len(b['results']['rows'])} rows: {b['seconds']:.0f} s with 2 jobs, cell timeout {b['timeout']} s")


@pytest.mark.slow
@pytest.mark.parametrize("key", [c for c in COURSES if c.values[0] in RERUN])
def test_autograde_rerun_gives_same_csv(batch, key):
    b = batch(key)
    assert len(b["csv"]) == 2 and b["csv"][0] == b["csv"][1]


@pytest.mark.slow
@pytest.mark.parametrize("key", COURSES)
def test_autograde_gradebook_holds_every_grade(batch, key):
    from nbgrader.api import Gradebook

    b = batch(key)
    rows = _rows(b["out"] / "grades.csv")
    with Gradebook(sqlite_url(b["out"] / "gradebook.db"), "llmcourse") as gb:
        assert {s.id for s in gb.students} == set(students(key))
        for (student, assignment), row in rows.items():
            submission = gb.find_submission(assignment, student)
            assert submission.score == pytest.approx(float(row["score"]))
            assert submission.max_score == pytest.approx(float(row["max_score"]))
            assert not submission.needs_manual_grade
        for assignment in b["course"].assignments():
            # one submission per student (after a rerun: replaced, not added)
            assert len(gb.find_assignment(assignment).submissions) == len(students(key))


@pytest.mark.slow
@pytest.mark.parametrize("key", COURSES)
def test_autograded_notebooks_restore_tests(batch, key):
    """The student who rewrote every assert was graded on the instructor's tests, hidden ones included."""
    b = batch(key)
    course = b["course"]
    for assignment in tampered_assignments(course, key):
        for notebook in course.notebooks(assignment):
            graded = _read(b["out"] / "autograded" / "edited_tests" / assignment / f"{notebook}.ipynb")
            source = _read(course.source_dir / assignment / f"{notebook}.ipynb")
            want = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells
                    if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")}
            have = {nbgrader_meta(c)["grade_id"]: c.source for c in graded.cells if nbgrader_meta(c).get("grade_id") in want}
            assert have == want
