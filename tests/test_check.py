"""Tests of ``llmcourse check NOTEBOOK``, the students' look at a notebook before they submit it.

The fast tests read notebooks only. The slow ones check four notebooks of the tiny
fixture course (``tests/grading_fixtures``) once each, in one module fixture: the
released stub itself, a solution (in a copy of the course without ``solutions/``,
as students have it), one with edited, deleted and renamed test cells, and a
solution whose hidden tests would fail, with an endless loop.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import signal
import subprocess
import threading
import types
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import check, cli, sandbox
from llmcourse.grading.execution import nbgrader_meta

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
SOURCE = FIXTURE / "solutions" / "00_smoke" / "arith.ipynb"
RELEASED = FIXTURE / "exercises" / "00_smoke" / "arith.ipynb"


def _sandbox_kind() -> str:
    """The grading sandbox where it works here; else (no bubblewrap) the fixture's trusted notebooks run without."""
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable:
        return "none"
    return "bwrap"


SANDBOX = _sandbox_kind()


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def solution_notebook():
    """The released stub with the instructor's answers written into its answer cells."""
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in _read(SOURCE).cells if nbgrader_meta(c).get("solution")}
    nb = _read(RELEASED)
    for grade_id, source in answers.items():
        _cell(nb, grade_id).source = source
    return nb


