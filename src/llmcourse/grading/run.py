"""Grade staged jobs in worker processes, each kernel sandboxed: the "run" stage of ``llmcourse autograde``.

The one entry point is :func:`run_job`: it writes the job file (``job.json``:
the job folder and course root, the student, assignment and notebooks, what the
grading guard watches, and the :class:`RunSettings` with the sandbox user
``uid``), has a :class:`WorkerProcess` (``python -m llmcourse.grading.worker
--serve``) grade it, and returns the worker's ``result.json`` as a dict, or
``{"ok": False, ...}`` with ``killed`` or ``error`` when the worker overran
``--student-timeout`` or stopped without a result. It needs nothing but the job
folder, the course root and a worker, so a cluster worker that has them can call
it too. Inside the worker each kernel runs in the sandbox
(:mod:`llmcourse.grading.sandbox`) under the grading guard
(:mod:`llmcourse.grading.supervisor`, :mod:`llmcourse.grading.guard`).

:func:`run_jobs` grades a batch on this machine (:mod:`llmcourse.grading.cluster`
on many): one worker process per parallel job, driven from a thread pool, each
grading job after job, so nbgrader is imported once per worker rather than once
per student. A plain subprocess, unlike a ``ProcessPoolExecutor`` task, can
be given a hard wall-clock limit: a worker still busy after ``--student-timeout``
seconds is killed with everything it started (:func:`_kill_group`) and the next
job gets a fresh one. Each thread
is a slot with a sandbox user of its own (:func:`llmcourse.grading.sandbox.slot_uid`),
and kernels get ``LLMCOURSE_DEVICE=cpu`` and an equal share of the CPU threads
(:func:`llmcourse.grading.execution.grading_env`).

:func:`check_sandbox` runs before anyone is graded: it stops, saying what to
install or change, unless kernels can run as ``--sandbox`` asks, and warns for
``--sandbox none``.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from llmcourse.grading import sandbox
from llmcourse.grading.course import Course, GradingError
from llmcourse.grading.execution import grading_env
from llmcourse.grading.sandbox import Limits
from llmcourse.grading.stage import Job
from llmcourse.grading.supervisor import DEFAULT_MAX_OUTPUT_MB, SANDBOXES

NO_SANDBOX_WARNING = (
    "--sandbox none: student code runs with your rights, outside any sandbox: it can read "
    "solutions/, the hidden tests, the gradebook and other students' work, use the network, "
    "and change your files. Use it only for submissions you trust")


def check_sandbox(kind: str, warn: Callable[[str], None]) -> None:
    """Stop, saying how to fix it, unless student kernels can run as ``kind`` asks; warn for ``none``."""
    if kind not in SANDBOXES:
        raise GradingError(f"--sandbox must be one of {', '.join(SANDBOXES)}, got {kind!r}")
    if kind == "none":
        warn(NO_SANDBOX_WARNING)
        return
    sandbox.check_available()  # SandboxUnavailable (a GradingError) says what to install or change


@dataclass(frozen=True)
class RunSettings:
    """How every job of one run is graded."""

    timeout: float  # seconds per cell
    student_timeout: float  # seconds per job, then the worker is killed
    feedback_shows_tests: bool = False
    sandbox: str = "bwrap"  # "bwrap" or "none"
    limits: Limits = Limits()
    max_output_mb: float = DEFAULT_MAX_OUTPUT_MB

    def job_fields(self, uid: int) -> dict:
        return {"timeout": self.timeout, "feedback_shows_tests": self.feedback_shows_tests,
                "run": {"sandbox": self.sandbox, "uid": uid, "limits": asdict(self.limits),
                        "max_output_mb": self.max_output_mb}}


def run_job(job: Job, course: Course, settings: RunSettings, worker: WorkerProcess, uid: int) -> dict:
    """Have ``worker`` grade ``job``, its kernels running as user ``uid``; the result."""
    job_file = job.root / "job.json"
    job_file.write_text(json.dumps({
        "root": str(job.root),
        "course_root": str(course.root),
        "student": job.row.student_id,
        "assignment": job.row.assignment,
        "notebooks": job.notebooks,
        "guard": job.guard,
        **settings.job_fields(uid),
    }))
    start = time.perf_counter()
    outcome = worker.run(job_file, settings.student_timeout)
    seconds = time.perf_counter() - start
    if outcome == "killed":
        return {"ok": False, "killed": True, "seconds": seconds}
    result_file = job.root / "result.json"
    if outcome == "died" or not result_file.is_file():
        code = worker.proc.poll()
        return {"ok": False, "error": f"grading process stopped (exit code {code}) without a result",
                "seconds": seconds}
    result = json.loads(result_file.read_text())
    result["seconds"] = seconds
    return result


def run_jobs(planned: list[Job], course: Course, settings: RunSettings, jobs: int,
             tmp: Path, on_done: Callable[[Job, dict], None]) -> list[tuple[Job, dict]]:
    """Grade the jobs on ``jobs`` worker processes; one job's failure is only its own result.

    ``on_done(job, result)`` is called as each job finishes, one call at a time (the progress bar).

    Each worker thread is a slot with a sandbox user of its own (:func:`sandbox.slot_uid`):
    the process limit counts a user's processes, so one student's fork bomb never takes
    another's share, and a killed worker's replacement reuses the slot's user.
    """
    env = dict(os.environ)
    env.update(grading_env(jobs))
    lock = threading.Lock()
    local = threading.local()
    workers: list[WorkerProcess] = []
    slots = [0]

    def work(job: Job) -> tuple[Job, dict]:
        try:
            worker = getattr(local, "worker", None)
            if worker is None or not worker.alive():
                with lock:
                    worker = WorkerProcess(env, tmp / f"worker-{len(workers)}.log")
                    workers.append(worker)
                    if not hasattr(local, "slot"):
                        local.slot, slots[0] = slots[0] % sandbox.SLOTS_PER_RUN, slots[0] + 1
                local.worker = worker
            result = run_job(job, course, settings, worker, sandbox.slot_uid(local.slot))
        except Exception as exc:  # never let one submission stop the batch
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
        with lock:
            on_done(job, result)
        return job, result

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        results = list(pool.map(work, planned))
    except BaseException:  # Ctrl-C: stop every worker now rather than after its job
        for worker in list(workers):
            worker.close(kill=True)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for worker in workers:
        worker.close()
    return results


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[Job, dict], None]]:
    """A tqdm bar on stderr, with rate and ETA, counting graded submissions; yields ``on_done(job, result)``."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="submission", desc="grading", disable=not enabled or total == 0,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def on_done(job: Job, result: dict) -> None:
            bar.set_postfix_str(f"{job.row.student_id}/{job.row.assignment} {result.get('seconds', 0):.1f} s",
                                refresh=False)
            bar.update(1)

        yield on_done


