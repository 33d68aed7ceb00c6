"""Running an exercise notebook's cells in this process, for the tests of its grading.

The tests of every exercise (tests/test_exercise_*.py) ask the same questions: does the
solution pass every graded test cell, do the released stubs fail them all, and does
each plausible wrong solution fail its own cell through the hidden tests alone? To ask
them dozens of times within seconds, the code cells run here, in one fresh namespace per
run: what a Jupyter kernel does with them, minus the kernel start-up.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_graded(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def hidden_part(source: str) -> str:
    """Only the hidden tests of a test cell (they must stand on their own)."""
    parts = HIDDEN.findall(source)
    assert parts, "every graded cell has hidden tests"
    return "\n".join(parts)


def run(nb, *, replace: dict[str, str] | None = None, hidden_only: bool = False,
        skip: tuple[str, ...] = (), stop_after: str | None = None) -> dict[str, str | None]:
    """Run the notebook's code cells in order; return {cell grade id: error text or None}.

    The result holds the graded test cells and the answer cells (an answer cell that
    raises, such as one with a syntax error, would fail the tests for the wrong reason).

    ``replace`` swaps the source of answer cells (by grade id); ``hidden_only`` keeps
    only the hidden part of each graded test cell; ``skip`` leaves out ungraded cells
    whose source contains one of these strings (plots, say); ``stop_after`` ends the run
    after the cell with that grade id. Like nbgrader, an error in one cell does not stop
    the run.
    """
    import torch

    replace = replace or {}
    namespace: dict = {"__name__": "__main__"}
    results: dict[str, str | None] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tests' tensors are tiny: one thread is faster on a busy machine
    try:
        _run_cells(nb, namespace, results, replace, hidden_only, skip, stop_after)
    finally:
        torch.set_num_threads(threads)
    return results


def _run_cells(nb, namespace, results, replace, hidden_only, skip, stop_after) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = grade_id(cell)
        if gid is None and any(s in cell.source for s in skip):
            continue
        source = replace.get(gid, cell.source)
        if is_graded(cell) and hidden_only:
            source = hidden_part(source)
        error = None
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(source, f"<cell {gid}>", "exec"), namespace)
        except Exception as err:  # a failing cell, as the grader would record it
            error = f"{type(err).__name__}: {err}"[:300]
        if gid is not None:
            results[gid] = error
        if stop_after is not None and gid == stop_after:
            return


def graded(results: dict[str, str | None]) -> dict[str, str | None]:
    return {gid: error for gid, error in results.items() if gid.startswith("test_")}


def released(nb, keep_hidden: bool):
    """The student version: solutions replaced by stubs (and hidden tests removed unless kept)."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = copy.deepcopy(nb)
    nb, _ = ClearSolutions().preprocess(nb, {})
    if not keep_hidden:
        nb, _ = ClearHiddenTests().preprocess(nb, {})
    return nb


def check_shape(nb, answers: list[str], points: tuple[int, int]) -> None:
    """Answer and test cells as nbgrader needs them, one test cell after each answer;
    total points within ``points``; saved without outputs."""
    assert nb.metadata.kernelspec.name == "python3"
    ids = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    assert [grade_id(c) for c in nb.cells if is_answer(c)] == answers
    tests = [c for c in nb.cells if is_graded(c)]
    assert [grade_id(c) for c in tests] == [f"test_{a}" for a in answers]
    assert points[0] <= sum(c.metadata.nbgrader.points for c in tests) <= points[1]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if meta.get("grade"):
            assert meta["locked"] and not meta.get("solution")
            assert "### BEGIN HIDDEN TESTS" in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit the notebook without outputs"


def run_in_kernel(path: Path) -> None:
    """The most faithful check: the whole notebook in a Jupyter kernel, as nbgrader runs it."""
    from nbclient import NotebookClient

    nb = load(path)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:80]


def check_wrong_solution(nb, answers: list[str], answer_id: str, code: str, name: str,
                         skip: tuple[str, ...] = ()) -> None:
    """A wrong answer runs, fails its own test cell through the hidden tests alone, and
    leaves the test cells before it passing (they do not depend on it)."""
    own = f"test_{answer_id}"
    results = run(nb, replace={answer_id: code}, hidden_only=True, skip=skip, stop_after=own)
    assert results[answer_id] is None, f"the wrong solution itself does not run: {results[answer_id]}"
    assert results[own] is not None, f"the hidden tests of {own} let '{name}' pass"
    for gid in answers[: answers.index(answer_id)]:
        assert results[f"test_{gid}"] is None, results[f"test_{gid}"]


def check_stubs_fail(nb, answers: list[str], keep_hidden: bool, skip: tuple[str, ...] = ()) -> None:
    """The released stubs run and fail every graded test cell."""
    nb = released(nb, keep_hidden)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            assert "### BEGIN SOLUTION" not in cell.source and "NotImplementedError" in cell.source
    everything = run(nb, skip=skip)
    assert [everything[a] for a in answers] == [None] * len(answers), "the stubs themselves must run"
    results = graded(everything)
    assert set(results) == {f"test_{a}" for a in answers}
    passed = [gid for gid, error in results.items() if error is None]
    assert passed == [], f"a stub passes {passed}"


def check_solution_passes(nb, answers: list[str], skip: tuple[str, ...] = ()) -> None:
    """Every answer and test cell of the solution runs cleanly, also with only the hidden tests."""
    everything_passes = {gid: None for a in answers for gid in (a, f"test_{a}")}
    assert run(nb, skip=skip) == everything_passes
    assert run(nb, hidden_only=True, skip=skip) == everything_passes, "hidden tests must stand alone"


def check_costs_points_once(nb, answer_id: str, code: str, name: str, skip: tuple[str, ...] = ()) -> None:
    """A wrong answer fails its own test cell and no other, with and without the visible asserts."""
    for hidden_only in (False, True):
        results = graded(run(nb, replace={answer_id: code}, hidden_only=hidden_only, skip=skip))
        failed = sorted(gid for gid, error in results.items() if error is not None)
        assert failed == [f"test_{answer_id}"], f"'{name}' fails {failed}"
