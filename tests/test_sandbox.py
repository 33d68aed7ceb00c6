"""The grading sandbox (llmcourse.grading.sandbox): what a student's kernel can and cannot do.

Every kernel test starts a real sandboxed IPython kernel and runs hostile code in
it; they skip (with the reason) where bubblewrap is missing or cannot create
namespaces.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import sandbox
from llmcourse.grading.sandbox import Limits, SandboxedKernelManager, SandboxUnavailable, limit_hit

REPO = Path(__file__).resolve().parents[1]


def _unavailable() -> str | None:
    try:
        sandbox.check_available()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


REASON = _unavailable()
needs_bwrap = pytest.mark.skipif(REASON is not None, reason=f"no sandbox here: {REASON}")
# A user id of this test process's own, so that parallel test workers (and their
# process limits, counted per user) never share one.
UID = 61000 + os.getpid() % 4000


def _client(nb, cwd: Path, timeout: float, **traits):
    """An nbclient that starts (and, once done, shuts down) its own sandboxed kernel."""
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    config = Config({"SandboxedKernelManager": {"uid": UID, **traits}})
    return NotebookClient(nb, kernel_manager_class=SandboxedKernelManager, config=config, timeout=timeout,
                          interrupt_on_timeout=True, allow_errors=True,
                          resources={"metadata": {"path": str(cwd)}})


def run_cells(cells: list[str], cwd: Path, **traits) -> list[str]:
    """Run ``cells`` in one sandboxed kernel started in ``cwd``; return each cell's text output."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    _client(nb, cwd, timeout=60, **traits).execute()
    texts = []
    for cell in nb.cells:
        parts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type == "error":
                parts.append(f"{out.ename}: {out.evalue}")
        texts.append("".join(parts).strip())
    return texts


@pytest.fixture()
def job(tmp_path):
    """A job folder as the autograder stages it: gradebook, solutions/, and the notebook's folder."""
    (tmp_path / "gradebook.db").write_text("HIDDEN TEST SOURCE in the gradebook")
    (tmp_path / "solutions" / "a1").mkdir(parents=True)
    (tmp_path / "solutions" / "a1" / "a1.ipynb").write_text("HIDDEN TEST SOURCE in solutions")
    cwd = tmp_path / "autograded" / "alice" / "a1"
    cwd.mkdir(parents=True)
    (cwd / "a1.ipynb").write_text("HIDDEN TEST SOURCE in the notebook being graded")
    (cwd / "data.txt").write_text("released data")
    return tmp_path, cwd


READ = """
def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        return type(exc).__name__
"""


# ----------------------------------------------------------------------------
# no kernel needed
# ----------------------------------------------------------------------------
def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    with pytest.raises(ValueError, match="processes"):
        Limits(processes=2.5)


def test_command_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="argv"):
        sandbox.sandbox_command([], tmp_path)
    with pytest.raises(ValueError, match="uid"):
        sandbox.sandbox_command(["true"], tmp_path, uid=0)