def _write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``llmcourse ...`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------
# files that are no notebook of the course (fast: nothing runs)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content,expected",
    [
        (None, "no such file"),
        (b"hello", "is not valid JSON"),
        (b"[1, 2, 3]", "is JSON but not a Jupyter notebook"),
        (b'{"cells": ' + b"[" * 100 + b"]" * 100 + b"}", "nested more than 64 levels"),
    ],
)
def test_a_file_that_is_no_notebook_is_named(tmp_path, content, expected):
    path = tmp_path / "arith.ipynb"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("check", str(path), "--course", str(FIXTURE))
    assert code == 1 and out == ""
    assert "llmcourse check: error:" in err and expected in err and "arith.ipynb" in err, err


def test_a_folder_is_no_notebook(tmp_path):
    code, _, err = run_cli("check", str(tmp_path), "--course", str(FIXTURE))
    assert code == 1 and "is a folder" in err


def test_a_notebook_of_no_assignment_stops_the_check(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def add(a, b):\n    return a + b")])
    code, out, _ = run_cli("check", str(_write(nb, tmp_path / "arith.ipynb")), "--course", str(FIXTURE))
    assert code == 1
    assert "none of the course's" in out and "00_smoke/arith.ipynb" in out
    assert "Nothing was run" in out and "not a score" in out
    assert "Visible tests" not in out


def test_usage_errors_exit_2(capsys):
    for argv in (["check"], ["check", "x.ipynb", "--timeout", "0"], ["check", "x.ipynb", "--sandbox", "docker"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    text = capsys.readouterr().out
    assert "--timeout" in text and "--sandbox {bwrap,none}" in text


def test_missing_bwrap_gives_autogrades_message(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", str(tmp_path / "no-bwrap"))
    path = _write(solution_notebook(), tmp_path / "arith.ipynb")
    code, out, err = run_cli("check", str(path), "--course", str(FIXTURE))
    assert code == 1 and out == ""
    assert "apt-get install bubblewrap" in err and "--sandbox none" in err, err


# ----------------------------------------------------------------------------
# which notebook, and are its test cells intact (fast)
# ----------------------------------------------------------------------------
def test_identify_by_answer_and_test_cell_ids_not_by_name():
    intro = copy.deepcopy(_read(RELEASED).cells[0])  # a locked Markdown cell, id "intro": not distinctive
    other = nbformat.v4.new_notebook(cells=[intro])
    released = {("00_smoke", "arith"): _read(RELEASED), ("01_other", "other"): other}
    assert check.identify(solution_notebook(), "other.ipynb", released) == ("00_smoke", "arith")
    assert check.identify(other, "arith.ipynb", released) is None
    assert check.identify(nbformat.v4.new_notebook(), "arith.ipynb", released) is None


def test_course_notebooks_share_no_answer_or_test_cell_id():
    """What identification relies on: each answer or test cell id names one released notebook."""
    released = check.released_notebooks(check.released_course(REPO, REPO))
    seen: dict[str, tuple[str, str]] = {}
    for key, nb in released.items():
        for grade_id in check.grade_ids(nb):
            assert seen.setdefault(grade_id, key) == key, f"{grade_id} is in {seen[grade_id]} and {key}"


def test_released_file_edited_in_place_is_compared_with_git_or_checksums(monkeypatch):
    released = _read(RELEASED)
    reference, said = check.reference_notebook(RELEASED, RELEASED, released)
    assert reference is None or "committed to git" in said  # this very file: not compared with itself
    monkeypatch.setattr(check, "committed_copy", lambda path: None)
    reference, said = check.reference_notebook(RELEASED, RELEASED, released)
    assert reference is None and "checksums" in said
    assert check.changed_by_checksum(released) == []
    edited = copy.deepcopy(released)
    _cell(edited, "mean_test").source = "assert True"
    assert check.changed_by_checksum(edited) == ["mean_test"]


def test_a_kernel_that_ignores_interrupts_is_killed_after_the_notebook_limit():
    """A loop that swallows KeyboardInterrupt outlives every cell limit: the whole kernel goes."""
    kernel = subprocess.Popen(["sleep", "60"], start_new_session=True)
    executor = types.SimpleNamespace(km=types.SimpleNamespace(provisioner=types.SimpleNamespace(pgid=kernel.pid)))
    stopped, in_time = threading.Event(), threading.Event()
    try:
        with check._stop_after(executor, 10, in_time):
            pass  # done in time: nothing is killed
        with check._stop_after(executor, 0.2, stopped):
            assert kernel.wait(timeout=10) == -signal.SIGKILL
        assert stopped.is_set() and not in_time.is_set()
    finally:
        kernel.kill()
        kernel.wait()


# ----------------------------------------------------------------------------
# running notebooks (slow): four checks, shared by the tests below
# ----------------------------------------------------------------------------
def _course_without_solutions(root: Path) -> Path:
    """The fixture course as a student has it: exercises/ and the configuration, no solutions/."""
    shutil.copytree(FIXTURE / "exercises", root / "exercises")
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    tmp = tmp_path_factory.mktemp("check")
    course = ["--course", str(FIXTURE), "--sandbox", SANDBOX]
    solution = solution_notebook()

    edited = copy.deepcopy(solution)
    _cell(edited, "add_test").source = "assert add(1, 2) == 3 or True"
    edited.cells.remove(_cell(edited, "mean_test"))
    loop = copy.deepcopy(solution)  # its mean passes the visible test and fails the hidden ones
    _cell(loop, "mean_answer").source = _cell(loop, "mean_answer").source.replace("sum(xs) / len(xs)",
                                                                                    "sum(xs) // len(xs)")
    loop.cells.insert(3, nbformat.v4.new_code_cell("while True:\n    pass"))

    student_course = _course_without_solutions(tmp / "student-course")
    return {
        "stub": run_cli("check", str(RELEASED), *course),
        "solution": run_cli("check", str(_write(solution, tmp / "solution" / "arith.ipynb")),
                            "--course", str(student_course), "--sandbox", SANDBOX),
        "edited": run_cli("check", str(_write(edited, tmp / "edited" / "arith-final.ipynb")),
                          "--course", str(FIXTURE), "--sandbox", "none"),
        "loop": run_cli("check", str(_write(loop, tmp / "loop" / "arith.ipynb")), *course, "--timeout", "3"),
    }


def _last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


@pytest.mark.slow
def test_released_stub_fails_its_visible_tests(checked):
    code, out, _ = checked["stub"]
    assert code == 1
    assert "arith.ipynb of assignment 00_smoke" in out and "File name: as expected" in out
    assert "Test cells: intact" in out
    assert "Run: top to bottom" in out
    for grade_id in ("add_test", "mean_test"):
        assert f"FAIL  {grade_id}" in out and "NotImplementedError: Replace this line with your code" in out
    assert _last_line(out) == "0 of 2 visible tests pass. Hidden tests decide the grade; this is not a score."


@pytest.mark.slow
def test_solution_passes_its_visible_tests_without_a_score(checked):
    """Checked in a course as students have it, without solutions/."""
    code, out, err = checked["solution"]
    assert code == 0, out + err
    assert "pass  add_test" in out and "pass  mean_test" in out and "FAIL" not in out
    assert ("in the grading sandbox" if SANDBOX == "bwrap" else "WITHOUT the sandbox") in out
    last = _last_line(out)
    assert last.startswith("All 2 visible tests passed.")
    assert "Hidden tests decide the grade and may still fail; this is not a score." in last
    assert "/3" not in out and "point" not in out  # no grade anywhere


@pytest.mark.slow
def test_hidden_tests_are_never_run(checked):
    """A mean that fails its hidden tests passes its check, though the course beside it holds
    them in solutions/: only the visible test ran."""
    _, out, _ = checked["loop"]
    assert "pass  mean_test" in out and "FAIL" not in out
    assert _last_line(out).startswith("All 2 visible tests passed. Hidden tests decide the grade and may still fail")


@pytest.mark.slow
def test_edited_deleted_and_renamed_are_reported(checked):
    code, out, err = checked["edited"]
    assert code == 1
    assert "arith-final.ipynb is not arith.ipynb" in out and "scores 0" in out
    assert "add_test edited and mean_test deleted" in out and "Grading puts the released test cells back" in out
    assert "pass  add_test" in out and "mean_test" not in out.split("Visible tests")[1]  # only the tests it holds
    assert _last_line(out).startswith("All 1 visible test passed.")


@pytest.mark.slow
def test_sandbox_none_runs_with_autogrades_warning(checked):
    _, out, err = checked["edited"]
    assert "--sandbox none: student code runs with your rights" in err
    assert "WITHOUT the sandbox (--sandbox none)" in out


@pytest.mark.slow
def test_endless_loop_is_interrupted_and_reported(checked):
    code, out, _ = checked["loop"]
    assert code == 1
    assert "cell 4 (while True:) ran longer than 3 s and was interrupted" in out
    assert "pass  add_test" in out and "pass  mean_test" in out  # the cells after it still ran
