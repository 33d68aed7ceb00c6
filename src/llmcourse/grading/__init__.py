"""The instructor side of the course: nbgrader exercises, released and autograded.

Used through the ``llmcourse`` command (:mod:`llmcourse.grading.cli`):

- ``llmcourse release``    solutions/ -> exercises/ (:mod:`~llmcourse.grading.release`)
- ``llmcourse validate``   solutions pass every test, stubs pass none (:mod:`~llmcourse.grading.validate`)
- ``llmcourse autograde``  a folder of submissions -> grades.csv, feedback, gradebook
  (:mod:`~llmcourse.grading.autograde`, one :mod:`~llmcourse.grading.worker` process per student);
  the submissions folder is read as untrusted input (:mod:`~llmcourse.grading.intake`),
  student code runs sandboxed (:mod:`~llmcourse.grading.sandbox`) under a guard that keeps it
  from forging its grades (:mod:`~llmcourse.grading.supervisor`, :mod:`~llmcourse.grading.guard`),
  and feedback pages are made safe to open and send (:mod:`~llmcourse.grading.feedback`)

nbgrader settings live in the repository's ``nbgrader_config.py``
(:mod:`~llmcourse.grading.course` loads it). nbgrader itself is imported only
when a command runs.
"""

from llmcourse.grading.course import Course, GradingError

__all__ = ["Course", "GradingError"]