def test_command_binds_src_but_not_the_repository(tmp_path):
    cmd = sandbox.sandbox_command(["true"], tmp_path)
    bound = {cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")}
    assert str(REPO / "src") in bound or not (REPO / "src" / "llmcourse").is_dir()
    assert not any(path == str(REPO) or path.startswith(str(REPO / "solutions")) for path in bound)
    assert "/" not in bound and "/root" not in bound and "/tmp" not in bound


def test_missing_bwrap_says_how_to_install(tmp_path):
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.check_available(bwrap=str(tmp_path / "no-bwrap"))


# The sandbox mounts a private, empty /tmp: a Python installation under the host's /tmp
# would vanish from the kernel's view, and grading would only say "Kernel died".
TMP_IS_TMP = pytest.mark.skipif(os.path.realpath("/tmp") != "/tmp", reason="/tmp is a link here")


@TMP_IS_TMP
def test_command_refuses_a_python_under_tmp(tmp_path):
    venv = tempfile.mkdtemp(prefix="llmcourse-venv-", dir="/tmp")
    try:
        with pytest.raises(SandboxUnavailable, match="private, empty /tmp") as exc:
            sandbox.sandbox_command(["true"], tmp_path, read_only=[venv, "/usr"])
        assert venv in str(exc.value) and "outside /tmp" in str(exc.value)
    finally:
        os.rmdir(venv)


def test_check_available_names_the_folder_under_tmp(monkeypatch):
    monkeypatch.setattr(sandbox, "python_paths", lambda: ["/tmp/course/.venv", "/tmp/course/src"])
    with pytest.raises(SandboxUnavailable) as exc:
        sandbox.check_available()
    text = str(exc.value)
    assert "/tmp/course/.venv, /tmp/course/src" in text and "create the virtual environment anew" in text


@TMP_IS_TMP
def test_kernel_start_says_why_instead_of_dying(monkeypatch, tmp_path):
    real = sandbox.python_paths()
    monkeypatch.setattr(sandbox, "python_paths", lambda: ["/tmp/course/.venv", *real])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    with pytest.raises(SandboxUnavailable, match="/tmp/course/.venv"):
        _client(nb, tmp_path, timeout=30).execute()


@needs_bwrap
@TMP_IS_TMP
def test_a_folder_under_tmp_is_hidden_in_the_sandbox(monkeypatch):
    """Why the check above exists: without it, a folder under /tmp is bound, then covered."""
    hidden = tempfile.mkdtemp(prefix="llmcourse-hidden-", dir="/tmp")
    monkeypatch.setattr(sandbox, "check_not_under_tmp", lambda paths: None)
    try:
        def sees(path):
            cmd = sandbox.sandbox_command(["/usr/bin/test", "-d", path], None, read_only=[hidden, *sandbox.python_paths()],
                                          uid=UID)
            return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0

        assert sees(sandbox.python_paths()[0]) and not sees(hidden)
    finally:
        os.rmdir(hidden)


@pytest.mark.parametrize("text, kind", [
    ("MemoryError: ", "memory"),
    ("RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory", "memory"),
    ("BlockingIOError: [Errno 11] Resource temporarily unavailable", "processes"),
    ("OSError: [Errno 27] File too large", "file size"),
    ("AssertionError: expected 3", None),
])
def test_limit_hit_names_the_limit(text, kind):
    assert limit_hit(text) == kind


# ----------------------------------------------------------------------------
# inside a sandboxed kernel
# ----------------------------------------------------------------------------
@needs_bwrap
def test_kernel_sees_no_hidden_tests_and_imports_the_course(job):
    root, cwd = job
    paths = [root / "gradebook.db", root / "solutions" / "a1" / "a1.ipynb", cwd / "a1.ipynb",
             "a1.ipynb", REPO / "solutions", REPO / "nbgrader_config.py", Path.home() / ".bashrc"]
    cells = [READ + "import os, llmcourse.grading.checks, llmcourse\n"
             "print(llmcourse.__file__, os.getuid(), os.getgid(), os.getcwd())",
             "print(read('data.txt'))"]
    cells += [f"print(read({str(p)!r}), os.path.exists({str(p)!r}))" for p in paths]
    out = run_cells(cells, cwd)
    package, uid, gid, workdir = out[0].split()
    assert package == str(REPO / "src" / "llmcourse" / "__init__.py")
    assert (int(uid), int(gid)) == (UID, UID) and workdir == sandbox.SCRATCH
    assert out[1] == "released data"
    for path, text in zip(paths, out[2:]):
        assert text == "FileNotFoundError False", (path, text)


@needs_bwrap
def test_kernel_writes_only_to_scratch_and_a_private_tmp(job):
    root, cwd = job
    name = f"llmcourse-sandbox-test-{uuid.uuid4().hex}"
    targets = [REPO / "src" / name, REPO / name, root / name, cwd / name, f"/usr/{name}", f"/etc/{name}"]
    write = ("def write(path):\n    try:\n        open(path, 'w').write('x')\n        return 'written'\n"
             "    except OSError as exc:\n        return type(exc).__name__\n")
    out = run_cells([write + f"print(write('mine.txt'), write('/tmp/{name}'), open('/tmp/{name}').read())"]
                    + [f"print(write({str(t)!r}))" for t in targets], cwd)
    assert out[0] == "written written x"
    assert all(text in ("FileNotFoundError", "PermissionError", "OSError") for text in out[1:]), out
    for target in [Path("/tmp") / name, *targets]:
        assert not Path(target).exists(), target
    assert not (cwd / "mine.txt").exists()  # scratch is a private copy, thrown away


@needs_bwrap
def test_kernel_has_no_network_and_no_instructor_environment(job, monkeypatch):
    _, cwd = job
    monkeypatch.setenv("INSTRUCTOR_SECRET", "s3cret")
    monkeypatch.setenv("LLMCOURSE_DEVICE", "cpu")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        out = run_cells([
            "import socket, os\ns = socket.socket()\ns.settimeout(5)\n"
            f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\n"
            "except OSError as exc:\n    print(type(exc).__name__)",
            "print(os.environ.get('INSTRUCTOR_SECRET'), os.environ.get('LLMCOURSE_DEVICE'), "
            "sorted(os.environ))",
        ], cwd)
        server.settimeout(0.5)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert out[0] in ("ConnectionRefusedError", "OSError"), out[0]
    assert out[1].startswith("None cpu ")
    assert "s3cret" not in out[1]


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@needs_bwrap
def test_no_process_outlives_the_kernel(job):
    _, cwd = job
    seconds = f"{300 + os.getpid() % 1000}.{uuid.uuid4().int % 10 ** 6:06d}"  # unique: found by it
    out = run_cells([
        "import subprocess, os\n"
        f"subprocess.Popen(['sleep', '{seconds}'], start_new_session=True)\n"
        f"if os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '{seconds}'])\n"
        "print('started')",
    ], cwd)
    assert out == ["started"]
    deadline = time.monotonic() + 10
    while _host_processes_with(f"sleep {seconds}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _host_processes_with(f"sleep {seconds}") == []


@needs_bwrap
def test_limits_stop_hogs(job):
    _, cwd = job
    out = run_cells([
        "try:\n    hog = bytearray(3 * 1024 ** 3)\n    print('allocated')\nexcept MemoryError as exc:\n"
        "    print('MemoryError')",
        "import subprocess\nkids = []\ntry:\n    for _ in range(200):\n"
        "        kids.append(subprocess.Popen(['sleep', '30']))\n    print('forked 200')\n"
        "except OSError as exc:\n    print(f'{type(exc).__name__}: {exc}')\nfor k in kids:\n    k.kill()",
        "try:\n    with open('big.bin', 'wb') as fh:\n        fh.write(b'x' * (3 * 1024 ** 2))\n"
        "    print('wrote')\nexcept OSError as exc:\n    print(f'{type(exc).__name__}: {exc}')",
        "with open('small.bin', 'wb') as fh:\n    fh.write(b'x' * 1024 ** 2)\nprint('small ok')",
    ], cwd, memory_mb=2048, processes=48, file_size_mb=2)
    assert limit_hit(out[0]) == "memory", out[0]
    assert limit_hit(out[1]) == "processes", out[1]
    assert limit_hit(out[2]) == "file size", out[2]
    assert out[3] == "small ok"


@needs_bwrap
def test_interrupt_reaches_the_sandboxed_kernel(job):
    """An endless cell is interrupted at the cell timeout, and the next cell still runs."""
    _, cwd = job
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("while True:\n    pass"), nbformat.v4.new_code_cell("print('after')")]
    _client(nb, cwd, timeout=3).execute()
    assert any(o.output_type == "error" for o in nb.cells[0].outputs)
    assert json.dumps(nb.cells[1].outputs).count("after") == 1


# ----------------------------------------------------------------------------
# what the autograder adds: a user per job, a working folder in memory, memory of all processes
# ----------------------------------------------------------------------------
def test_each_job_of_each_run_has_a_user_of_its_own():
    uids = {sandbox.slot_uid(slot, run) for slot in range(sandbox.SLOTS_PER_RUN) for run in (1, 2, 4_194_303)}
    assert len(uids) == 3 * sandbox.SLOTS_PER_RUN
    assert all(sandbox.NOBODY < uid < 2**32 - 2 for uid in uids)
    with pytest.raises(ValueError, match="slot"):
        sandbox.slot_uid(sandbox.SLOTS_PER_RUN)


def test_limits_for_files_leave_room_for_one_whole_file():
    limits = Limits.for_files(memory_mb=1000, processes=10, file_size_mb=64)
    assert (limits.file_size_mb, limits.tmp_mb) == (64, 128)


@needs_bwrap
def test_working_folder_is_a_private_copy_in_memory(job, tmp_path):
    _, cwd = job
    own = tmp_path / "own.ipynb"
    own.write_text("the student's own submission")
    out = run_cells([
        READ + "import os\nprint(sorted(os.listdir('.')), read('own.ipynb'))",
        "try:\n    with open('fill.bin', 'wb') as fh:\n        for _ in range(64):\n"
        "            fh.write(b'x' * 1024 ** 2)\n    print('wrote 64 MB')\n"
        "except OSError as exc:\n    print(f'{type(exc).__name__}: {exc}')",
        "import os\nos.remove('fill.bin')\nprint(os.statvfs('.').f_blocks * os.statvfs('.').f_frsize // 1024 ** 2)",
    ], cwd, tmp_mb=16, scratch_files=[str(own)])
    assert out[0] == "['data.txt', 'own.ipynb'] the student's own submission", out[0]
    assert limit_hit(out[1]) == "file size" and "No space left" in out[1], out[1]
    assert int(out[2]) == 16, "the working folder holds tmp_mb"
    assert not (cwd / "fill.bin").exists()


@needs_bwrap
def test_memory_of_all_processes_together_is_watched(job, monkeypatch):
    """Processes that each stay under the address-space limit, but not together: all stopped."""
    from nbclient.exceptions import DeadKernelError

    _, cwd = job
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; x = b\"x\" * 400_000_000; time.sleep(60)'])\n"
        "        for _ in range(3)]\n"
        "time.sleep(45)\nprint('still alive')")]
    watches = []

    class Watch(sandbox.MemoryWatch):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            watches.append(self)

    monkeypatch.setattr(sandbox, "MemoryWatch", Watch)
    start = time.monotonic()
    with pytest.raises(DeadKernelError):
        _client(nb, cwd, timeout=90, memory_mb=768).execute()
    assert time.monotonic() - start < 40, "stopped well before the cell's own end"
    assert len(watches) == 1 and watches[0].tripped > 768


@needs_bwrap
def test_a_sealed_kernel_folder_takes_no_new_files(job):
    """The kernel's own folder (sockets, connection file) is the one host folder it can write to;
    sealed once the kernel is up, it takes no new file, so it cannot fill the host's disk."""
    _, cwd = job
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import ipykernel, os\nfolder = os.path.dirname(ipykernel.get_connection_file())\n"
        "try:\n    open(os.path.join(folder, 'filler'), 'wb').write(b'x')\n    print('written')\n"
        "except OSError as exc:\n    print(type(exc).__name__)\nprint(1 + 1)")])
    client = _client(nb, cwd, timeout=60)
    with client.setup_kernel():
        client.km.seal()
        client.execute_cell(nb.cells[0], 0)
        folder = client.km.shared_folder
        assert not (folder / "filler").exists()
    assert "".join(o.get("text", "") for o in nb.cells[0].outputs).split() == ["PermissionError", "2"]
