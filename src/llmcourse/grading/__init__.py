"""The instructor side of the course: nbgrader exercises, released and autograded.

Used through the ``llmcourse`` command (:mod:`llmcourse.grading.cli`):

- ``llmcourse release``    solutions/ -> exercises/ (:mod:`~llmcourse.grading.release`)
- ``llmcourse validate``   solutions pass every test, stubs pass none (:mod:`~llmcourse.grading.validate`)
- ``llmcourse autograde``  a folder of submissions -> grades.csv, feedback, gradebook
  (:mod:`~llmcourse.grading.autograde`), in stages, each a module:

  1. scan the submissions folder, read as untrusted input (:mod:`~llmcourse.grading.intake`);
  2. stage one scratch job per submission (:mod:`~llmcourse.grading.stage`);
  3. run it (:mod:`~llmcourse.grading.run`), in a :mod:`~llmcourse.grading.worker` process,
     student code sandboxed (:mod:`~llmcourse.grading.sandbox`) under a guard that keeps it
     from forging its grades (:mod:`~llmcourse.grading.supervisor`, :mod:`~llmcourse.grading.guard`),
     feedback pages made safe to open and send (:mod:`~llmcourse.grading.feedback`);
  4. collect the result (:mod:`~llmcourse.grading.collect`);
  5. write the outputs (:mod:`~llmcourse.grading.write`).

  The scores and status they pass along are :mod:`~llmcourse.grading.report`;
  due dates and nbgrader's late penalty are :mod:`~llmcourse.grading.late`.

nbgrader settings live in the repository's ``nbgrader_config.py``
(:mod:`~llmcourse.grading.course` loads it). nbgrader itself is imported only
when a command runs.
"""

from llmcourse.grading.course import Course, GradingError

__all__ = ["Course", "GradingError"]
