"""Run one submitted notebook sandboxed and supervised: the "run" stage of ``llmcourse autograde``.

The worker (:mod:`llmcourse.grading.worker`) has nbgrader autograde each notebook
with :class:`GuardedExecute` in place of nbgrader's ``Execute`` (:func:`configure`).
It executes the notebook as nbgrader would, and in addition:

* starts the kernel in the sandbox (:class:`llmcourse.grading.sandbox.SandboxedKernelManager`:
  no network, none of the instructor's files, the job's own unprivileged user,
  limits on memory, processes and file size), unless ``--sandbox none``;
* installs the grading guard (:mod:`llmcourse.grading.guard`) in the fresh
  kernel before the first cell, with a key of its own;
* runs each graded test cell through the guard's judge and reads the signed
  verdict back from outside the kernel (:meth:`GuardedExecute._apply_verdict`):
  a cell without a valid verdict, with a failure its outputs do not show, or run
  in an environment that student code had changed, earns nothing and is named in
  ``status`` as ``tampering detected``;
* stops keeping outputs once the notebook's outputs pass ``max_output_mb``, and
  interrupts the cell that keeps printing (``output limit``);
* names the limits student code ran into (``memory limit``, ``process limit``,
  ``file size limit``), from the errors cells raised or the sandbox's memory watch.
* kills the sandbox once the last cell has run, rather than wait for a graceful
  kernel shutdown: nothing in it is needed any more.

What happened is left in :data:`REPORTS` (one :class:`Report` per notebook) for the
worker to send back with the scores.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbgrader.preprocessors import Execute
from traitlets import Dict, Float, List, Unicode

from llmcourse.grading import guard, sandbox
from llmcourse.grading.execution import is_autograded_test, nbgrader_meta, timed_out

MB = 1024 * 1024
DEFAULT_MAX_OUTPUT_MB = 20.0
MAX_VERDICT_BYTES = MB  # read at most this much of the verdict file per test cell
SANDBOXES = ("bwrap", "none")


@dataclass
class Report:
    """What happened while one notebook ran, beyond its cells' outputs."""

    tampering: dict[str, str] = field(default_factory=dict)  # grade id -> what was changed
    limits: dict[str, list[str]] = field(default_factory=dict)  # "memory" | "processes" | "file size" -> cells
    output_cut: bool = False  # outputs passed max_output_mb
    memory_killed_mb: int | None = None  # the memory watch stopped the kernel, having seen this much
    kernel_seconds: float = 0.0  # starting the (sandboxed) kernel
    guard_seconds: float = 0.0  # setting up the guard: loading what the tests import, before any student code

    def hit(self, limit: str, where: str) -> None:
        cells = self.limits.setdefault(limit, [])
        if where not in cells:
            cells.append(where)

    def as_dict(self) -> dict:
        return {"tampering": self.tampering, "limits": self.limits, "output_cut": self.output_cut,
                "memory_killed_mb": self.memory_killed_mb, "kernel_seconds": self.kernel_seconds,
                "guard_seconds": self.guard_seconds}


REPORTS: dict[str, Report] = {}  # notebook name -> its report (the worker takes it out)


