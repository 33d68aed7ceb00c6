"""Due dates and late penalties for ``llmcourse autograde``, applied by nbgrader itself.

nbgrader keeps an assignment's due date in the gradebook (``Assignment.duedate``)
and a submission's time in ``timestamp.txt`` (``SubmittedAssignment.timestamp``);
when it autogrades a notebook, its ``AssignLatePenalties`` preprocessor asks a
``LateSubmissionPlugin`` for the penalty of a submission that came in after the
due date and stores it as ``SubmittedNotebook.late_submission_penalty``. nbgrader
0.9 has no setting for due dates, so the course sets them in
``nbgrader_config.py``::

    c.LLMCourse.due_dates = {"02_tokenization": "2027-01-15 23:59:59 UTC"}
    c.AssignLatePenalties.plugin_class = "llmcourse.grading.late.LatePenalty"
    c.LatePenalty.penalty_method = "percent_per_day"   # or "none", "zero"
    c.LatePenalty.percent_per_day = 10

:func:`check_late_settings` checks all of it before anyone is graded, and
:func:`record_due_dates` writes the due dates into a gradebook (the template
every job starts from, and the combined one), so that nbgrader's own late
penalty is what each job applies. :class:`LatePenalty` is nbgrader's plugin with
one more method, ``percent_per_day``. :func:`seconds_late` is nbgrader's
``total_seconds_late`` for the ``late_seconds`` column of ``grades.csv``.

Introduced in: the grading tools (README, "For instructors").
"""

from __future__ import annotations

import math
from datetime import datetime

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float, TraitError, validate

from llmcourse.grading.course import Course, GradingError

DAY = 24 * 3600


class LatePenalty(LateSubmissionPlugin):
    """nbgrader's late-submission plugin, plus a penalty of a percentage per day late."""

    penalty_method = Enum(
        ("none", "zero", "percent_per_day"), default_value="none",
        help="'none': no penalty; 'zero': the late notebook scores 0 (nbgrader's methods); "
             "'percent_per_day': each day or part of a day late takes percent_per_day % off its score",
    ).tag(config=True)

    percent_per_day = Float(10.0, help="percent of the score taken off per day late, "
                                       "with penalty_method 'percent_per_day'").tag(config=True)

    @validate("percent_per_day")
    def _check_percent(self, proposal):
        value = proposal["value"]
        if not (math.isfinite(value) and value >= 0):
            raise TraitError(f"LatePenalty.percent_per_day must be a number of percent, at least 0, got {value}")
        return value

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        """The points taken off a notebook that scored ``score`` and came in ``total_seconds_late`` late."""
        if self.penalty_method != "percent_per_day":
            return super().late_submission_penalty(student_id, score, total_seconds_late)
        days = math.ceil(total_seconds_late / DAY)
        return round(score * min(1.0, days * self.percent_per_day / 100), 6)


def check_late_settings(course: Course) -> dict[str, datetime]:
    """The course's due dates, checked, after checking the late-penalty settings.

    Raises :class:`GradingError` naming the setting when a due date is no date or names
    no assignment, or when the penalty plugin cannot be set up from its settings.
    """
    from nbgrader.preprocessors import AssignLatePenalties

    due_dates = course.due_dates()
    try:
        preprocessor = AssignLatePenalties(config=course.base_config)
    except Exception:  # nbgrader's message names the preprocessor object, not the setting
        name = course.base_config.AssignLatePenalties.get("plugin_class")
        raise GradingError(f"AssignLatePenalties.plugin_class in {course.config_file}: {name!r} cannot be "
                           "imported as an nbgrader LateSubmissionPlugin") from None
    try:
        preprocessor.init_plugin()
    except Exception as exc:  # an unknown method, a negative percentage: the message names the setting
        raise GradingError(f"late penalty settings in {course.config_file}: {exc}") from None
    return due_dates


def record_due_dates(gradebook, assignments: list[str], due_dates: dict[str, datetime]) -> None:
    """Set (or clear) each assignment's due date in an open nbgrader ``Gradebook``."""
    for assignment in assignments:
        gradebook.update_or_create_assignment(assignment, duedate=due_dates.get(assignment))


def seconds_late(timestamp: str | None, due: datetime | None) -> float:
    """How late a submission at ``timestamp`` came in, as nbgrader counts it (0 without either)."""
    from nbgrader.utils import parse_utc

    if not timestamp or due is None:
        return 0.0
    return max(0.0, (parse_utc(timestamp) - due).total_seconds())
