"""Run untrusted code (a student's kernel) inside a bubblewrap sandbox.

The one entry point is :func:`sandbox_command`: it turns a command line into
one that runs the same command under Debian's ``bwrap`` (bubblewrap), with

* no network (its own, empty network namespace), its own PID, IPC and UTS
  namespaces, and ``--die-with-parent``: when the command ends or its parent
  dies, every process it started goes with it;
* a file system of its own: read-only system folders (``/usr``, ``/etc``), the
  Python installation and the course package's ``src/`` folder, nothing else
  of the host; a private working folder (:data:`SCRATCH`) that starts as a copy
  of the caller's scratch folder, a private ``/tmp``, both in memory and of a
  fixed size (so that writing cannot fill the host's disk), and the extra
  writable folders the caller names (the kernel's sockets). The private
  ``/tmp`` would hide a Python installation kept under the host's ``/tmp``, so
  that is refused up front (:func:`check_not_under_tmp`) with a message that
  says what to do;
* another, unprivileged user (:data:`NOBODY` unless told otherwise; the
  autograder gives each parallel job a user of its own, :func:`slot_uid`, because
  the limit on processes counts all the processes of a user);
* a clean environment holding only the variables the caller passes;
* resource limits (:class:`Limits`, set with util-linux ``prlimit``): address
  space, number of processes and size of any file written; and, watched from
  outside by :class:`MemoryWatch`, the memory of all its processes together.

When the caller is root, bwrap keeps the real user and the command drops to
``uid`` with util-linux ``setpriv`` before it runs, so the limits on processes
apply (the kernel never limits root's). Otherwise bwrap maps ``uid`` in a user
namespace onto the caller.

:class:`SandboxedKernelManager` is the jupyter_client kernel manager that the
autograder uses (see :mod:`llmcourse.grading.worker`): it starts every kernel
through :func:`sandbox_command`, talking to it over unix sockets in a private
folder, because TCP on loopback cannot cross into an empty network namespace.
Introduced with the grading tools (README, "For instructors").
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, Integer, List, Unicode

from llmcourse.grading.course import GradingError

BWRAP = "/usr/bin/bwrap"
PRLIMIT = "/usr/bin/prlimit"
SETPRIV = "/usr/bin/setpriv"
INSTALL_HINT = "apt-get install bubblewrap"
NOBODY = 65534
SCRATCH = "/home/student/work"  # the working directory inside the sandbox
STAGED = "/run/llmcourse/staged"  # inside: the caller's scratch folder, read-only, copied into SCRATCH
HOME = "/tmp"  # inside: the private /tmp, so IPython and matplotlib can write their caches
# Read-only system folders (each bound only if it exists; a symlink stays a symlink).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
MB = 1024 * 1024


class SandboxUnavailable(GradingError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (each process in it; processes are counted per user)."""

    memory_mb: int = 4096  # address space of each process (RLIMIT_AS); all together (MemoryWatch)
    processes: int = 256  # processes and threads of the sandbox user (RLIMIT_NPROC)
    file_size_mb: int = 256  # largest file it may write (RLIMIT_FSIZE)
    tmp_mb: int = 512  # size of the private /tmp, and of the private working folder

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive whole number, got {value!r}")

    def describe(self) -> str:
        return (f"memory {self.memory_mb} MB, {self.processes} processes, "
                f"files up to {self.file_size_mb} MB")

    @classmethod
    def for_files(cls, memory_mb: int, processes: int, file_size_mb: int) -> "Limits":
        """The limits ``llmcourse autograde`` sets: the working folder and ``/tmp`` each hold
        twice the largest file (so that one file hits the file size limit first)."""
        return cls(memory_mb=memory_mb, processes=processes, file_size_mb=file_size_mb,
                   tmp_mb=2 * file_size_mb)


# A user id per parallel job (the process limit counts every process of a user), in a range
# of its own for each autograding run, so that runs side by side never share one either.
UID_BASE = 1 << 29
SLOTS_PER_RUN = 128


def slot_uid(slot: int, run: int | None = None) -> int:
    """The unprivileged user id of parallel job ``slot`` of the run ``run`` (default: this process)."""
    if not 0 <= slot < SLOTS_PER_RUN:
        raise ValueError(f"slot must be in 0..{SLOTS_PER_RUN - 1}, got {slot}")
    run = os.getpid() if run is None else run
    return UID_BASE + (run % (1 << 22)) * SLOTS_PER_RUN + slot


# ----------------------------------------------------------------------------
# is it there?
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _probe(bwrap: str) -> str | None:
    """None if bwrap can build a sandbox here, else what went wrong."""
    cmd = sandbox_command(["/usr/bin/true"], scratch=None, bwrap=bwrap)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


