"""``llmcourse autograde --cluster``: the same grades from a real Dask scheduler and two workers.

The slow test starts ``dask scheduler`` and two ``dask worker`` processes on
loopback, grades a small batch of the fixture course there and on the local
pool, kills the worker that grades one student in the middle of the batch, and
checks that every grade is the local pool's, to the point. The fast tests
check the bundle round trip, the retry-once rule on an in-process cluster, and
the errors that stop a run before anyone is graded.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import cluster
from llmcourse.grading.autograde import autograde
from llmcourse.grading.course import Course, GradingError
from llmcourse.grading.execution import nbgrader_meta
from llmcourse.grading.report import Row
from llmcourse.grading.run import RunSettings
from llmcourse.grading.stage import Job

FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
SOURCE = FIXTURE / "solutions" / "00_smoke" / "arith.ipynb"
RELEASED = FIXTURE / "exercises" / "00_smoke" / "arith.ipynb"
DASK = Path(sys.executable).parent / "dask"
SLOW_CELL = "import time\ntime.sleep(6)"


# ----------------------------------------------------------------------------
# submissions
# ----------------------------------------------------------------------------
def _notebook(answers: dict[str, str] | None = None, extra: str | None = None):
    """The released notebook with the solution's answers, some replaced by ``answers``."""
    source, nb = nbformat.read(str(SOURCE), 4), nbformat.read(str(RELEASED), 4)
    solved = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
    solved.update(answers or {})
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in solved:
            cell.source = solved[nbgrader_meta(cell)["grade_id"]]
    if extra:
        nb.cells.insert(1, nbformat.v4.new_code_cell(extra))
    return nb


def make_batch(subs: Path) -> None:
    """Full marks, a wrong answer, a slow full-marks notebook, a file that is no notebook."""
    notebooks = {
        "ada": _notebook(),
        "grace": _notebook({"add_answer": "def add(a, b):\n    return int(a) + int(b)"}),
        "slow": _notebook(extra=SLOW_CELL),
    }
    for student, nb in notebooks.items():
        (subs / student / "00_smoke").mkdir(parents=True)
        nbformat.write(nb, str(subs / student / "00_smoke" / "arith.ipynb"))
    (subs / "broken" / "00_smoke").mkdir(parents=True)
    (subs / "broken" / "00_smoke" / "arith.ipynb").write_text("{not json")


def _grades(out: Path) -> dict[str, tuple[str, str, str]]:
    with open(out / "grades.csv", newline="") as fh:
        return {r["student_id"]: (r["score"], r["max_score"], r["status"]) for r in csv.DictReader(fh)}


