"""What grading found, passed from stage to stage of ``llmcourse autograde``: rows of scores and status.

An :class:`AutogradeReport` holds one :class:`Row` per (student, assignment); a row
holds a :class:`NotebookGrade` per notebook of the assignment, and that a
:class:`CellGrade` per graded cell. Staging (:mod:`llmcourse.grading.stage`) makes
the rows, every graded cell at 0 points, and records in ``Row.issues`` what is
wrong with a submission; collecting (:mod:`llmcourse.grading.collect`) fills in
the scores the worker sent back and what went wrong while it ran; writing
(:mod:`llmcourse.grading.write`) turns the rows into ``grades.csv``, the
gradebook, placeholder feedback and ``results.json``. ``Row.status`` is the
``status`` column: ``ok`` (``ok (needs manual grading)``) or the issues, joined
by ``; ``. :func:`fmt_points` writes points as the CSV shows them (``3``, ``2.5``).
``Row.score`` is the score after nbgrader's late penalty (``Row.penalty``, the sum
of each notebook's, for a submission ``Row.late_seconds`` past its due date; see
:mod:`llmcourse.grading.late`).

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def fmt_points(value: float) -> str:
    value = round(float(value), 4)
    return str(int(value)) if value == int(value) else f"{value:g}"


@dataclass
class CellGrade:
    score: float | None
    max_score: float
    needs_manual_grade: bool = False


@dataclass
class NotebookGrade:
    name: str
    cells: dict[str, CellGrade] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    graded: bool = False
    seconds: float = 0.0  # grading it in all: kernel, guard, cells, nbgrader, feedback
    kernel_seconds: float = 0.0  # of which starting the sandboxed kernel
    guard_seconds: float = 0.0  # and loading what the tests import, before the student's code
    late_penalty: float = 0.0  # points nbgrader's late penalty took off this notebook

    @property
    def score(self) -> float:
        return sum(c.score or 0.0 for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())


@dataclass
class Row:
    student_id: str
    assignment: str
    notebooks: dict[str, NotebookGrade] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timestamp: str | None = None
    valid_id: bool = True  # False: a folder name that is no student id; no gradebook entry, no feedback
    late_seconds: float = 0.0  # how long after the assignment's due date it was submitted

    @property
    def penalty(self) -> float:
        return sum(n.late_penalty for n in self.notebooks.values())

    @property
    def score(self) -> float:
        """The points earned, less the late penalty."""
        return max(0.0, sum(n.score for n in self.notebooks.values()) - self.penalty)

    @property
    def max_score(self) -> float:
        return sum(n.max_score for n in self.notebooks.values())

    @property
    def status(self) -> str:
        if not self.issues:
            manual = any(c.needs_manual_grade for n in self.notebooks.values() for c in n.cells.values())
            return "ok (needs manual grading)" if manual else "ok"
        return "; ".join(self.issues)

    def csv_row(self) -> dict[str, str]:
        return {
            "student_id": self.student_id,
            "assignment": self.assignment,
            "score": fmt_points(self.score),
            "max_score": fmt_points(self.max_score),
            "status": self.status,
            "notebooks": " ".join(
                f"{n.name}.ipynb={fmt_points(n.score)}/{fmt_points(n.max_score)}"
                for n in self.notebooks.values()
            ),
            "late_seconds": fmt_points(round(self.late_seconds)),
            "penalty": fmt_points(self.penalty),
        }


@dataclass
class AutogradeReport:
    out: Path
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gradebook: str = ""  # the ``--db`` URL, password masked ("": ``out/gradebook.db``)

    def row(self, student_id: str, assignment: str) -> Row:
        for row in self.rows:
            if row.student_id == student_id and row.assignment == assignment:
                return row
        raise KeyError((student_id, assignment))
