"""``llmcourse autograde --db URL``: the combined gradebook in a real PostgreSQL database.

A module fixture starts a throw-away PostgreSQL cluster in a temporary folder (its
unix socket there, no TCP port; as an unprivileged user when the tests run as
root, since PostgreSQL refuses to run as root) and removes it at the end. Two
students of a two-assignment copy of the fixture course are graded into it, then
one assignment again with other work: the database must hold every grade of
``grades.csv``, the re-run must replace that assignment's grades and keep the
other's, and ``nbgrader export`` must read the same scores back. A URL that is
malformed or cannot be reached stops ``autograde`` before anyone is graded, and a
password is never printed.

``make test`` installs the server programs (``scripts/ensure_postgres.sh``);
without them the tests that need a server are skipped.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import cli
from llmcourse.grading.course import Course
from llmcourse.grading.execution import nbgrader_meta
from llmcourse.grading.write import masked_url

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
FIRST, SECOND = "00_smoke", "01_again"  # the fixture's assignment, and a copy of it
PASSWORD = "never-printed-pw"  # the cluster trusts local connections and ignores it
PORT = 5433  # names the socket file only: the server listens on no TCP port
SETPRIV = "/usr/bin/setpriv"


# ----------------------------------------------------------------------------
# a throw-away PostgreSQL cluster
# ----------------------------------------------------------------------------
def postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: beside ``initdb`` on PATH,
    or Debian's newest ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which("initdb")
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for folder in ([Path(found).resolve().parent] if found else []) + debian:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def server_user() -> tuple[list[str], int, int]:
    """The command prefix that runs the server as an unprivileged user when we are root
    (``postgres`` if Debian's package made it, else ``nobody``), and that user's ids."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    if not Path(SETPRIV).is_file():
        pytest.skip(f"running as root and no {SETPRIV} (util-linux) to run PostgreSQL as another user")
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ([SETPRIV, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"],
                user.pw_uid, user.pw_gid)
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def url(socket_dir: Path, database: str, password: str = PASSWORD) -> str:
    return f"postgresql+psycopg2://llmcourse:{password}@/{database}?host={socket_dir}&port={PORT}"


def run_as(prefix: list[str], cmd: list, cwd: Path) -> None:
    done = subprocess.run(prefix + [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LC_ALL": "C"})
    if done.returncode != 0:
        log = cwd / "server.log"
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}{done.stderr}"
                           + (log.read_text() if log.is_file() else ""))


def create_database(socket_dir: Path, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url(socket_dir, "postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()


@pytest.fixture(scope="module")
def postgres():
    """A running cluster with an empty database ``gradebook``; yields its socket folder."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver) is not installed")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (bash scripts/ensure_postgres.sh)")
    prefix, uid, gid = server_user()
    folder = Path(tempfile.mkdtemp(prefix="llmcourse-pg-"))  # short: a socket path has ~100 bytes
    os.chown(folder, uid, gid)
    data = folder / "data"
    options = (f"-c listen_addresses='' -c unix_socket_directories={folder} -c port={PORT} "
               "-c fsync=off -c full_page_writes=off")
    try:
        run_as(prefix, [bin_dir / "initdb", "-D", data, "-U", "llmcourse", "-A", "trust", "-E", "UTF8",
                        "--locale=C", "--no-sync"], folder)
        run_as(prefix, [bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-o", options,
                        "-w", "-t", "60", "start"], folder)
        create_database(folder, "gradebook")
        yield folder
    finally:
        try:
            if (data / "postmaster.pid").exists():
                subprocess.run(prefix + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                         "stop"], cwd=folder, capture_output=True, timeout=60)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------
# a two-assignment course and three students
# ----------------------------------------------------------------------------
def two_assignment_course(dest: Path) -> Course:
    """The fixture course with its one assignment also copied under a second name."""
    dest.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    for kind in ("solutions", "exercises"):
        shutil.copytree(FIXTURE / kind / FIRST, dest / kind / FIRST)
        shutil.copytree(FIXTURE / kind / FIRST, dest / kind / SECOND)
    return Course.load(dest)


def answered(course: Course, assignment: str, ids: set[str]):
    """The released notebook with the solution's answers to the cells ``ids``."""
    source = nbformat.read(str(course.source_dir / assignment / "arith.ipynb"), 4)
    nb = nbformat.read(str(course.release_dir / assignment / "arith.ipynb"), 4)
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in ids:
            cell.source = answers[nbgrader_meta(cell)["grade_id"]]
    return copy.deepcopy(nb)


WORK = {  # what a student hands in: the answers filled in (3, 1 and 0 of 3 points)
    "full": {"add_answer", "mean_answer"},
    "half": {"add_answer"},
    "none": set(),
}


def submit(course: Course, subs: Path, assignment: str, work: dict[str, str]) -> None:
    """``work``: student -> a key of ``WORK``."""
    for student, kind in work.items():
        folder = subs / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(answered(course, assignment, WORK[kind]), str(folder / "arith.ipynb"))
        (folder / "timestamp.txt").write_text("2025-03-01 12:30:00")


def csv_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as fh:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(fh)}


def gradebook_contents(db_url: str) -> dict[tuple[str, str], dict]:
    """Every submission in the gradebook: its score, maximum, timestamp and per-cell scores."""
    from nbgrader.api import Gradebook

    found = {}
    with Gradebook(db_url, "llmcourse") as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                cells = {(nb.name, grade.name): grade.score for nb in sub.notebooks for grade in nb.grades}
                found[(sub.student.id, assignment.name)] = {
                    "score": sub.score, "max_score": sub.max_score, "timestamp": sub.timestamp, "cells": cells}
    return found


def autograde(course: Course, subs: Path, out: Path, db_url: str, *flags: str) -> int:
    return cli.main(["autograde", str(subs), "--out", str(out), "--course", str(course.root), "--db", db_url,
                     "--timeout", "20", "--student-timeout", "120", *flags])


@pytest.fixture(scope="module")
def graded(postgres, tmp_path_factory):
    """Both assignments graded into PostgreSQL, then the second again with other work."""
    tmp = tmp_path_factory.mktemp("gradebook-db")
    course = two_assignment_course(tmp / "course")
    db_url, out = url(postgres, "gradebook"), tmp / "out"
    first = {"ada": "full", "bob": "half"}
    second = {"ada": "none", "bob": "full"}  # everyone's work changed
    submit(course, tmp / "subs1", FIRST, first)
    submit(course, tmp / "subs1", SECOND, first)
    submit(course, tmp / "subs2", SECOND, second)
    runs = []
    for subs, flags in ((tmp / "subs1", ("--jobs", "2")), (tmp / "subs2", ("--jobs", "1", "-a", SECOND))):
        printed, start = io.StringIO(), time.perf_counter()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = autograde(course, subs, out, db_url, *flags)
        runs.append({"code": code, "seconds": time.perf_counter() - start, "printed": printed.getvalue(),
                     "csv": csv_rows(out / "grades.csv"),
                     "results": json.loads((out / "results.json").read_text()),
                     "db": gradebook_contents(db_url)})
    return {"tmp": tmp, "out": out, "url": db_url, "runs": runs, "first": first, "second": second}


# ----------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------
POINTS = {"full": 3.0, "half": 1.0, "none": 0.0}


@pytest.mark.slow
def test_every_grade_is_in_the_database(graded):
    run = graded["runs"][0]
    assert run["code"] == 0
    assert not (graded["out"] / "gradebook.db").exists(), "the grades went to PostgreSQL instead"
    assert set(run["db"]) == set(run["csv"]) == {(s, a) for s in graded["first"] for a in (FIRST, SECOND)}
    for key, row in run["csv"].items():
        assert row["status"] == "ok"
        assert run["db"][key]["score"] == pytest.approx(float(row["score"]))
        assert run["db"][key]["max_score"] == pytest.approx(float(row["max_score"])) == 3
        assert float(row["score"]) == POINTS[graded["first"][key[0]]]
        assert str(run["db"][key]["timestamp"]).startswith("2025-03-01 12:30:00")
    for row in run["results"]["rows"]:  # and every cell's grade
        want = {(nb, cell): grade["score"] for nb, n in row["notebooks"].items() for cell, grade in n["cells"].items()}
        assert run["db"][(row["student_id"], row["assignment"])]["cells"] == pytest.approx(want)


@pytest.mark.slow
def test_rerun_of_one_assignment_replaces_it_and_keeps_the_other(graded):
    before, after = graded["runs"]
    assert after["code"] == 0
    assert set(after["db"]) == set(before["db"])  # replaced, not added
    for (student, assignment), entry in after["db"].items():
        if assignment == FIRST:
            assert entry == before["db"][(student, assignment)]
        else:
            assert entry["score"] == POINTS[graded["second"][student]]
            assert entry["score"] == pytest.approx(float(after["csv"][(student, assignment)]["score"]))
            assert entry["score"] != before["db"][(student, assignment)]["score"]


@pytest.mark.slow
def test_nbgrader_export_reads_the_grades_back(graded):
    dest = graded["tmp"] / "export.csv"
    nbgrader = Path(sys.executable).parent / "nbgrader"
    done = subprocess.run([str(nbgrader), "export", f"--db={graded['url']}", "--course=llmcourse",
                           f"--to={dest}"], cwd=graded["tmp"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    exported = csv_rows(dest)
    final = csv_rows(graded["out"] / "grades.csv")  # both assignments: the first run's and the re-run's
    assert set(exported) == set(final)
    for key, row in final.items():
        assert float(exported[key]["score"]) == float(row["score"])
        assert float(exported[key]["max_score"]) == float(row["max_score"])


@pytest.mark.slow
def test_summary_names_the_database_and_hides_the_password(graded):
    for run in graded["runs"]:
        assert f"gradebook {masked_url(graded['url'])}" in run["printed"]
        assert PASSWORD not in run["printed"]


# ----------------------------------------------------------------------------
# URLs that cannot work fail before anyone is graded
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "db_url,message",
    [
        (f"postgresql+psycopg2://grader:{PASSWORD}@/gradebook?host=/nonexistent-llmcourse-socket",
         "cannot reach the gradebook database"),
        (f"postgresql+psycopg2://grader:{PASSWORD}@localhost:notaport/gradebook", "is not a database URL"),
        (f"grader:{PASSWORD}@localhost/gradebook", "is not a database URL"),
        ("nosuchdatabase://localhost/gradebook", "is not a database URL"),
    ],
    ids=["unreachable", "bad-port", "no-scheme", "unknown-dialect"],
)
def test_bad_url_fails_fast_with_a_clear_message(tmp_path, capfd, db_url, message):
    course = Course.load(FIXTURE)
    submit(course, tmp_path / "subs", FIRST, {"ada": "full"})
    start = time.perf_counter()
    code = autograde(course, tmp_path / "subs", tmp_path / "out", db_url)
    seconds = time.perf_counter() - start
    captured = capfd.readouterr()
    assert code == 1 and seconds < 10
    assert message in captured.err and "--db " + masked_url(db_url) in captured.err, captured.err
    assert PASSWORD not in captured.out + captured.err
    assert not (tmp_path / "out").exists(), "nothing was graded"


def test_masked_url_hides_passwords():
    assert masked_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert masked_url("postgresql://u@/db?host=/s&password=secret") == "postgresql://u@/db?host=/s&password=***"
    assert masked_url("u:secret@h/db") == "u:***@h/db"
    assert masked_url("postgresql://u@h:5432/db?host=/s") == "postgresql://u@h:5432/db?host=/s"
    assert masked_url("sqlite:////tmp/gradebook.db") == "sqlite:////tmp/gradebook.db"


@pytest.mark.slow
def test_missing_database_on_a_live_server_fails_fast(postgres, tmp_path, capfd):
    db_url = url(postgres, "no_such_gradebook")
    code = cli.main(["autograde", str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
                     "--course", str(FIXTURE), "--db", db_url])
    err = capfd.readouterr().err
    assert code == 1 and "no_such_gradebook" in err and "does not exist" in err and PASSWORD not in err
    assert not (tmp_path / "out").exists()
