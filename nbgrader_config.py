"""nbgrader settings for the course.

Read by nbgrader itself (``nbgrader generate_assignment`` and friends, run from
the repository root) and by the ``llmcourse`` instructor command, which loads
this file and only overrides the course root when it grades in a scratch
directory. Keep every grading-relevant setting here, so that both routes give
the same result.

Layout::

    solutions/<assignment>/<notebook>.ipynb   instructor source (nbgrader "source" step)
    exercises/<assignment>/<notebook>.ipynb   released student version (nbgrader "release" step)
    .nbgrader/gradebook.db                    scratch SQLite gradebook (git-ignored)

For a large course, point ``CourseDirectory.db_url`` at any SQLAlchemy URL
(for example ``postgresql://user@host/gradebook``).
"""

import os

c = get_config()  # noqa: F821  (provided by the traitlets config loader)

_ROOT = os.path.dirname(os.path.abspath(__file__))

# --- where things live -------------------------------------------------------
c.CourseDirectory.root = _ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.course_id = "llmcourse"
os.makedirs(os.path.join(_ROOT, ".nbgrader"), exist_ok=True)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_ROOT, ".nbgrader", "gradebook.db")
# Files that are never copied from solutions/ into exercises/ or into grading.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]

# --- generating the student version -----------------------------------------
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("Replace this line with your code")',
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Released notebooks: no outputs, a "python3" kernel, no editor or execution
# metadata that would change from one run to the next (see
# llmcourse.grading.preprocessors.NormalizeNotebook).
c.GenerateAssignment.preprocessors = [
    "llmcourse.grading.preprocessors.NormalizeNotebook",
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# --- executing student code (validate and autograde) -------------------------
# Seconds one cell may run. A cell that runs longer (an endless loop, say) is
# interrupted, recorded as failed, and grading carries on with the next cell.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
c.Execute.iopub_timeout = 10
# Keep kernel history in memory (parallel kernels never fight over one history
# file) and keep the kernel's own start-up chatter out of the logs.
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
# Seconds to wait for a kernel to start (torch imports take a while on a cold disk).
c.Execute.startup_timeout = 120
# Restore graded test cells a student deleted, so their points can still be earned.
c.OverwriteCells.add_missing_cells = True
# Keep autograded notebooks readable when student code prints a lot.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 100

# --- due dates and late penalties (llmcourse autograde) ----------------------
# Each assignment's due date, UTC unless it names a zone, for example
#   c.LLMCourse.due_dates = {"02_tokenization": "2027-01-15 23:59:59 UTC"}
# A submission whose timestamp.txt is later gets nbgrader's late penalty
# (nbgrader's AssignLatePenalties, with the plugin below); no due date, no penalty.
c.LLMCourse.due_dates = {}
c.AssignLatePenalties.plugin_class = "llmcourse.grading.late.LatePenalty"
# "none": late work is only reported; "zero": it scores 0 (nbgrader's own methods);
# "percent_per_day": each day, or part of a day, late takes percent_per_day % off the score.
c.LatePenalty.penalty_method = "none"
c.LatePenalty.percent_per_day = 10.0