# ----------------------------------------------------------------------------
# a real scheduler and two workers on loopback
# ----------------------------------------------------------------------------
class DaskCluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.file = folder / "scheduler.json"
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
        self.scheduler = self._start(env, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", str(self.file))
        deadline = time.monotonic() + 60
        while not self.file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = {name: self._worker(env, name) for name in ("w0", "w1")}

    def _start(self, env: dict, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{args[0]}-{len(list(self.folder.glob('*.log')))}.log", "wb")
        return subprocess.Popen([str(DASK), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _worker(self, env: dict, name: str) -> subprocess.Popen:
        return self._start(env, "worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
                           "--no-dashboard", "--local-directory", str(self.folder / name))

    def wait_for_workers(self, client, n: int) -> None:
        client.wait_for_workers(n, timeout=120)

    def kill(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=30)

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def _kill_the_worker_grading(dask: DaskCluster, student: str, seen: dict) -> None:
    """Wait until ``student``'s job runs on a worker, then kill that worker."""
    from distributed import Client

    with Client(dask.address, timeout=30, set_as_default=False) as client:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any(f"grade-{student}-" in str(key) for key in keys):
                    info = client.scheduler_info()["workers"].get(address, {})
                    time.sleep(2)  # let it start the notebook
                    seen["killed"] = info.get("name")
                    dask.kill(info["name"])
                    return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """The same submissions graded by the local pool and by the cluster, one worker killed midway."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("cluster")
    make_batch(tmp / "subs")
    course = Course.load(FIXTURE)
    flags = dict(timeout=30, student_timeout=180)
    local = autograde(course, tmp / "subs", tmp / "local", jobs=2, **flags)
    dask = DaskCluster(tmp)
    try:
        with Client(dask.address, timeout=30, set_as_default=False) as client:
            dask.wait_for_workers(client, 2)
        seen: dict = {}
        killer = threading.Thread(target=_kill_the_worker_grading, args=(dask, "slow", seen))
        killer.start()
        remote = autograde(course, tmp / "subs", tmp / "remote", cluster=dask.address, **flags)
        killer.join(timeout=60)
        yield {"local": local, "remote": remote, "tmp": tmp, "killed": seen.get("killed")}
    finally:
        dask.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cluster_gives_the_local_pools_grades_with_a_worker_killed(batches):
    tmp = batches["tmp"]
    assert batches["killed"] in {"w0", "w1"}, "the slow student's worker was never seen at work"
    local, remote = _grades(tmp / "local"), _grades(tmp / "remote")
    assert remote == local
    assert local["ada"][:2] == ("3", "3") and local["grace"][:2] == ("2", "3")
    assert local["slow"][:2] == ("3", "3")
    assert local["broken"][2].startswith("malformed notebook")
    assert any("slow/00_smoke" in w and "sending it again" in w for w in batches["remote"].warnings)


@pytest.mark.slow
def test_cluster_outputs_match_the_local_pools(batches):
    tmp = batches["tmp"]
    for kind in ("feedback", "autograded"):
        local = sorted(p.relative_to(tmp / "local" / kind) for p in (tmp / "local" / kind).rglob("*") if p.is_file())
        remote = sorted(p.relative_to(tmp / "remote" / kind) for p in (tmp / "remote" / kind).rglob("*")
                        if p.is_file())
        assert remote == local and local
    results = json.loads((tmp / "remote" / "results.json").read_text())
    cells = {r["student_id"]: r["notebooks"] for r in results["rows"]}
    local_cells = {r["student_id"]: r["notebooks"]
                   for r in json.loads((tmp / "local" / "results.json").read_text())["rows"]}
    for student in cells:
        for nb, grade in cells[student].items():
            assert grade["cells"] == local_cells[student][nb]["cells"], (student, nb)


# ----------------------------------------------------------------------------
# fast: bundles, the retry rule, the checks before grading
# ----------------------------------------------------------------------------
def test_bundle_round_trip_keeps_files_and_refuses_escapes(tmp_path):
    (tmp_path / "job" / "submitted" / "s" / "a").mkdir(parents=True)
    (tmp_path / "job" / "submitted" / "s" / "a" / "n.ipynb").write_text("{}")
    (tmp_path / "job" / "gradebook.db").write_bytes(b"db")
    (tmp_path / "config.py").write_text("c = 1")
    bundle = cluster.pack(tmp_path / "job", extra={"nbgrader_config.py": tmp_path / "config.py"})
    cluster.unpack(bundle, tmp_path / "there")
    got = sorted(str(p.relative_to(tmp_path / "there")) for p in (tmp_path / "there").rglob("*") if p.is_file())
    assert got == ["gradebook.db", "nbgrader_config.py", "submitted/s/a/n.ipynb"]
    only = cluster.pack(tmp_path / "job", only=("gradebook.db",))
    cluster.unpack(only, tmp_path / "only")
    assert [p.name for p in (tmp_path / "only").iterdir()] == ["gradebook.db"]

    import io
    import tarfile

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        cluster.unpack(evil.getvalue(), tmp_path / "evil")
    assert not (tmp_path / "escaped").exists()


def _fake_grade(bundle, student, assignment, notebooks, guard, settings):
    """Stands in for a worker: student 'doomed' always loses its worker, 'unlucky' only the first time."""
    calls = _fake_grade.calls
    calls[student] = calls.get(student, 0) + 1
    if student == "doomed" or (student == "unlucky" and calls[student] == 1):
        raise OSError("worker lost")
    return {"result": {"ok": True, "notebooks": {}, "seconds": 1.0}, "files": cluster.pack(Path(bundle.decode()),
                                                                                              only=())}


def test_a_lost_job_is_sent_again_once_then_reported(tmp_path, monkeypatch):
    from distributed import Client

    _fake_grade.calls = {}
    monkeypatch.setattr(cluster, "grade_bundle", _fake_grade)
    monkeypatch.setattr(cluster, "job_bundle", lambda job, course: str(job.root).encode())
    planned = []
    for student in ("ada", "unlucky", "doomed"):
        (tmp_path / student).mkdir()
        planned.append(Job(row=Row(student_id=student, assignment="00_smoke"), root=tmp_path / student,
                           notebooks=["arith"]))
    warnings, finished = [], []
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        results = cluster.run_jobs_on_cluster(client, planned, Course.load(FIXTURE), RunSettings(30, 60),
                                              lambda job, result: finished.append(job.row.student_id),
                                              warnings.append, in_flight=1)
    assert [job.row.student_id for job, _ in results] == ["ada", "unlucky", "doomed"]
    assert _fake_grade.calls == {"ada": 1, "unlucky": 2, "doomed": 2}
    assert results[0][1]["ok"] and results[1][1]["ok"]
    assert not results[2][1]["ok"] and "lost on the cluster twice" in results[2][1]["error"]
    assert sorted(finished) == ["ada", "doomed", "unlucky"]  # each reported once
    assert sum("sending it again" in w for w in warnings) == 2


def test_an_unreachable_scheduler_stops_the_run_before_grading(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    make_batch(tmp_path / "subs")
    with pytest.raises(GradingError, match="cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'"):
        autograde(Course.load(FIXTURE), tmp_path / "subs", tmp_path / "out", cluster="tcp://127.0.0.1:9")
    assert not (tmp_path / "out" / "grades.csv").exists()


class _Client:
    def __init__(self, facts):
        self.facts = facts

    def run(self, fn, *args):
        return self.facts

    def scheduler_info(self):
        return {"workers": {address: {"nthreads": 2} for address in self.facts}}


def test_workers_that_cannot_grade_are_named_before_grading():
    import llmcourse

    ok = {"version": llmcourse.__version__, "sandbox_problem": None}
    assert cluster.check_workers(_Client({"tcp://a:1": ok, "tcp://b:1": ok}), "bwrap") == 4
    with pytest.raises(GradingError, match="no workers"):
        cluster.check_workers(_Client({}), "bwrap")
    bad = {"tcp://a:1": ok, "tcp://b:1": {"version": "0.0.1", "sandbox_problem": "bubblewrap is not installed"}}
    with pytest.raises(GradingError) as err:
        cluster.check_workers(_Client(bad), "bwrap")
    assert "tcp://b:1: bubblewrap is not installed" in str(err.value)
    assert "tcp://b:1: llmcourse 0.0.1" in str(err.value) and "tcp://a:1" not in str(err.value)


def test_cli_documents_the_cluster_option(capsys):
    from llmcourse.grading import cli

    with pytest.raises(SystemExit):
        cli.main(["autograde", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cluster ADDRESS" in text and "Dask scheduler" in text
    assert shutil.which(str(DASK)), "the dask command comes with the course's dependencies"
