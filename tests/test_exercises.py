"""One harness for every exercise: do its graded tests grade well?

Each exercise's file, tests/test_exercise_<name>.py, declares an ``EXERCISE``
(tests/exercise_support.py: its notebook, its plausible wrong solutions, its correct
alternatives); every test here runs once per exercise, or once per declared solution:

- the notebook has the shape nbgrader needs, names its chapter, and its test cells say
  what they test in words the feedback page can show;
- the solution passes every graded test cell, with and without the visible asserts;
- the released stubs fail every graded test cell, as released and as autograded;
- each wrong solution fails its own test cell through the hidden tests alone (the visible
  asserts are removed first), so a student who only makes the visible examples pass does
  not get the points, and the test cells before it still pass;
- a wrong helper costs only its own cell's points, with and without the visible asserts;
- each correct alternative earns full marks;
- the committed exercises/ notebook is the released solution, cell by cell (the slow test
  in tests/test_grading.py compares it with a fresh ``nbgrader generate_assignment``).

The cells run in this process; one slow test per exercise runs the solution in a real
Jupyter kernel as well.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from exercise_support import (
    Exercise,
    check_alternative,
    check_costs_points_once,
    check_shape,
    check_solution_passes,
    check_stubs_fail,
    check_wrong_solution,
    grade_id,
    is_answer,
    is_graded,
    load,
    released,
    run_in_kernel,
)

MODULES = sorted(path.stem for path in Path(__file__).parent.glob("test_exercise_*.py"))
EXERCISES = {ex.key: ex for ex in (importlib.import_module(m).EXERCISE for m in MODULES)}


def _params(kind: str) -> list:
    params = []
    for key, ex in EXERCISES.items():
        names = {"wrong": list(ex.wrong), "alternatives": list(ex.alternatives), "costs_once": ex.costs_once}[kind]
        params += [pytest.param(key, name, id=f"{key}: {name}") for name in names]
    return params


KEYS = [pytest.param(key, id=key) for key in EXERCISES]
# words of the lecture material the course follows; readers of the course do not have it
NOT_OURS = re.compile(r"\blectures?\b|\blecture notes\b|\bdecks?\b|\bslides?\b", re.IGNORECASE)


def test_every_exercise_folder_is_registered():
    folders = sorted(path.parent.name for path in (Path(__file__).parents[1] / "solutions").glob("*/*.ipynb"))
    assert sorted(ex.folder for ex in EXERCISES.values()) == folders


@pytest.mark.parametrize("folder, names", [
    ("06_pretraining", ["chapter 6"]),
    ("10_ethics", ["chapter 10"]),
    ("A_backprop", ["appendix A"]),
])
def test_folder_names_a_chapter_or_an_appendix(folder, names):
    """A folder carries its chapter's number, or its appendix's letter."""
    assert Exercise(folder=folder, notebook="n", answers=[], points=(0, 0), wrong={}).part_names == names


@pytest.mark.parametrize("folder", ["backprop", "a_backprop", "AB_backprop", "6a_pretraining", "_backprop"])
def test_a_folder_without_a_chapter_is_refused(folder):
    with pytest.raises(ValueError, match="chapter number"):
        Exercise(folder=folder, notebook="n", answers=[], points=(0, 0), wrong={}).chapter


@pytest.mark.parametrize("key", KEYS)
def test_notebook_shape(key):
    """Answer and test cells as nbgrader needs them, one test cell after each answer; saved without outputs."""
    ex = EXERCISES[key]
    check_shape(ex.load(), ex.answers, ex.points)


@pytest.mark.parametrize("key", KEYS)
def test_notebook_names_its_chapter_in_the_course_voice(key):
    ex = EXERCISES[key]
    nb = ex.load()
    first = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    for name in ex.part_names:
        assert re.search(rf"\b{name}\b", first.source, re.IGNORECASE), f"the first cell names {name}"
    for cell in nb.cells:
        found = NOT_OURS.findall(cell.source)
        assert not found, f"{grade_id(cell) or cell.source[:40]!r} speaks of {found}: write in the course's own voice"


@pytest.mark.parametrize("key", KEYS)
def test_test_cells_name_what_they_test_in_plain_text(key):
    """The feedback page lists each test cell by its first line (src/llmcourse/grading/worker.py), and shows
    assert messages as plain text, where no TeX is rendered."""
    nb = EXERCISES[key].load()
    defined = {}
    for cell in nb.cells:
        if is_answer(cell):
            tree = ast.parse(cell.source)
            defined[grade_id(cell)] = {node.name for node in tree.body
                                       if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    for cell in nb.cells:
        if is_graded(cell):
            first = cell.source.splitlines()[0]
            names = defined[grade_id(cell).removeprefix("test_")]
            assert first.startswith("# Tests of ") and any(f"`{n}`" in first for n in names), (
                f"{grade_id(cell)}: the first line is {first!r}; it should be '# Tests of `<one of {sorted(names)}>`'")
            assert "$" not in cell.source, f"{grade_id(cell)}: TeX in a test cell shows as source text in the feedback"


@pytest.mark.parametrize("key", KEYS)
def test_feedback_contents_name_each_test_cell(key, tmp_path):
    """The contents of a feedback page (nbgrader lists every test cell as "Test cell") name what each one tests."""
    from llmcourse.grading.worker import name_test_cells, test_cell_titles

    nb = EXERCISES[key].load()
    gids = [grade_id(cell) for cell in nb.cells if is_graded(cell)]
    page = tmp_path / "feedback.html"
    page.write_text("<ol>" + "".join(f'<li><a href="#{gid}">Test cell</a> (Score: 0.0 / 1.0)</li>' for gid in gids) + "</ol>")
    name_test_cells(page, test_cell_titles(nb))
    text = page.read_text()
    assert "Test cell" not in text
    for cell in nb.cells:
        if is_graded(cell):
            name = cell.source.splitlines()[0].split("`")[1]
            assert f'<a href="#{grade_id(cell)}">Tests of <code>{name}</code></a>' in text, text


@pytest.mark.parametrize("key", KEYS)
def test_solution_passes_every_test_cell(key):
    ex = EXERCISES[key]
    check_solution_passes(ex.load(), ex.answers, skip=ex.skip)


@pytest.mark.parametrize("keep_hidden", [False, True], ids=["as-released", "as-autograded"])
@pytest.mark.parametrize("key", KEYS)
def test_stubs_fail_every_test_cell(key, keep_hidden):
    ex = EXERCISES[key]
    check_stubs_fail(ex.load(), ex.answers, keep_hidden, skip=ex.skip)


@pytest.mark.parametrize("key, name", _params("wrong"))
def test_hidden_tests_catch_wrong_solution(key, name):
    ex = EXERCISES[key]
    answer_id, code = ex.wrong[name]
    check_wrong_solution(ex.load(), ex.answers, answer_id, code, name, skip=ex.skip)


@pytest.mark.parametrize("key, name", _params("costs_once"))
def test_a_wrong_helper_costs_points_once(key, name):
    """Later cells are graded with the course's versions of the helpers they call: a bug is not paid for twice."""
    ex = EXERCISES[key]
    answer_id, code = ex.wrong[name]
    check_costs_points_once(ex.load(), answer_id, code, name, skip=ex.skip, base=ex.costs_once_base)


@pytest.mark.parametrize("key, name", _params("alternatives"))
def test_correct_alternatives_earn_full_marks(key, name):
    ex = EXERCISES[key]
    answer_id, code = ex.alternatives[name]
    check_alternative(ex.load(), answer_id, code, name, skip=ex.skip)


@pytest.mark.parametrize("key", KEYS)
def test_released_notebook_is_the_released_solution(key):
    """exercises/ holds what ``llmcourse release`` makes of solutions/ now: the same cells, stubs for the
    answers, no hidden tests (run ``llmcourse release`` after editing a solution)."""
    ex = EXERCISES[key]
    want = released(ex.load(), keep_hidden=False)
    got = load(ex.released_path)
    assert [(c.cell_type, c.source.strip()) for c in got.cells] == [(c.cell_type, c.source.strip()) for c in want.cells]
    assert [grade_id(c) for c in got.cells] == [grade_id(c) for c in want.cells]


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_solution_runs_in_a_kernel(key):
    """The most faithful check: the whole notebook in a Jupyter kernel, as nbgrader runs it."""
    run_in_kernel(EXERCISES[key].path)