# ----------------------------------------------------------------------------
# what the guard watches, from the instructor's notebook (in the parent)
# ----------------------------------------------------------------------------
def _imports(source: str) -> list[tuple[str, str, str | None]]:
    """``(bound name, module, attribute or None)`` for every absolute import in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found.append((alias.asname, alias.name, None))
                else:
                    top = alias.name.split(".")[0]
                    found.append((top, top, None))
                    found.append(("", alias.name, None))  # loads the submodule too
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(a.asname or a.name, node.module, a.name) for a in node.names if a.name != "*"]
    return found


def guard_plan(source_nb: Any) -> dict:
    """What the guard of one notebook loads and watches, from the instructor's source notebook.

    ``modules``: what the graded test cells import (hidden tests included), loaded
    and watched before any student code; ``bindings``: the names the other
    instructor cells (not answers) bind to modules, such as ``torch`` or ``F``.
    """
    modules: list[str] = []
    bindings: dict[str, list] = {}
    for cell in source_nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or meta.get("solution"):
            continue
        for name, module, attr in _imports(cell.source):
            if is_autograded_test(cell):
                modules.append(module)
            elif name:
                bindings[name] = [module, attr]
    return {"modules": list(dict.fromkeys(modules)), "bindings": bindings}


# ----------------------------------------------------------------------------
# the preprocessor
# ----------------------------------------------------------------------------
class GuardedExecute(Execute):
    """nbgrader's ``Execute`` in the sandbox, with the grading guard (see the module docstring)."""

    sandbox = Unicode("bwrap", help="'bwrap': kernels run in the sandbox; 'none': with your rights").tag(config=True)
    max_output_mb = Float(DEFAULT_MAX_OUTPUT_MB, help="outputs kept per notebook, MB").tag(config=True)
    guard_modules = List(Unicode(), help="modules the test cells import (guard_plan)").tag(config=True)
    guard_bindings = Dict(help="names the instructor cells bind to modules (guard_plan)").tag(config=True)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.sandbox not in SANDBOXES:
            raise ValueError(f"GuardedExecute.sandbox must be one of {SANDBOXES}, got {self.sandbox!r}")
        self.kernel_manager_class = (sandbox.SandboxedKernelManager if self.sandbox == "bwrap"
                                     else AsyncKernelManager)
        if self.sandbox == "bwrap":
            # Once the last cell has run the sandbox is thrown away whole: killing it ends
            # everything in it at once (its processes die with its PID namespace), where a
            # graceful shutdown waits about a second for the kernel to exit by itself.
            self.shutdown_kernel = "immediate"

    # -- one notebook --------------------------------------------------------
    def preprocess(self, nb, resources=None, km=None):
        self.report = Report()
        self._output_bytes = 0
        self._cell_output_bytes = 0
        self._interrupted: set[int] = set()
        self._verdicts = None
        self._own_folder: str | None = None
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            watch = getattr(self.km, "memory_watch", None)
            if watch is not None and watch.tripped:
                self.report.memory_killed_mb = watch.tripped
            raise
        finally:
            name = (resources or {}).get("unique_key") or "notebook"
            REPORTS[name] = self.report
            self._close_verdicts()

    def _close_verdicts(self) -> None:
        if self._verdicts is not None:
            self._verdicts.close()
            self._verdicts = None
        if self._own_folder is not None:
            shutil.rmtree(self._own_folder, ignore_errors=True)
            self._own_folder = None

    # -- the guard -----------------------------------------------------------
    async def async_start_new_kernel_client(self):
        start = time.perf_counter()
        kc = await super().async_start_new_kernel_client()
        self.report.kernel_seconds = time.perf_counter() - start
        await self._install_guard()
        self.report.guard_seconds = time.perf_counter() - start - self.report.kernel_seconds
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _verdict_file(self) -> Path:
        """A new, empty verdict file the kernel may append to: in the sandbox's writable folder,
        or in a private temporary folder without a sandbox."""
        folder = getattr(self.km, "shared_folder", None)
        if folder is None:
            self._own_folder = tempfile.mkdtemp(prefix="llmcourse-verdicts-")
            folder = Path(self._own_folder)
        path = Path(folder) / f"verdicts-{secrets.token_hex(4)}"
        path.touch(mode=0o600)
        if isinstance(self.km, sandbox.SandboxedKernelManager):
            sandbox.give_to(path, self.km.uid)
        return path

    async def _install_guard(self) -> None:
        if isinstance(self.km, sandbox.SandboxedKernelManager):
            self.km.seal()  # the kernel is up: its folder takes no new files from now on
        self._key = secrets.token_hex(32)
        path = self._verdict_file()
        self._verdicts = open(path, "rb")  # opened before any student code: a swapped file is not read
        code = guard.setup_code(self._key, str(path), self.guard_modules, self.guard_bindings)
        reply = await self._run_silently(code, self.startup_timeout)
        if reply is None or reply["content"].get("status") != "ok":
            content = (reply or {}).get("content", {})
            raise RuntimeError(f"the grading guard could not be set up in the kernel: "
                               f"{content.get('ename', 'no reply')}: {content.get('evalue', '')}")

    async def _run_silently(self, code: str, timeout: float | None) -> dict | None:
        """Run ``code`` in the kernel without output or history; its reply, or None."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        try:
            return await asyncio.wait_for(self._reply_to(msg_id), timeout)
        except asyncio.TimeoutError:
            return None

    async def _reply_to(self, msg_id: str) -> dict:
        while True:
            msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=None))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    # -- cells ---------------------------------------------------------------
    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._cell_output_bytes = 0
        if is_autograded_test(cell) and cell.source.strip():
            cell = await self._execute_test(cell, cell_index, execution_count, store_history)
        else:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        self._note_limits(cell, cell_index)
        return cell

    execute_cell = run_sync(async_execute_cell)

    async def _execute_test(self, cell, cell_index, execution_count, store_history):
        """Run a graded test cell through the judge, then apply its verdict."""
        grade_id = str(nbgrader_meta(cell).get("grade_id"))
        nonce = secrets.token_hex(16)
        start = os.fstat(self._verdicts.fileno()).st_size
        await self._run_silently(f"{guard.JUDGE}.load({nonce!r}, {grade_id!r}, {cell.source!r})",
                                 self._get_timeout(cell))
        source = cell.source
        cell.source = f"{guard.JUDGE}.run({grade_id!r}, {nonce!r})"
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            cell.source = source
        self._verdicts.seek(start)
        text = self._verdicts.read(MAX_VERDICT_BYTES).decode("utf-8", "replace")
        self._apply_verdict(cell, grade_id, guard.read_verdict(text, self._key, nonce, grade_id))
        return cell

    def _apply_verdict(self, cell, grade_id: str, verdict: tuple[str, str] | None) -> None:
        """Make the cell's outputs say what the judge found (an error output costs its points)."""
        shown = any(out.get("output_type") == "error" for out in cell.outputs)
        if verdict is None:
            if timed_out(cell):
                return  # interrupted before the judge could answer: it failed anyway
            self._tampering(cell, grade_id, "the test cell did not report its result to the grader "
                                            "(student code changed how cells run)")
        elif verdict[0] == "tampering":
            self._tampering(cell, grade_id, verdict[1], add_error=not shown)
        elif verdict[0] == "fail" and not shown:
            self._tampering(cell, grade_id, f"the error the test raised was hidden ({verdict[1]})")

    def _tampering(self, cell, grade_id: str, what: str, add_error: bool = True) -> None:
        self.report.tampering.setdefault(grade_id, what)
        if add_error:
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="TamperingDetected", evalue=what, traceback=[f"TamperingDetected: {what}"]))

    def _note_limits(self, cell, cell_index: int) -> None:
        where = nbgrader_meta(cell).get("grade_id") or f"cell {cell_index + 1}"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                hit = sandbox.limit_hit(f"{out.get('ename', '')}: {out.get('evalue', '')}")
                if hit:
                    self.report.hit(hit, where)

    # -- outputs -------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "error":  # always kept: an error is what costs a test its points
            return super().output(outs, msg, display_id, cell_index)
        size = _message_bytes(msg["content"])
        self._output_bytes += size
        self._cell_output_bytes += size
        limit = self.max_output_mb * MB
        if self._output_bytes <= limit:
            return super().output(outs, msg, display_id, cell_index)
        if not self.report.output_cut:
            self.report.output_cut = True
            outs.append(nbformat.v4.new_output(
                "stream", name="stdout",
                text=f"\n[output cut: this notebook printed more than {self.max_output_mb:g} MB]\n"))
        if self._cell_output_bytes > limit / 2 and cell_index not in self._interrupted:
            self._interrupted.add(cell_index)  # this cell keeps printing: stop it
            asyncio.ensure_future(ensure_async(self.km.interrupt_kernel()))
        return None


