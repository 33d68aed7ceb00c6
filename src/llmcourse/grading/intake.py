"""Reading the submissions folder, which is untrusted input (the first stage of ``autograde``).

``SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb`` is made by students, or
unpacked from archives they made, so it is read as hostile:

* **Nothing is followed.** A student folder, assignment folder or file that is a
  symbolic link is reported, never opened. Every path is opened one component at
  a time, relative to the folder above it and with ``O_NOFOLLOW``, so a link
  swapped in after the check is not followed either.
* **Only plain files are read.** A hard link (which may be the instructor's
  solution notebook, or another student's), a named pipe (which would block its
  reader forever), a device or a socket is reported and never opened.
* **Nothing is read whole that is too big.** A notebook over the size cap
  (``--max-notebook-mb``) is refused from its size; no read ever asks for more
  than the cap. JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused before
  nbformat sees it (and a recursion error from the JSON parser is a status too).
* **Names are checked before they become paths.** A folder whose name is not a
  valid student id (:func:`student_id_problem`) gets a row under a printable
  form of its name (:func:`printable`) and nothing else: no gradebook entry, no
  output folder named after it. Every untrusted name in a message is printable.
* ``timestamp.txt`` must be a short date that nbgrader can read.

Each problem becomes a ``status`` string of one student and assignment (see
README, "For instructors"); every other student is graded as usual.
:func:`scan_submissions` is the stage's entry point: the students found and the
assignments to grade; :func:`select_students` keeps those named by ``--student``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import nbformat

from llmcourse.grading.course import Course, GradingError, is_ignored_name

MB = 1024 * 1024
DEFAULT_MAX_NOTEBOOK_MB = 20.0  # a course notebook with its plots is well under 5 MB
MAX_JSON_DEPTH = 64  # a notebook nests about 6 levels; widget state and JSON outputs a few more
MAX_ID_LENGTH = 64
TIMESTAMP_BYTES = 200
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# ----------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------
def printable(name: str, limit: int = 80) -> str:
    """``name`` with control and non-ASCII characters escaped, cut to ``limit`` characters."""
    text = name.encode("unicode_escape", errors="backslashreplace").decode("ascii")
    return text if len(text) <= limit else f"{text[:limit]}...({len(name)} characters)"


def shown_id(name: str) -> str:
    """How a folder name that is no valid student id appears in ``grades.csv``: printable,
    and never starting like a spreadsheet formula (``=``, ``+``, ``-``, ``@``)."""
    text = printable(name)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def student_id_problem(name: str) -> str | None:
    """Why ``name`` cannot be a student id (it becomes a gradebook key and a folder name), or None."""
    if len(name) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if not name.isprintable():
        return "holds control or unprintable characters"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if ".." in name:
        return "holds '..'"
    if not STUDENT_ID.fullmatch(name):
        return "may hold only letters, digits, '_', '.', '@' and '-', starting with a letter or digit"
    return None


# ----------------------------------------------------------------------------
# what is on disk, without following anything
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One directory entry, as ``lstat`` sees it."""

    name: str
    mode: int
    links: int
    size: int

    @property
    def kind(self) -> str:
        return kind_of(self.mode)

    @property
    def is_folder(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "folder"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def unsafe_reason(entry: Entry, want: str) -> str | None:
    """Why ``entry`` must not be opened as a ``want`` (``'file'`` or ``'folder'``), or None."""
    if want == "folder" and entry.is_folder:
        return None
    if want == "file" and entry.is_file:
        if entry.links > 1:
            return f"has {entry.links} hard links (it may be another file, such as a solution notebook)"
        return None
    if stat.S_ISLNK(entry.mode):
        return "is a symbolic link"
    return f"is a {entry.kind}, not a {want}"


def shown_path(parts: Sequence[str]) -> str:
    return "/".join(printable(part) for part in parts)


class Refused(Exception):
    """A file that was not read; ``kind`` is ``'unsafe file'`` or ``'too large'``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def _open_folder(root: Path, parts: Sequence[str]) -> int:
    """A file descriptor for ``root/parts...``, following no symbolic link below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_folder(root: Path, parts: Sequence[str] = ()) -> list[Entry]:
    """The entries of ``root/parts...``, sorted by name, none of them followed."""
    fd = _open_folder(root, parts)
    try:
        entries = []
        with os.scandir(fd) as found:
            for item in found:
                st = item.stat(follow_symlinks=False)
                entries.append(Entry(item.name, st.st_mode, st.st_nlink, st.st_size))
    finally:
        os.close(fd)
    return sorted(entries, key=lambda e: e.name)


def _open_file(root: Path, parts: Sequence[str], max_bytes: int) -> tuple[int, os.stat_result]:
    """An open descriptor for the plain file ``root/parts...`` and its ``lstat``; raises :class:`Refused`."""
    *folders, name = parts
    shown = shown_path(parts)
    try:
        dir_fd = _open_folder(root, folders)
    except OSError as exc:
        raise Refused("unsafe file", f"the folder of {shown} cannot be opened ({exc.strerror})") from None
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        reason = unsafe_reason(Entry(name, st.st_mode, st.st_nlink, st.st_size), "file")
        if reason:
            raise Refused("unsafe file", f"{shown} {reason}; not opened")
        if st.st_size > max_bytes:
            raise Refused("too large", f"{shown} is {st.st_size / MB:.1f} MB")
        return os.open(name, _FILE_FLAGS, dir_fd=dir_fd), st
    except OSError as exc:
        raise Refused("unsafe file", f"{shown} cannot be opened ({exc.strerror})") from None
    finally:
        os.close(dir_fd)


def read_file(root: Path, parts: Sequence[str], max_bytes: int) -> bytes:
    """The bytes of the plain file ``root/parts...``; raises :class:`Refused` instead of reading
    anything else.

    The file is checked by name and once more through the opened descriptor (a
    file swapped in between is refused), and at most ``max_bytes + 1`` bytes are read.
    """
    fd, before = _open_file(root, parts, max_bytes)
    shown = shown_path(parts)
    try:
        now = os.fstat(fd)
        if (now.st_ino, now.st_dev) != (before.st_ino, before.st_dev) or unsafe_reason(
                Entry(parts[-1], now.st_mode, now.st_nlink, now.st_size), "file"):
            raise Refused("unsafe file", f"{shown} changed while it was opened; not read")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(MB, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > max_bytes:
        raise Refused("too large", f"{shown} grew past {max_bytes / MB:.1f} MB while it was read")
    return b"".join(chunks)


# ----------------------------------------------------------------------------
# notebooks and timestamps
# ----------------------------------------------------------------------------
def nesting_depth(value: Any, limit: int) -> int:
    """How deep lists and dicts nest in ``value``; counting stops just past ``limit``."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if not isinstance(item, (list, dict)):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_notebook(raw: bytes, name: str) -> tuple[Any | None, str | None]:
    """A notebook from its bytes; or ``(None, why it is malformed)``."""
    shown = printable(name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{shown} is not UTF-8 text"
    try:
        data = json.loads(text)
    except RecursionError:
        return None, f"{shown} is JSON nested too deeply to read (more than {MAX_JSON_DEPTH} levels)"
    except ValueError as exc:
        return None, f"{shown} is not valid JSON ({str(exc)[:160]})"
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        kind = type(data).__name__
        return None, f"{shown} is JSON but not a Jupyter notebook (a {kind} without 'cells')"
    depth = nesting_depth(data, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        return None, f"{shown} is JSON nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{shown} is not a valid Jupyter notebook ({first[:160]})"
    return nb, None


def read_notebook(root: Path, parts: Sequence[str], max_mb: float) -> tuple[Any | None, bytes | None, str | None]:
    """``(notebook, its bytes, None)``, or ``(None, None, status)`` saying why it is not graded."""
    try:
        raw = read_file(root, parts, int(max_mb * MB))
    except Refused as exc:
        if exc.kind == "too large":
            return None, None, (f"notebook too large: {exc.detail}, over the {max_mb:g} MB limit "
                                "(--max-notebook-mb); not read")
        return None, None, str(exc)
    nb, problem = parse_notebook(raw, parts[-1])
    if problem:
        return None, None, f"malformed notebook: {problem}"
    return nb, raw, None


def read_timestamp(root: Path, parts: Sequence[str]) -> tuple[str | None, str | None]:
    """The submission time in ``timestamp.txt``, checked with nbgrader's own parser; or ``(None, status)``."""
    from nbgrader.utils import parse_utc

    try:
        raw = read_file(root, parts, TIMESTAMP_BYTES)
    except Refused as exc:
        kind = "bad timestamp" if exc.kind == "too large" else exc.kind
        return None, f"{kind}: {exc.detail}; submission time ignored"
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parse_utc(text)
    except Exception:
        return None, (f"bad timestamp: {shown_path(parts)} holds '{printable(text, 40)}', not a date; "
                      "submission time ignored")
    return text or None, None


# ----------------------------------------------------------------------------
# the submissions folder
# ----------------------------------------------------------------------------
@dataclass
class StudentFolder:
    """One entry of the submissions folder that stands for a student."""

    name: str  # as on disk; a path component only when ``valid_id``
    problem: str | None = None  # why none of this student's work is graded
    valid_id: bool = True
    assignments: dict[str, str | None] = field(default_factory=dict)  # submitted -> problem or None

    @property
    def student_id(self) -> str:
        return self.name if self.valid_id else shown_id(self.name)


def scan(submissions: Path, known: Iterable[str], wanted: set[str] | None,
         warn: Callable[[str], None]) -> list[StudentFolder]:
    """Every student in ``submissions`` and the assignments each submitted; warn about the rest."""
    known = set(known)
    try:
        entries = list_folder(submissions)
    except OSError as exc:
        raise GradingError(f"cannot read the submissions folder {submissions}: {exc.strerror}") from exc
    students = []
    for entry in entries:
        shown = printable(entry.name)
        if is_ignored_name(entry.name):
            warn(f"ignoring {submissions / shown} (hidden or editor folder)")
        elif entry.is_file or not (entry.is_folder or stat.S_ISLNK(entry.mode)):
            warn(f"ignoring {submissions / shown}: a {entry.kind} (expected one folder per student)")
        else:
            students.append(_student(submissions, entry, known, wanted, warn))
    return students


def _student(submissions: Path, entry: Entry, known: set[str], wanted: set[str] | None,
             warn: Callable[[str], None]) -> StudentFolder:
    problem = student_id_problem(entry.name)
    if problem:
        return StudentFolder(entry.name, f"invalid student id: '{printable(entry.name)}' {problem} "
                                         "(not graded; rename the folder)", valid_id=False)
    reason = unsafe_reason(entry, "folder")
    if reason:
        return StudentFolder(entry.name, f"unsafe file: {entry.name}/ {reason}; not opened")
    student = StudentFolder(entry.name)
    try:
        subs = list_folder(submissions, (entry.name,))
    except OSError as exc:
        student.problem = f"unsafe file: {entry.name}/ cannot be opened ({exc.strerror})"
        return student
    for sub in subs:
        shown = f"{entry.name}/{printable(sub.name)}"
        if is_ignored_name(sub.name):
            warn(f"ignoring {submissions / shown} (hidden or editor folder)")
        elif sub.name not in known:
            warn(f"ignoring {submissions / shown}: no assignment of that name "
                 f"(expected {entry.name}/<assignment>/<notebook>.ipynb)")
        elif wanted is not None and sub.name not in wanted:
            continue
        elif sub.is_file:
            warn(f"ignoring {submissions / shown}: a file, not an assignment folder")
        else:
            reason = unsafe_reason(sub, "folder")
            student.assignments[sub.name] = f"unsafe file: {shown}/ {reason}; not opened" if reason else None
    return student


def scan_submissions(
    course: Course, submissions: Path, assignments: Iterable[str] | None, warn: Callable[[str], None]
) -> tuple[list[StudentFolder], list[str]]:
    """The students in ``submissions`` (see :func:`scan`) and the assignments to grade."""
    if not submissions.exists():
        raise GradingError(f"submissions folder {submissions} does not exist")
    if not submissions.is_dir():
        raise GradingError(f"submissions path {submissions} is not a folder")
    wanted = set(course.resolve_assignments(assignments)) if assignments else None
    students = scan(submissions, course.assignments(), wanted, warn)
    if not students:
        raise GradingError(
            f"no student folders in {submissions} "
            "(expected SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb)"
        )
    names = sorted(wanted) if wanted is not None else sorted({a for s in students for a in s.assignments})
    if not names:
        raise GradingError(
            f"no submissions for any assignment of the course in {submissions}; "
            f"assignments are: {', '.join(course.assignments()) or '(none)'}"
        )
    return students, names


def select_students(found: list[StudentFolder], wanted: Iterable[str] | None,
                    submissions: Path) -> list[StudentFolder]:
    """The students of ``found`` named in ``wanted`` (``--student``); all of them for None or none.

    Raises :class:`GradingError` for a name that is no valid student id (with the same
    reason a folder of that name would get) or that has no folder in ``submissions``:
    a mistyped id must not become a 'missing submission' row that replaces a real grade.
    """
    wanted = list(dict.fromkeys(wanted or []))
    if not wanted:
        return found
    for name in wanted:
        problem = student_id_problem(name)
        if problem:
            raise GradingError(f"invalid student id: --student '{printable(name)}' {problem}")
    present = {student.name for student in found if student.valid_id}
    absent = [name for name in wanted if name not in present]
    if absent:
        raise GradingError(f"--student {', '.join(absent)}: no such student folder in {submissions} "
                           "(expected SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb)")
    return [student for student in found if student.valid_id and student.name in wanted]
