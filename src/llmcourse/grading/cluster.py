"""Grade on many machines: the "run" stage of ``llmcourse autograde --cluster ADDRESS``.

The jobs go to an existing Dask distributed scheduler; Dask's own deployment
tools (Kubernetes, Slurm, plain SSH, ``dask worker`` by hand) run the workers, so
the course writes no cluster code. A worker needs the course package and
bubblewrap installed, as the grading machine does, and nothing else: no shared
file system.

Each job travels as a **bundle**, a gzipped tar of its scratch folder (the
student's checked notebooks and ``timestamp.txt``, the assignment's gradebook
and support files, the course's ``nbgrader_config.py``), plus the
:class:`~llmcourse.grading.run.RunSettings`. On the worker,
:func:`grade_bundle` unpacks it into a private temporary folder, grades it with
:func:`~llmcourse.grading.run.run_job` exactly as the local pool does (sandboxed
kernels, the grading guard, the per-student time limit), and sends back the
result as plain JSON plus the files it made (executed notebooks, feedback pages,
the log). The parent unpacks those into the job folder, so collecting and
writing the grades is the same code for both routes, and the parent alone
writes the gradebook: a grade cannot be recorded twice.

A job whose worker dies (killed, out of memory, machine gone) is sent again,
once, to whichever worker is free; if that fails too, the row says so and every
other student's grade is still recorded. The scheduler may itself re-run a
task whose worker died, up to its ``distributed.scheduler.allowed-failures``
setting, before it reports the loss; set it to 0 to leave the one retry to us.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import tarfile
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

from llmcourse.grading import sandbox
from llmcourse.grading.course import Course, GradingError
from llmcourse.grading.execution import grading_env
from llmcourse.grading.report import Row
from llmcourse.grading.run import RunSettings, WorkerProcess, run_job
from llmcourse.grading.stage import Job

CONNECT_TIMEOUT = 20  # seconds to reach the scheduler
RETURNED = ("autograded", "feedback", "worker.log")  # what a worker sends back from the job folder


# ----------------------------------------------------------------------------
# bundles: a folder <-> bytes
# ----------------------------------------------------------------------------
def pack(folder: Path, extra: dict[str, Path] | None = None, only: tuple[str, ...] | None = None) -> bytes:
    """A gzipped tar of ``folder`` (just its entries named in ``only``, when given) plus ``extra`` files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in sorted(folder.iterdir()):
            if only is None or entry.name in only:
                tar.add(entry, arcname=entry.name)
        for name, path in (extra or {}).items():
            tar.add(path, arcname=name)
    return buffer.getvalue()


def unpack(bundle: bytes, folder: Path) -> None:
    """Extract a bundle into ``folder``: regular files and folders only, nothing outside it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def job_bundle(job: Job, course: Course) -> bytes:
    """Everything a worker needs to grade ``job``, and nothing of any other student."""
    return pack(job.root, extra={"nbgrader_config.py": course.config_file})


# ----------------------------------------------------------------------------
# the worker's side
# ----------------------------------------------------------------------------
_local = threading.local()  # per Dask worker thread: a sandbox slot and a grading process
_slots = iter(range(sandbox.SLOTS_PER_RUN))
_slots_lock = threading.Lock()


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _grading_process(scratch: Path) -> WorkerProcess:
    """This thread's long-lived grading process (a fresh one if the last was killed)."""
    worker = getattr(_local, "worker", None)
    if worker is None or not worker.alive():
        env = {**os.environ, **grading_env(_worker_threads())}
        worker = _local.worker = WorkerProcess(env, scratch / "grading-process.log")
    return worker


def _slot() -> int:
    if not hasattr(_local, "slot"):
        with _slots_lock:
            _local.slot = next(_slots)
    return _local.slot


def grade_bundle(bundle: bytes, student: str, assignment: str, notebooks: list[str], guard: dict,
                 settings: RunSettings) -> dict:
    """Grade one bundled job on this machine: ``{"result": ..., "files": {path: bytes}}``.

    Runs in a Dask worker. The job is unpacked into a private temporary folder
    that is removed afterwards; the kernels run in the sandbox as this thread's
    own user, under ``settings``' limits.
    """
    scratch = Path(tempfile.gettempdir()) / f"llmcourse-cluster-{os.getpid()}"
    scratch.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-", dir=scratch) as tmp:
        root = Path(tmp)
        unpack(bundle, root)
        job = Job(row=Row(student_id=student, assignment=assignment), root=root,
                  notebooks=list(notebooks), guard=dict(guard))
        result = run_job(job, Course.load(root), settings, _grading_process(scratch), sandbox.slot_uid(_slot()))
        for info in result.get("notebooks", {}).values():
            if info.get("feedback"):  # a path on this machine: send it relative to the job folder
                info["feedback"] = str(Path(info["feedback"]).relative_to(root))
        return {"result": result, "files": pack(root, only=RETURNED)}


def worker_facts(sandbox_kind: str) -> dict:
    """What the parent checks on every worker before sending any job."""
    import llmcourse

    problem = None
    if sandbox_kind == "bwrap":
        try:
            sandbox.check_available()
        except GradingError as exc:
            problem = str(exc)
    return {"version": llmcourse.__version__, "sandbox_problem": problem}