def check_available(bwrap: str | None = None) -> None:
    """Raise :class:`SandboxUnavailable`, saying how to fix it, unless sandboxes can be built."""
    bwrap = bwrap or BWRAP
    check_not_under_tmp(python_paths())
    if not (os.path.isfile(bwrap) and os.access(bwrap, os.X_OK)):
        raise SandboxUnavailable(
            f"the grading sandbox needs bubblewrap and {bwrap} is missing: install it with "
            f"`{INSTALL_HINT}` (Debian/Ubuntu, as root), or run with --sandbox none "
            "to grade without isolation (only for submissions you trust)"
        )
    for tool in (PRLIMIT, SETPRIV):
        if not os.access(tool, os.X_OK):
            raise SandboxUnavailable(f"the grading sandbox needs {tool} (Debian's util-linux)")
    problem = _probe(bwrap)
    if problem:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox on this machine ({problem}); user namespaces "
            "may be disabled (sysctl kernel.unprivileged_userns_clone=1 or "
            "user.max_user_namespaces), or run as root"
        )


# ----------------------------------------------------------------------------
# what the sandbox sees
# ----------------------------------------------------------------------------
def python_paths() -> list[str]:
    """Folders the kernel's Python needs: the interpreter's installation, the virtual
    environment and the folder the course package is imported from (for an editable
    install, the repository's ``src/``, never the repository itself)."""
    import llmcourse

    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
             str(Path(llmcourse.__file__).resolve().parents[1])]
    out: list[str] = []
    for path in found:
        path = os.path.realpath(path)
        if path not in out and path != "/":
            out.append(path)
    # a folder inside another one is already there
    return [p for p in out if not any(p != q and p.startswith(q + os.sep) for q in out)]


def check_not_under_tmp(read_only: Iterable[str]) -> None:
    """Raise :class:`SandboxUnavailable` if a folder the kernel needs lies in ``/tmp``.

    Every sandbox mounts a private, empty ``/tmp`` over the host's, which would
    hide such a folder (the virtual environment, the interpreter, the course's
    ``src/``): the kernel could not even start, and grading would only say
    "Kernel died".
    """
    hidden = [path for path in read_only if path == "/tmp" or path.startswith("/tmp/")]
    if hidden:
        raise SandboxUnavailable(
            f"the grading sandbox cannot use {', '.join(hidden)}: each sandboxed kernel gets a private, "
            "empty /tmp, which hides everything under the host's /tmp, so Python could not start in it. "
            "Put the repository and its virtual environment outside /tmp (for example under your home "
            "folder; create the virtual environment anew there, since one cannot be moved) and run again"
        )


