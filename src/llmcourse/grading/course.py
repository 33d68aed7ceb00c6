"""Where a course lives on disk, and the nbgrader configuration that goes with it.

A *course root* is a directory with ``solutions/<assignment>/<notebook>.ipynb``
(the nbgrader source) and ``exercises/<assignment>/<notebook>.ipynb`` (the
released student version). The repository root is the course root of the real
course; the grading tests also use a tiny course under ``tests/grading_fixtures``.

The nbgrader settings come from ``nbgrader_config.py``: the one in the course
root, or else the nearest one in a parent directory. Commands that work in a
scratch directory load the same file and override only where files and the
gradebook live. ``LLMCourse.due_dates`` there is the course's own setting:
each assignment's due date (:meth:`Course.due_dates`; :mod:`llmcourse.grading.late`
turns it into nbgrader's late penalty).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"
SOURCE_DIR = "solutions"
RELEASE_DIR = "exercises"
# Directory names that never hold an assignment or a student.
IGNORED_NAMES = {".ipynb_checkpoints", "__pycache__", ".git", ".DS_Store", ".nbgrader"}


class GradingError(Exception):
    """A problem the instructor has to fix (bad path, unknown assignment, ...)."""


def is_ignored_name(name: str) -> bool:
    """Hidden entries, editor checkpoints and caches are never course content."""
    return name in IGNORED_NAMES or name.startswith(".") or name.startswith("__")


def load_config(config_file: Path) -> Config:
    """The settings of ``nbgrader_config.py``; a file that does not load raises :class:`GradingError`."""
    loader = PyFileConfigLoader(config_file.name, path=str(config_file.parent))
    try:
        return loader.load_config()
    except Exception as exc:  # a broken config file is the instructor's to fix
        raise GradingError(f"could not load {config_file}: {exc}") from exc


def find_config_file(start: Path) -> Path | None:
    """``nbgrader_config.py`` in ``start`` or its nearest parent directory."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def find_course_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) that holds a course.

    Falls back to the repository this package was installed from (editable
    install), so ``llmcourse`` works from any subdirectory of the repository.
    """
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file() and (directory / SOURCE_DIR).is_dir():
            return directory
    repo = Path(__file__).resolve().parents[3]
    if (repo / CONFIG_FILE).is_file() and (repo / SOURCE_DIR).is_dir():
        return repo
    raise GradingError(
        f"no course found: expected a directory containing {CONFIG_FILE} and {SOURCE_DIR}/ "
        f"at or above {start}; pass --course DIR"
    )


@dataclass
class Course:
    """A course root plus the nbgrader configuration that applies to it."""

    root: Path
    config_file: Path
    base_config: Config = field(repr=False)

    @classmethod
    def load(cls, root: Path | str | None = None) -> "Course":
        course_root = Path(root).resolve() if root is not None else find_course_root()
        if not course_root.is_dir():
            raise GradingError(f"course directory {course_root} does not exist")
        if not (course_root / SOURCE_DIR).is_dir():
            raise GradingError(f"{course_root} has no {SOURCE_DIR}/ directory (not a course root)")
        config_file = find_config_file(course_root)
        if config_file is None:
            raise GradingError(f"no {CONFIG_FILE} found in {course_root} or any parent directory")
        return cls(root=course_root, config_file=config_file, base_config=load_config(config_file))

    # -- layout -------------------------------------------------------------
    @property
    def source_dir(self) -> Path:
        return self.root / SOURCE_DIR

    @property
    def release_dir(self) -> Path:
        return self.root / RELEASE_DIR

    def assignments(self) -> list[str]:
        """Every assignment in ``solutions/`` that holds at least one notebook, sorted."""
        found = []
        for entry in sorted(self.source_dir.iterdir()):
            if entry.is_dir() and not is_ignored_name(entry.name) and self.notebooks(entry.name):
                found.append(entry.name)
        return found

    def notebooks(self, assignment: str) -> list[str]:
        """Notebook names (without ``.ipynb``) of one assignment, sorted."""
        directory = self.source_dir / assignment
        if not directory.is_dir():
            return []
        return sorted(p.stem for p in directory.glob("*.ipynb") if not is_ignored_name(p.name))

    def resolve_assignments(self, requested: Iterable[str] | None) -> list[str]:
        """Check names given on the command line; ``None`` or empty means all of them."""
        known = self.assignments()
        requested = [a.strip("/") for a in (requested or []) if a]
        if not requested:
            if not known:
                raise GradingError(f"no assignments found in {self.source_dir}")
            return known
        unknown = [a for a in requested if a not in known]
        if unknown:
            choices = ", ".join(known) or "(none)"
            raise GradingError(
                f"unknown assignment {', '.join(map(repr, unknown))}: "
                f"{self.source_dir} has {choices}"
            )
        return requested

    # -- configuration ------------------------------------------------------
    def config(
        self,
        root: Path | str | None = None,
        db_url: str | None = None,
        timeout: float | None = None,
    ) -> Config:
        """nbgrader config for this course, optionally re-rooted in a scratch directory.

        ``root`` moves the whole nbgrader tree (``solutions/``, ``exercises/``,
        ``submitted/``, ...); ``db_url`` picks another gradebook; ``timeout``
        overrides the per-cell execution limit in seconds.
        """
        cfg = copy.deepcopy(self.base_config)
        root = Path(root).resolve() if root is not None else self.root
        cfg.CourseDirectory.root = str(root)
        cfg.CourseDirectory.source_directory = SOURCE_DIR
        cfg.CourseDirectory.release_directory = RELEASE_DIR
        if db_url is None:
            if root == self.config_file.parent and "db_url" in cfg.CourseDirectory:
                db_url = cfg.CourseDirectory.db_url
            else:
                db_url = sqlite_url(root / ".nbgrader" / "gradebook.db")
        cfg.CourseDirectory.db_url = db_url
        if timeout is not None:
            cfg.Execute.timeout = int(max(1, round(timeout)))
        return cfg

    def cell_timeout(self) -> int:
        value = self.base_config.get("Execute", {}).get("timeout", 30)
        return int(value) if value else 30

    def due_dates(self) -> dict[str, datetime]:
        """``LLMCourse.due_dates`` from ``nbgrader_config.py``: ``{assignment: due date in UTC}``.

        Raises :class:`GradingError` naming the setting when it is not a dict, names an
        assignment ``solutions/`` does not have, or holds a value that is no date.
        """
        where = f"in {self.config_file}"
        raw = self.base_config.LLMCourse.get("due_dates", {}) if "LLMCourse" in self.base_config else {}
        if not isinstance(raw, dict):
            raise GradingError(f"LLMCourse.due_dates {where} must be a dict {{assignment: date}}, "
                               f"got a {type(raw).__name__}")
        known = self.assignments()
        dates = {}
        for name, value in raw.items():
            if name not in known:
                raise GradingError(f"LLMCourse.due_dates {where} names unknown assignment {name!r}: "
                                   f"{self.source_dir} has {', '.join(known) or '(none)'}")
            try:
                dates[name] = parse_date(value)
            except ValueError as exc:
                raise GradingError(f"LLMCourse.due_dates[{name!r}] {where}: {exc}") from None
        return dates


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(value: object) -> datetime:
    """A due date as nbgrader reads dates (UTC unless it names a zone), from a text that
    starts with the date (``"2027-01-15 23:59:59 UTC"``); raises ValueError saying why not."""
    import dateutil.tz
    from nbgrader.utils import parse_utc

    example = "write it like '2027-01-15 23:59:59 UTC' or '2027-01-15T23:59:59+01:00'"
    if isinstance(value, datetime):
        return parse_utc(value)
    if not isinstance(value, str) or not ISO_DATE.match(value.strip()):
        raise ValueError(f"{value!r} is not a date ({example})")
    parts = value.strip().split(" ")
    if len(parts) == 3 and dateutil.tz.gettz(parts[2]) is None:  # nbgrader would quietly read it as UTC
        raise ValueError(f"{value!r} names no known time zone ({example})")
    try:
        return parse_utc(value.strip())
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not a date: {exc} ({example})") from None


def sqlite_url(path: Path | str) -> str:
    return "sqlite:///" + str(Path(path).resolve())


def normalized_notebook_json(path: Path | str) -> Any:
    """A notebook's JSON, ready for comparing two generations of the same file.

    nbgrader's generation is deterministic once ``NormalizeNotebook`` has run, so
    this only evens out what a text editor or git may change without meaning:
    line splitting of ``source`` and the trailing newline.
    """
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    for cell in nb.get("cells", []):
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    return nb