def _message_bytes(content: dict) -> int:
    """About how many bytes an output message holds."""
    total = len(content.get("text", "") or "")
    for value in (content.get("data") or {}).values():
        total += len(value) if isinstance(value, (str, bytes)) else len(json.dumps(value))
    return total


# ----------------------------------------------------------------------------
# setting nbgrader up
# ----------------------------------------------------------------------------
def configure(cfg, sandbox_kind: str, uid: int, limits: sandbox.Limits, max_output_mb: float) -> None:
    """Have nbgrader's ``Autograde`` in ``cfg`` execute with :class:`GuardedExecute`."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    cfg.Autograde.autograde_preprocessors = [GuardedExecute, IgnorePattern, ClearMetadataPreprocessor,
                                             LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    cfg.GuardedExecute.sandbox = sandbox_kind
    cfg.GuardedExecute.max_output_mb = float(max_output_mb)
    cfg.SandboxedKernelManager.uid = uid
    cfg.SandboxedKernelManager.memory_mb = limits.memory_mb
    cfg.SandboxedKernelManager.processes = limits.processes
    cfg.SandboxedKernelManager.file_size_mb = limits.file_size_mb
    cfg.SandboxedKernelManager.tmp_mb = limits.tmp_mb


def configure_notebook(cfg, plan: dict, submitted: Path) -> None:
    """The settings of one notebook: what its guard watches, and its submission in the scratch folder."""
    cfg.GuardedExecute.guard_modules = list(plan.get("modules", []))
    cfg.GuardedExecute.guard_bindings = dict(plan.get("bindings", {}))
    cfg.SandboxedKernelManager.scratch_files = [str(submitted)] if submitted.is_file() else []