# ----------------------------------------------------------------------------
# the parent's side
# ----------------------------------------------------------------------------
def connect(address: str):
    """A Dask client of the scheduler at ``address``, or a GradingError that says why not."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency of the course
        raise GradingError("--cluster needs Dask's 'distributed' package: pip install distributed") from exc
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise GradingError(f"--cluster: cannot reach a Dask scheduler at {address!r} "
                           f"within {CONNECT_TIMEOUT} s ({type(exc).__name__}: {exc})") from exc


def check_workers(client, sandbox_kind: str) -> int:
    """The number of workers' threads; a GradingError unless every worker can grade as asked."""
    import llmcourse

    facts = client.run(worker_facts, sandbox_kind)
    if not facts:
        raise GradingError("--cluster: the scheduler has no workers; start some with `dask worker ADDRESS`")
    problems = [f"{address}: {fact['sandbox_problem']}" for address, fact in sorted(facts.items())
                if fact["sandbox_problem"]]
    problems += [f"{address}: llmcourse {fact['version']} (this machine has {llmcourse.__version__})"
                 for address, fact in sorted(facts.items()) if fact["version"] != llmcourse.__version__]
    if problems:
        raise GradingError("--cluster: these workers cannot grade:\n  " + "\n  ".join(problems))
    return sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())


def _submit(client, job: Job, bundle: bytes, settings: RunSettings, attempt: int):
    key = f"grade-{job.row.student_id}-{job.row.assignment}-{attempt}-{uuid.uuid4().hex[:8]}"
    return client.submit(grade_bundle, bundle, job.row.student_id, job.row.assignment, job.notebooks,
                         job.guard, settings, key=key, pure=False, retries=0)


def _receive(job: Job, payload: dict) -> dict:
    """Unpack a worker's files into the job folder; its result, with local paths."""
    unpack(payload["files"], job.root)
    result = payload["result"]
    for info in result.get("notebooks", {}).values():
        if info.get("feedback"):
            info["feedback"] = str(job.root / info["feedback"])
    return result


@contextlib.contextmanager
def cluster_session(address: str | None, sandbox_kind: str) -> Iterator[tuple[object | None, int]]:
    """``(client, worker threads)`` for ``--cluster address``, checked before anyone is graded;
    ``(None, 0)`` without an address. The client is closed on leaving."""
    if address is None:
        yield None, 0
        return
    client = connect(address)
    try:
        yield client, check_workers(client, sandbox_kind)
    finally:
        client.close()


def run_jobs_on_cluster(client, planned: list[Job], course: Course, settings: RunSettings,
                        on_done: Callable[[Job, dict], None], warn: Callable[[str], None],
                        in_flight: int = 64) -> list[tuple[Job, dict]]:
    """Grade the jobs on the Dask cluster of ``client``; the results in ``planned``'s order.

    At most ``in_flight`` bundles are out at a time (a new one is sent as each
    comes back), so memory stays flat however large the batch. A job whose worker
    is lost is sent once more (and ``warn`` says so); a second loss is that job's
    ``error``, and the batch goes on. ``on_done(job, result)`` is called once per
    job, as each finishes.
    """
    from distributed import as_completed

    bundles: dict[int, bytes] = {}
    pending: dict = {}  # future -> (job index, attempt)
    results: dict[int, dict] = {}
    batch = as_completed([], loop=client.loop)

    def finish(i: int, result: dict) -> None:
        bundles.pop(i, None)
        results[i] = result
        on_done(planned[i], result)

    def send(i: int, attempt: int) -> None:
        try:
            if i not in bundles:
                bundles[i] = job_bundle(planned[i], course)
            future = _submit(client, planned[i], bundles[i], settings, attempt)
        except Exception as exc:  # the scheduler is gone: this job is reported, the others go on
            finish(i, _lost(f"could not be sent to the cluster ({type(exc).__name__}: {exc})"))
            return
        pending[future] = (i, attempt)
        batch.add(future)

    waiting = iter(range(len(planned)))
    for i in itertools.islice(waiting, max(1, in_flight)):
        send(i, 0)
    for future in batch:
        i, attempt = pending.pop(future)
        for nxt in itertools.islice(waiting, 1):
            send(nxt, 0)
        try:
            result = _receive(planned[i], future.result())
        except Exception as exc:  # the worker died or the task could not run: once more, then report
            what = f"{type(exc).__name__}: {exc}"
            warn(f"{planned[i].row.student_id}/{planned[i].row.assignment}: its cluster worker was lost "
                 f"({what}); " + ("sending it again" if attempt == 0 else "giving up"))
            if attempt == 0:
                send(i, 1)
            else:
                finish(i, _lost(f"lost on the cluster twice ({what})"))
            continue
        result["retried"] = attempt > 0
        finish(i, result)
    for i in waiting:  # never sent: the cluster stopped answering
        finish(i, _lost("not graded: the cluster stopped answering"))
    return [(job, results[i]) for i, job in enumerate(planned)]


def _lost(error: str) -> dict:
    return {"ok": False, "seconds": 0.0, "error": error}