def _parents(path: str) -> list[str]:
    """``/a/b/c`` -> ``['/a', '/a/b']``."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _mount_args(read_only: Iterable[str], writable: Iterable[tuple[str, str]], tmp_mb: int,
                scratch: str | None = None) -> list[str]:
    """bwrap arguments binding ``read_only`` host folders and ``(host, inside)`` writable ones,
    over a private ``/tmp`` of ``tmp_mb`` MB; with a ``scratch`` host folder, a private
    working folder of ``tmp_mb`` MB at :data:`SCRATCH` and the folder itself, read-only, at
    :data:`STAGED` (:func:`sandbox_command` copies it in).

    Folders bwrap creates on the way to a mount point are made ``0755`` (its default,
    ``0700`` of root, would lock the unprivileged user out of them).
    """
    args: list[str] = []
    made: set[str] = {"/tmp"}

    def parents_of(dest: str) -> None:
        for parent in _parents(dest):
            if parent not in made and parent not in SYSTEM_PATHS:
                args.extend(["--perms", "0755", "--dir", parent])
                made.add(parent)

    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args.extend(["--symlink", os.readlink(path), path])
        elif os.path.isdir(path):
            args.extend(["--ro-bind", path, path])
    for path in read_only:
        parents_of(path)
        args.extend(["--ro-bind", path, path])
    args.extend(["--proc", "/proc", "--dev", "/dev"])
    args.extend(["--size", str(tmp_mb * MB), "--perms", "1777", "--tmpfs", "/tmp"])
    if scratch is not None:
        parents_of(SCRATCH)
        args.extend(["--size", str(tmp_mb * MB), "--perms", "0777", "--tmpfs", SCRATCH])
        parents_of(STAGED)
        args.extend(["--ro-bind", scratch, STAGED])
    for host, inside in writable:
        parents_of(inside)
        args.extend(["--bind", host, inside])
    return args


def sandbox_command(
    argv: Sequence[str],
    scratch: Path | str | None,
    *,
    writable: Iterable[Path | str] = (),
    env: Mapping[str, str] | None = None,
    limits: Limits = Limits(),
    uid: int = NOBODY,
    read_only: Iterable[str] | None = None,
    bwrap: str = BWRAP,
) -> list[str]:
    """The command line that runs ``argv`` sandboxed (see the module docstring).

    ``scratch`` (a host folder, or None for none) is copied into :data:`SCRATCH`,
    the working directory, a private folder in memory: what the command writes
    there never reaches the host. ``writable`` folders are mounted read-write at
    their own paths; ``read_only`` replaces :func:`python_paths`; ``env`` is the
    whole environment inside, plus ``HOME`` and a ``PATH`` when it has none.
    """
    if not argv:
        raise ValueError("argv must name a command to run")
    if not isinstance(uid, int) or not 0 < uid < 2**32 - 1:
        raise ValueError(f"uid must be a positive user id, got {uid!r}")
    root = os.geteuid() == 0
    read_only = python_paths() if read_only is None else [os.path.realpath(p) for p in read_only]
    check_not_under_tmp(read_only)
    mounts = [(os.path.realpath(p), os.path.realpath(p)) for p in writable]
    scratch = None if scratch is None else os.path.realpath(scratch)
    inside_env = {"HOME": HOME, "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                                          "/usr/local/bin", "/usr/bin", "/bin"])}
    inside_env.update(env or {})

    cmd = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if root:  # keep the real user, so that setpriv can switch to an unprivileged one
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-user", "--uid", str(uid), "--gid", str(uid)]
    cmd += _mount_args(read_only, mounts, limits.tmp_mb, scratch)
    cmd += ["--chdir", SCRATCH if scratch is not None else "/tmp", "--clearenv"]
    for key, value in sorted(inside_env.items()):
        cmd += ["--setenv", key, str(value)]
    cmd += ["--", PRLIMIT, f"--as={limits.memory_mb * MB}", f"--nproc={limits.processes}",
            f"--fsize={limits.file_size_mb * MB}", "--core=0", "--"]
    if root:
        cmd += [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
    if scratch is not None and any(os.scandir(scratch)):  # copy the staged files in, as the user
        copy = f"cp -R {shlex.quote(STAGED)}/. {shlex.quote(SCRATCH)}/ && exec \"$@\""
        cmd += ["/bin/sh", "-c", copy, "sh"]
    return cmd + list(argv)


def give_to(path: Path, uid: int) -> None:
    """Make ``path`` (and everything under it) belong to the sandbox user, when we are root."""
    if os.geteuid() != 0:
        return
    os.chown(path, uid, uid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


# ----------------------------------------------------------------------------
# what the sandbox did: a limit that stopped student code
# ----------------------------------------------------------------------------
LIMIT_PATTERNS = (
    ("memory", re.compile(r"MemoryError|[Cc]annot allocate memory|can't allocate memory|std::bad_alloc")),
    ("processes", re.compile(r"Resource temporarily unavailable|can't start new thread")),
    ("file size", re.compile(r"File too large|No space left on device")),
)


# ----------------------------------------------------------------------------
# the memory of all the sandbox's processes together
# ----------------------------------------------------------------------------
def processes_of(uid: int) -> list[int]:
    """The ids of the processes whose real user is ``uid`` and that live in a PID namespace
    other than this process's (inside a sandbox, never a host daemon running as that user)."""
    own = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid and os.readlink(f"/proc/{entry.name}/ns/pid") != own:
                            found.append(int(entry.name))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def memory_of(pid: int) -> int:
    """Bytes of memory process ``pid`` uses (its proportional set size: shared pages split
    between the processes that share them), or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemoryWatch(threading.Thread):
    """Watches the processes of one sandbox user from outside; kills them all once together
    they use more than ``limit_mb``.

    The address-space limit (:class:`Limits`) stops each process alone, with a
    ``MemoryError`` the notebook shows; this stops many processes that stay under it
    each. ``tripped`` holds the memory seen, in MB, once it has killed.
    """

    def __init__(self, uid: int, limit_mb: int, interval: float = 0.2) -> None:
        super().__init__(name=f"memory-watch-{uid}", daemon=True)
        self.uid, self.limit, self.interval = uid, limit_mb * MB, interval
        self.tripped: int | None = None
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            pids = processes_of(self.uid)
            used = sum(memory_of(pid) for pid in pids)
            if used > self.limit:
                self.tripped = used // MB
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return

    def stop(self) -> None:
        self._stop.set()


def limit_hit(text: str) -> str | None:
    """Which limit (``'memory'``, ``'processes'``, ``'file size'``) an error message shows, if any."""
    for name, pattern in LIMIT_PATTERNS:
        if pattern.search(text):
            return name
    return None


# ----------------------------------------------------------------------------
# jupyter kernels in the sandbox
# ----------------------------------------------------------------------------
def grading_variables() -> dict[str, str]:
    """The host variables a sandboxed kernel keeps: those of
    :func:`llmcourse.grading.execution.grading_env` and nbgrader's ``NBGRADER_EXECUTION``."""
    from llmcourse.grading.execution import THREAD_VARS, grading_env

    names = set(grading_env(1)) | set(THREAD_VARS) | {"NBGRADER_EXECUTION", "LANG", "LC_ALL", "TZ"}
    return {k: os.environ[k] for k in sorted(names) if k in os.environ}


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in :func:`sandbox_command`'s sandbox.

    Each kernel gets a private folder (in the system's temporary folder) holding
    its connection file and unix sockets (:attr:`shared_folder`, the one host
    folder it may write to, until :meth:`seal`), and a working folder that starts as a copy of the
    kernel's working directory *without notebooks* (the notebook being graded,
    hidden tests included, stays outside) plus the files in :attr:`scratch_files`
    (the student's own submission). Interrupts go as messages, since the kernel
    runs in a session of its own. :class:`MemoryWatch` watches its memory. The
    limits are settable in ``nbgrader_config.py``, e.g.
    ``c.SandboxedKernelManager.memory_mb = 8192``.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    memory_mb = Integer(Limits.memory_mb, help="memory of each process, and of all together, MB").tag(config=True)
    processes = Integer(Limits.processes, help="processes and threads of the sandbox user").tag(config=True)
    file_size_mb = Integer(Limits.file_size_mb, help="largest file a kernel may write, MB").tag(config=True)
    tmp_mb = Integer(Limits.tmp_mb, help="size of the kernel's private /tmp and working folder, MB"
                     ).tag(config=True)
    uid = Integer(NOBODY, help="unprivileged user id the kernel runs as").tag(config=True)
    scratch_files = List(Unicode(), help="host files copied into the kernel's working folder").tag(config=True)

    _sandbox_root: Path | None = None
    memory_watch: MemoryWatch | None = None

    def limits(self) -> Limits:
        return Limits(memory_mb=self.memory_mb, processes=self.processes,
                      file_size_mb=self.file_size_mb, tmp_mb=self.tmp_mb)

    @property
    def shared_folder(self) -> Path | None:
        """The host folder the kernel can write to (its sockets), owned by its user; None before start."""
        return None if self._sandbox_root is None else self._sandbox_root / "kernel"

    def seal(self) -> None:
        """Once the kernel is up (its sockets made), its folder takes no new file: the folder
        goes back to root, so the only host folder the kernel can write to cannot fill the disk
        (each file in it is capped by the file size limit)."""
        folder = self.shared_folder
        if folder is not None and os.geteuid() == 0:
            os.chown(folder, 0, 0)
            os.chmod(folder, 0o711)

    def _stage(self, workdir: Path, scratch: Path) -> None:
        """The kernel's first working folder: ``workdir`` without notebooks, plus :attr:`scratch_files`."""
        shutil.copytree(workdir, scratch, symlinks=True,
                        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        for name in self.scratch_files:
            shutil.copy(name, scratch / os.path.basename(name))

    async def _async_pre_start_kernel(self, **kw):
        if self.transport != "ipc":
            raise ValueError("SandboxedKernelManager.transport must be 'ipc' (the sandbox has no network)")
        check_not_under_tmp(python_paths())  # before anything is made: the kernel could not start
        limits = self.limits()
        workdir = Path(kw.get("cwd") or os.getcwd())
        self._remove_sandbox_root()
        root = Path(tempfile.mkdtemp(prefix="llmcourse-sandbox-"))
        self._sandbox_root = root
        os.chmod(root, 0o711)  # the sandbox user passes through, lists nothing
        kernel_dir, scratch = root / "kernel", root / "scratch"
        kernel_dir.mkdir(mode=0o700)
        self._stage(workdir, scratch)
        give_to(kernel_dir, self.uid)
        self.connection_file = str(kernel_dir / "kernel.json")
        self.ip = str(kernel_dir / "kernel-ipc")
        assert self.kernel_spec is not None
        self.kernel_spec.interrupt_mode = "message"
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        give_to(Path(self.connection_file), self.uid)
        cmd = sandbox_command(kernel_cmd, scratch, writable=[kernel_dir], env=grading_variables(),
                              limits=limits, uid=self.uid)
        kw["cwd"] = str(root)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return cmd, kw

    async def _async_post_start_kernel(self, **kw) -> None:
        await super()._async_post_start_kernel(**kw)
        self._stop_memory_watch()
        self.memory_watch = MemoryWatch(self.uid, self.memory_mb)
        self.memory_watch.start()

    def _stop_memory_watch(self) -> None:
        if self.memory_watch is not None:
            self.memory_watch.stop()

    def _remove_sandbox_root(self) -> None:
        if self._sandbox_root is not None:
            shutil.rmtree(self._sandbox_root, ignore_errors=True)
            self._sandbox_root = None

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self._stop_memory_watch()
        if not restart:
            self._remove_sandbox_root()
