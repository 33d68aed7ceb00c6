"""Running notebooks the way nbgrader grades them, and reading the outcome of each cell.

``validate`` and the autograde workers both execute through nbgrader's own
``Execute`` preprocessor with the course configuration (per-cell timeout,
interrupt on timeout, ...), and score test cells with nbgrader's own rule
(:func:`nbgrader.utils.determine_grade`): a test cell earns its points unless
it shows an error *or writes to stderr*.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

TIMEOUT_ENAMES = {"CellTimeoutError"}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def ensure_tool_path() -> None:
    """Put this interpreter's ``bin/`` first on PATH.

    nbgrader runs the ``alembic`` command when it creates a gradebook, and
    kernels are started by name; both must come from the same environment as
    this process even when the virtual environment was not activated.
    """
    bindir = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir, *[p for p in parts if p]])


def grading_env(jobs: int = 1) -> dict[str, str]:
    """Environment variables for kernels that grade student code.

    Kernels running side by side each get an equal share of the CPU threads
    (unless the caller already chose a thread count), and the course package
    computes on the CPU unless ``LLMCOURSE_DEVICE`` says otherwise, so a grade
    never depends on which machine, or how many parallel jobs, produced it.
    """
    env: dict[str, str] = {}
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    for var in THREAD_VARS:
        if var not in os.environ:
            env[var] = threads
    env.setdefault("LLMCOURSE_DEVICE", os.environ.get("LLMCOURSE_DEVICE", "cpu"))
    env.setdefault("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))
    env.setdefault("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


@contextlib.contextmanager
def temp_environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def nbgrader_meta(cell: Any) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_autograded_test(cell: Any) -> bool:
    """A locked code cell that earns points by running without error (nbgrader "autograder tests")."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def error_summary(cell: Any, limit: int = 120) -> str:
    """``ename: evalue`` of the first error in a cell, or the first stderr line, or ''."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            text = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip().rstrip(":")
            text = " ".join(text.split())
            return text if len(text) <= limit else text[: limit - 3] + "..."
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = "".join(out.get("text", "")).strip().splitlines()
            first = text[0] if text else ""
            return ("stderr: " + first)[:limit]
    return ""


def timed_out(cell: Any) -> bool:
    return any(
        out.get("output_type") == "error" and out.get("ename") in TIMEOUT_ENAMES
        for out in cell.get("outputs", [])
    )


def cell_seconds(cell: Any) -> float | None:
    """Run time of an executed cell from nbclient's timing metadata."""
    timing = cell.get("metadata", {}).get("execution", {})
    start = timing.get("iopub.execute_input") or timing.get("shell.execute_reply.started")
    end = timing.get("shell.execute_reply")
    if not (start and end):
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())


@dataclass
class CellOutcome:
    grade_id: str
    points: float
    score: float
    error: str
    timed_out: bool
    seconds: float | None

    @property
    def passed(self) -> bool:
        return self.score >= self.points and not self.error


def test_outcomes(nb: Any) -> list[CellOutcome]:
    """Score every autograded test cell of an executed notebook with nbgrader's rule."""
    from nbgrader.utils import determine_grade

    outcomes = []
    for cell in nb.cells:
        if not is_autograded_test(cell):
            continue
        score, points = determine_grade(cell)
        outcomes.append(
            CellOutcome(
                grade_id=str(nbgrader_meta(cell).get("grade_id")),
                points=float(points),
                score=float(score or 0.0),
                error=error_summary(cell),
                timed_out=timed_out(cell),
                seconds=cell_seconds(cell),
            )
        )
    return outcomes


def execute_notebook(nb: Any, workdir: Path, config: Any, mode: str = "validate") -> float:
    """Execute ``nb`` in place with nbgrader's Execute preprocessor; return wall seconds.

    Cell errors are recorded in the outputs (``allow_errors``); a cell that runs
    past the configured timeout is interrupted and shows ``CellTimeoutError``.
    Raises only when the kernel cannot be started or dies.
    """
    from nbgrader.preprocessors import Execute
    from nbgrader.utils import setenv

    ensure_tool_path()
    executor = Execute(config=config)
    executor.record_timing = True
    start = time.perf_counter()
    with setenv(NBGRADER_EXECUTION=mode):
        executor.preprocess(nb, {"metadata": {"path": str(workdir)}})
    return time.perf_counter() - start


def copy_assignment_files(src: Path, dest: Path) -> None:
    """Copy an assignment folder (notebooks and data files) without editor clutter."""
    shutil.copytree(
        src,
        dest,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store"),
    )
