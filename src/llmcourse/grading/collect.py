"""Collect each job's result into its row and the output folder: the "collect" stage of ``llmcourse autograde``.

:func:`collect_result` takes what :func:`llmcourse.grading.run.run_job` returned
for one job and copies the score of every graded cell and the time taken into
the job's :class:`~llmcourse.grading.report.Row` (with nbgrader's late penalty),
and the notebook's feedback page (``feedback/``), the executed notebook
(``autograded/``) and nbgrader's log (``logs/``) into the output folder. What went wrong becomes a ``status``
entry: a job killed after ``--student-timeout`` (``timeout:``, its notebooks
score 0), a worker that stopped without a result or a notebook that broke
nbgrader (``error:``), cells interrupted after ``--timeout`` (``timeout:``), and
what the supervisor saw while a notebook ran (:func:`supervisor_issues`:
``tampering detected``, ``memory limit``, ``process limit``, ``file size
limit``, ``output limit``). A notebook that was not graded keeps the 0 points
it was staged with.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from llmcourse.grading.report import CellGrade, fmt_points
from llmcourse.grading.run import RunSettings
from llmcourse.grading.stage import Job


def collect_result(job: Job, result: dict, out: Path, settings: RunSettings) -> None:
    """Copy one job's scores into its row, and its feedback, notebook and log into ``out``."""
    timeout, student_timeout = settings.timeout, settings.student_timeout
    row = job.row
    row.seconds = float(result.get("seconds", 0.0))
    log_src = job.root / "worker.log"
    if log_src.is_file():
        (out / "logs" / row.student_id).mkdir(parents=True, exist_ok=True)
        shutil.copy(log_src, out / "logs" / row.student_id / f"{row.assignment}.log")
    if result.get("killed"):
        row.issues.append(f"timeout: grading stopped after {fmt_points(student_timeout)} s "
                          f"(--student-timeout); {', '.join(n + '.ipynb' for n in job.notebooks)} scored 0")
        return
    if not result.get("ok"):
        row.issues.append(f"error: {result.get('error', 'grading failed')}")
        return
    row.seconds = sum(float(i.get("seconds", 0.0)) for i in result["notebooks"].values())
    for nb_name, info in result["notebooks"].items():
        grade = row.notebooks[nb_name]
        grade.seconds = float(info.get("seconds", 0.0))
        grade.kernel_seconds = float((info.get("supervisor") or {}).get("kernel_seconds", 0.0))
        grade.guard_seconds = float((info.get("supervisor") or {}).get("guard_seconds", 0.0))
        row.issues.extend(supervisor_issues(f"{nb_name}.ipynb", info.get("supervisor") or {}, settings))
        row.issues.extend(f"error: {err}" for err in info.get("errors", []))
        if not info.get("graded"):
            continue
        grade.graded = True
        for cell_id, cell in info["cells"].items():
            grade.cells[cell_id] = CellGrade(cell["score"], cell["max_score"], cell["needs_manual_grade"])
        grade.comments = dict(info.get("comments", {}))
        grade.late_penalty = float(info.get("late_penalty") or 0.0)
        if info.get("timeouts"):
            row.issues.append(f"timeout: {nb_name}.ipynb {', '.join(info['timeouts'])} ran longer than "
                              f"{fmt_points(timeout)} s and was interrupted")
        if info.get("feedback"):
            dest = out / "feedback" / row.student_id / row.assignment / f"{nb_name}.html"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(info["feedback"], dest)
        src_nb = job.root / "autograded" / row.student_id / row.assignment / f"{nb_name}.ipynb"
        if src_nb.is_file():
            dest = out / "autograded" / row.student_id / row.assignment / f"{nb_name}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src_nb, dest)
            os.chmod(dest, 0o644)


LIMIT_NAMES = {"memory": "memory limit", "processes": "process limit", "file size": "file size limit"}


def supervisor_issues(notebook: str, report: dict, settings: RunSettings) -> list[str]:
    """The ``status`` entries for what the supervisor saw while ``notebook`` ran."""
    issues = []
    tampering = report.get("tampering") or {}
    if tampering:
        issues.append("tampering detected: " + "; ".join(f"{notebook} {cell}: {what}"
                                                          for cell, what in tampering.items()))
    limits = settings.limits
    values = {"memory": f"--memory-mb {limits.memory_mb}", "processes": f"--max-processes {limits.processes}",
              "file size": f"--max-file-mb {limits.file_size_mb}"}
    if report.get("memory_killed_mb"):
        issues.append(f"memory limit: {notebook} used {report['memory_killed_mb']} MB in all, more than "
                      f"{values['memory']}; its kernel was stopped and the notebook scored 0")
    for kind, cells in (report.get("limits") or {}).items():
        issues.append(f"{LIMIT_NAMES.get(kind, kind + ' limit')}: {notebook} {', '.join(cells)} "
                      f"stopped at {values.get(kind, kind)}")
    if report.get("output_cut"):
        issues.append(f"output limit: {notebook} printed more than --max-output-mb {settings.max_output_mb:g}; "
                      "later output was not kept")
    return issues
