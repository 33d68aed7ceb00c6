"""Generate the student version of assignments: ``solutions/`` -> ``exercises/``.

This is ``nbgrader generate_assignment`` driven through its Python API with the
course's ``nbgrader_config.py``, so running nbgrader by hand from the course
root gives the same files. The configuration makes the result deterministic
(see :class:`llmcourse.grading.preprocessors.NormalizeNotebook`), which is what
lets the test suite check that the committed ``exercises/`` equal a fresh
generation (:func:`release_differences`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from llmcourse.grading.course import (
    RELEASE_DIR,
    SOURCE_DIR,
    Course,
    GradingError,
    is_ignored_name,
    normalized_notebook_json,
    sqlite_url,
)
from llmcourse.grading.execution import copy_assignment_files, ensure_tool_path


def nbgrader_logger(name: str = "llmcourse.grading.nbgrader") -> logging.Logger:
    """A quiet logger for nbgrader's converters: their log is captured and shown on failure."""
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def run_converter(converter) -> tuple[bool, str]:
    """Run an nbgrader converter, returning (success, captured log + traceback)."""
    from nbgrader.utils import capture_log

    result = capture_log(converter)
    text = result.get("log", "") or ""
    if not result.get("success"):
        text += "\n" + (result.get("error") or "")
    return bool(result.get("success")), text


def generate(
    course: Course,
    assignments: Iterable[str],
    root: Path | str | None = None,
    db_url: str | None = None,
) -> dict[str, str]:
    """Generate the released version of ``assignments``; return each one's nbgrader log.

    With ``root=None`` this writes ``<course>/exercises/<assignment>/`` in place
    (replacing what is there). With a ``root`` the sources are copied to
    ``<root>/solutions/`` first and the output goes to ``<root>/exercises/``,
    which leaves the course untouched. ``db_url`` picks the gradebook that
    records the assignments (default: the course's, or ``<root>/.nbgrader``).
    Raises :class:`GradingError` with nbgrader's log when generation fails.
    """
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    ensure_tool_path()  # a new gradebook runs `alembic` from this environment
    assignments = list(assignments)
    if root is not None:
        root = Path(root).resolve()
        for assignment in assignments:
            dest = root / SOURCE_DIR / assignment
            if dest.exists():
                shutil.rmtree(dest)
            copy_assignment_files(course.source_dir / assignment, dest)
    cfg = course.config(root=root, db_url=db_url)
    url = cfg.CourseDirectory.db_url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    logs: dict[str, str] = {}
    for assignment in assignments:
        coursedir = CourseDirectory(config=cfg, log=nbgrader_logger())
        coursedir.assignment_id = assignment
        converter = GenerateAssignment(coursedir=coursedir, config=cfg, log=nbgrader_logger())
        converter.force = True
        converter.create_assignment = True
        ok, log = run_converter(converter)
        logs[assignment] = log
        if not ok:
            raise GradingError(f"nbgrader could not generate {assignment!r}:\n{log.strip()}")
    return logs


def release(course: Course, assignments: Iterable[str] | None = None) -> list[str]:
    """``llmcourse release``: regenerate ``exercises/`` for some or all assignments.

    Releasing everything also removes ``exercises/<name>/`` folders whose source
    is gone. Returns the assignments written.
    """
    names = course.resolve_assignments(assignments)
    generate(course, names)
    if not assignments:
        known = set(names)
        if course.release_dir.is_dir():
            for entry in sorted(course.release_dir.iterdir()):
                if entry.is_dir() and not is_ignored_name(entry.name) and entry.name not in known:
                    logging.getLogger("llmcourse.grading").warning(
                        "removing %s: it has no source in %s", entry, course.source_dir
                    )
                    shutil.rmtree(entry)
    return names


def _files(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and not any(is_ignored_name(part) for part in rel.parts):
            out[rel.as_posix()] = path
    return out


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Differences between two released assignment folders, as readable lines."""
    want, have = _files(expected), _files(actual)
    problems = []
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            problems.append(f"{rel}: missing (run `llmcourse release`)")
        elif rel not in want:
            problems.append(f"{rel}: not produced by generation (stale or hand-added file)")
        elif rel.endswith(".ipynb"):
            try:
                same = normalized_notebook_json(want[rel]) == normalized_notebook_json(have[rel])
            except ValueError as exc:
                problems.append(f"{rel}: not valid JSON ({exc})")
                continue
            if not same:
                problems.append(f"{rel}: differs from a fresh generation (run `llmcourse release`)")
        elif want[rel].read_bytes() != have[rel].read_bytes():
            problems.append(f"{rel}: differs from the file in {SOURCE_DIR}/")
    return problems


def release_differences(course: Course, assignments: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Generate into a scratch directory and compare with the committed ``exercises/``.

    Returns ``{assignment: [problem, ...]}``; every list empty means up to date.
    """
    names = course.resolve_assignments(assignments)
    with tempfile.TemporaryDirectory(prefix="llmcourse-release-") as tmp:
        tmp = Path(tmp)
        generate(course, names, root=tmp, db_url=sqlite_url(tmp / "gradebook.db"))
        return {
            name: compare_trees(tmp / RELEASE_DIR / name, course.release_dir / name)
            for name in names
        }