class WorkerProcess:
    """A long-lived ``python -m llmcourse.grading.worker --serve`` process.

    It grades one job at a time. A job that overruns its hard limit gets the
    process killed; the next job starts a fresh one.
    """

    STARTUP_LIMIT = 300.0

    def __init__(self, env: dict, log_path: Path) -> None:
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmcourse.grading.worker", "--serve"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True,
        )
        self._buffer = b""
        self._ready = False
        self._eof = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_line(self, limit: float) -> bytes | None:
        """Next line from the worker; None if it takes longer than ``limit`` s or the worker ends."""
        deadline = time.monotonic() + limit
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._eof = True
                    return None
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def run(self, job_file: Path, limit: float) -> str:
        """Send a job; return ``'done'``, ``'killed'`` (over ``limit`` s) or ``'died'``.

        The clock starts once the worker has finished importing nbgrader, so
        ``limit`` measures grading only.
        """
        if not self._ready:
            if self._read_line(self.STARTUP_LIMIT) != b"ready":
                self.close(kill=True)
                return "died"
            self._ready = True
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{job_file}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return "died"
        if self._read_line(limit) is None:
            if self._eof:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.close(kill=True)
                return "died"
            self.close(kill=True)
            return "killed"
        return "done"

    def close(self, kill: bool = False) -> None:
        if self.alive():
            if kill:
                _kill_group(self.proc)
            else:
                try:
                    self.proc.stdin.close()  # type: ignore[union-attr]
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    _kill_group(self.proc)
        self.log.close()


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a worker and everything it started (its kernels run in their own sessions,
    but exit by themselves once their parent is gone)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
