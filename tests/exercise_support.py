"""Running an exercise notebook's cells in this process, for the tests of its grading.

Every exercise is asked the same questions, by one harness (tests/test_exercises.py):
does the solution pass every graded test cell, do the released stubs fail them all,
does each plausible wrong solution fail its own cell through the hidden tests alone
and cost no other cell's points, do correct solutions in other styles earn full marks?
Each exercise's own file (tests/test_exercise_*.py) only declares its data, an
:class:`Exercise`, plus the tests that are truly its own.

To ask those questions hundreds of times within a minute, the code cells run here, in
one fresh namespace per run: what a Jupyter kernel does with them, minus the kernel
start-up.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def dedented(variants: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """{name: (answer cell, code)} with each code block dedented, as the harness runs it."""
    return {name: (gid, textwrap.dedent(code)) for name, (gid, code) in variants.items()}


def from_template(answer_id: str, template: str, right: dict[str, str],
                  bugs: dict[str, dict[str, str] | str], field: str = "body") -> dict[str, tuple[str, str]]:
    """Wrong solutions that differ from a right one in a few places: ``template`` filled with
    ``right``, then with each bug's fields (a bare string fills ``field``)."""
    return {name: (answer_id, template.format(**{**right, **(bug if isinstance(bug, dict) else {field: bug})}))
            for name, bug in bugs.items()}


@dataclass
class Exercise:
    """One exercise as the shared harness sees it: its notebook and its data.

    ``wrong`` holds plausible wrong solutions, ``{name: (answer cell, code)}``: each must
    fail its own test cell through the hidden tests alone. ``alternatives`` holds correct
    solutions in other styles: each must earn full marks. ``costs_once`` names the wrong
    solutions that must fail their own test cell and no other (helpers that later cells
    call); ``costs_once_base`` swaps answer cells first for those checks (a later answer
    written on top of the helper, say). ``skip`` leaves out ungraded cells whose source
    holds one of these strings (plots, a training run), ``points`` bounds the total.
    """

    folder: str
    notebook: str
    answers: list[str]
    points: tuple[int, int]
    wrong: dict[str, tuple[str, str]]
    alternatives: dict[str, tuple[str, str]] = field(default_factory=dict)
    costs_once: list[str] = field(default_factory=list)
    costs_once_base: dict[str, str] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    chapters: tuple[int | str, ...] = ()  # other chapters (numbers) or appendices (letters) the first cell names

    def __post_init__(self):
        self.wrong = dedented(self.wrong)
        self.alternatives = dedented(self.alternatives)
        for name in self.costs_once:
            assert name in self.wrong, f"costs_once names an unknown wrong solution: {name}"
        for name, (gid, _) in [*self.wrong.items(), *self.alternatives.items()]:
            assert gid in self.answers, f"{name}: no answer cell {gid}"

    @property
    def key(self) -> str:
        return self.folder.split("_", 1)[1]

    @property
    def chapter(self) -> int | str:
        """The book's chapter: the folder's number (06_pretraining: 6), or an appendix's letter (A_backprop: "A")."""
        prefix = self.folder.split("_", 1)[0]
        if re.fullmatch(r"\d+", prefix):
            return int(prefix)
        if re.fullmatch(r"[A-Z]", prefix):
            return prefix
        raise ValueError(f"exercise folder {self.folder!r}: expected a chapter number (06_pretraining) "
                         "or an appendix letter (A_backprop) before the first '_'")

    @property
    def part_names(self) -> list[str]:
        """How the first cell names the parts of the book the exercise belongs to: "chapter 6", "appendix A"."""
        return [part_name(part) for part in (self.chapter, *self.chapters)]

    @property
    def path(self) -> Path:
        return ROOT / "solutions" / self.folder / f"{self.notebook}.ipynb"

    @property
    def released_path(self) -> Path:
        return ROOT / "exercises" / self.folder / f"{self.notebook}.ipynb"

    def load(self) -> nbformat.NotebookNode:
        return load(self.path)


def part_name(part: int | str) -> str:
    """A chapter is named by its number ("chapter 6"), an appendix by its letter ("appendix A")."""
    return f"chapter {part}" if isinstance(part, int) else f"appendix {part}"


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
    raises, such as one with a syntax error, would fail the tests for the wrong reason),
    and, under "ungraded cell <index>", every other cell that raised.

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
    for index, cell in enumerate(nb.cells):
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
        elif error is not None:  # an ungraded cell that fails: a test cell may have clobbered a name it uses
            results[f"ungraded cell {index}"] = error
        if stop_after is not None and gid == stop_after:
            return


def graded(results: dict[str, str | None]) -> dict[str, str | None]:
    return {gid: error for gid, error in results.items() if gid.startswith("test_")}


def released(nb, keep_hidden: bool):
    """The student version: solutions replaced by stubs (and hidden tests removed unless kept)."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    from llmcourse.grading.course import Course

    stubs = Course.load(ROOT).config().ClearSolutions  # the course's stubs, as `llmcourse release` writes them
    nb = copy.deepcopy(nb)
    nb, _ = ClearSolutions(code_stub=stubs.code_stub, text_stub=stubs.text_stub).preprocess(nb, {})
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


def check_costs_points_once(nb, answer_id: str, code: str, name: str, skip: tuple[str, ...] = (),
                            base: dict[str, str] | None = None) -> None:
    """A wrong answer fails its own test cell and no other, with and without the visible asserts.

    ``base`` swaps other answer cells first (correct answers written another way)."""
    for hidden_only in (False, True):
        results = graded(run(nb, replace={**(base or {}), answer_id: code}, hidden_only=hidden_only, skip=skip))
        failed = sorted(gid for gid, error in results.items() if error is not None)
        assert failed == [f"test_{answer_id}"], f"'{name}' fails {failed}"


def check_alternative(nb, answer_id: str, code: str, name: str, skip: tuple[str, ...] = ()) -> None:
    """A correct answer written another way runs and earns every point, with and without the visible asserts."""
    for hidden_only in (False, True):
        results = run(nb, replace={answer_id: code}, hidden_only=hidden_only, skip=skip)
        assert results[answer_id] is None, f"'{name}' does not run: {results[answer_id]}"
        failed = {gid: error for gid, error in graded(results).items() if error is not None}
        assert failed == {}, f"'{name}' loses points: {failed}"
