"""The ``llmcourse`` command: release, validate and autograde the course's exercises.

Run ``llmcourse --help`` or ``llmcourse COMMAND --help``. Exit status: 0 on
success, 1 when a check fails or a command cannot do its job, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from llmcourse.grading.course import Course, GradingError
from llmcourse.grading.intake import DEFAULT_MAX_NOTEBOOK_MB
from llmcourse.grading.sandbox import Limits

DEFAULT_MAX_OUTPUT_MB = 20.0  # llmcourse.grading.supervisor's default (not imported here: it loads nbgrader)

DESCRIPTION = """\
Instructor tools for the course's nbgrader exercises.

  solutions/<assignment>/<notebook>.ipynb   source notebooks: solutions, visible and hidden tests
  exercises/<assignment>/<notebook>.ipynb   released student notebooks (generated; commit them)

typical workflow:
  llmcourse validate                      solutions pass every test, stubs pass none
  llmcourse release                       regenerate exercises/ from solutions/, then commit
  llmcourse autograde SUBMISSIONS --out grades/2025-lab1
                                          grade SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb

for students, before submitting:
  llmcourse check NOTEBOOK                the right notebook? tests intact? runs? visible tests pass?
"""


def _number(convert, noun: str, valid, rule: str):
    """An argparse ``type``: ``convert`` the text, or say it is not ``noun`` / does not meet ``rule``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


_positive_int = _number(int, "a whole number", lambda v: v >= 1, "at least 1")
_positive_float = _number(float, "a number of seconds", lambda v: v > 0, "more than 0 seconds")
_megabytes = _number(float, "a number of megabytes", lambda v: 0 < v < float("inf"), "a finite number of MB above 0")
_whole_mb = _number(int, "a whole number of megabytes", lambda v: v >= 1, "at least 1 MB")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--course", metavar="DIR", type=Path, default=None,
        help="course root holding solutions/ and exercises/ (default: found from the current "
             "directory upwards; nbgrader_config.py is read from there or its nearest parent)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="print only warnings, errors and the result")

    parser = argparse.ArgumentParser(
        prog="llmcourse", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "list", parents=[common], help="list assignments, notebooks and points",
        description="List the assignments in solutions/, their notebooks and the points of each test cell.",
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "release", parents=[common], help="regenerate exercises/ from solutions/",
        description=(
            "Regenerate exercises/<assignment>/ from solutions/<assignment>/ with nbgrader "
            "(solutions replaced by stubs, hidden tests removed, outputs cleared, kernel python3) and "
            "record the assignment in the course gradebook (.nbgrader/gradebook.db). The result is "
            "deterministic and is what gets committed. Without ASSIGNMENT, every assignment is "
            "released and exercises/ folders without a source are removed."
        ),
    )
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment folder name(s), e.g. 02_tokenization")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser(
        "validate", parents=[common], help="check that solutions pass all tests and stubs pass none",
        description=(
            "Run every solution notebook and every released stub (with its hidden tests restored, as "
            "autograding sees it) and report each graded test cell. Fails (exit 1) if a solution "
            "misses a point or raises anywhere, if a stub earns any point, if a released notebook "
            "shows outputs or solution/hidden-test text, or if exercises/ differs from a fresh "
            "generation."
        ),
    )
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment(s) to check (default: all)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None,
                   help="notebooks run side by side (default: number of CPUs)")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                   help="seconds one cell may run (default: Execute.timeout in nbgrader_config.py)")
    p.add_argument("--skip-release-check", action="store_true",
                   help="do not compare exercises/ with a fresh generation")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "check", parents=[common], help="check a notebook before you submit it (for students)",
        description=(
            "Say whether NOTEBOOK is one of the course's released notebooks (matched by its cell ids "
            "against exercises/) under the right file name, whether its test cells are as released, "
            "whether it runs top to bottom within the time limit, in the grading sandbox, and which "
            "of its visible tests pass. Only what the notebook holds is run: hidden tests decide the "
            "grade, so this is no score. Exit 0 when all is well and every visible test passes, "
            "1 otherwise. The course is the nearest folder with nbgrader_config.py and exercises/ "
            "above NOTEBOOK or the current folder, or --course DIR; solutions/ is never read."
        ),
    )
    p.add_argument("notebook", type=Path, metavar="NOTEBOOK", help="the notebook to check (.ipynb)")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                   help="seconds one cell may run before it is interrupted "
                        "(default: Execute.timeout in nbgrader_config.py, as in grading)")
    p.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap",
                   help="bwrap (default): run the notebook in the grading sandbox, which must be installed "
                        "(apt-get install bubblewrap); none: run it with your rights (a warning says so)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "autograde", parents=[common], help="grade a folder of student submissions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Autograde SUBMISSIONS/<student_id>/<assignment>/<notebook>.ipynb against solutions/.\n"
            "Each student is graded in its own process and scratch course; results go to DIR:\n"
            "  grades.csv      student_id,assignment,score,max_score,status,notebooks,\n"
            "                  late_seconds,penalty (score after the late penalty)\n"
            "  gradebook.db    nbgrader gradebook with every grade (or the database at --db)\n"
            "  feedback/<student_id>/<assignment>/<notebook>.html\n"
            "  autograded/, logs/, results.json (per-cell scores and timings)\n"
            "A student's broken, missing or endless notebook costs only that student's affected\n"
            "points and is named in the status column, and so does anything unsafe in SUBMISSIONS\n"
            "(links, pipes, devices, oversized notebooks, names that are no student id), which is\n"
            "never followed or read. Feedback pages carry no script from student content and\n"
            "do not show the hidden tests (see --feedback-shows-tests). Re-running replaces the\n"
            "results of the assignments graded and keeps those of other assignments (and, with\n"
            "--student, of other students).\n"
            "Late penalties: a submission whose timestamp.txt is past its assignment's due date\n"
            "(LLMCourse.due_dates in nbgrader_config.py) gets nbgrader's late penalty, by the\n"
            "method set there (LatePenalty.penalty_method: none, zero or percent_per_day).\n"
            "Student code runs sandboxed (bubblewrap: no network, no view of solutions/, the\n"
            "gradebook, other students or your files; limits below), and a test cell whose\n"
            "grading environment student code changed scores 0 ('tampering detected')."
        ),
    )
    p.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="folder with one sub-folder per student")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--db", metavar="URL", default=None, dest="db_url",
                   help="write the gradebook to this database instead of DIR/gradebook.db: any SQLAlchemy "
                        "URL nbgrader supports, e.g. postgresql+psycopg2://USER@/gradebook?host=/run/postgresql "
                        "(connected to before anyone is graded; a password is never printed)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None,
                   help="students graded side by side (default: number of CPUs)")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                   help="seconds one cell may run before it is interrupted "
                        "(default: Execute.timeout in nbgrader_config.py)")
    p.add_argument("--student-timeout", type=_positive_float, default=None, metavar="S",
                   help="hard limit in seconds for one student's assignment (default: 20 x --timeout, "
                        "at least 300)")
    p.add_argument("-a", "--assignment", action="append", dest="assignments", metavar="ASSIGNMENT",
                   help="grade only this assignment (repeatable; default: every assignment found "
                        "in SUBMISSIONS; students without it get a 'missing submission' row)")
    p.add_argument("--student", action="append", dest="students", metavar="STUDENT_ID",
                   help="regrade only this student (repeatable; a folder SUBMISSIONS/STUDENT_ID must exist); "
                        "everyone else's rows, feedback and gradebook entries in DIR are kept as they are")
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="send the jobs to the workers of a running Dask scheduler (tcp://HOST:PORT) "
                        "instead of grading on this machine; every worker needs the course package "
                        "and bubblewrap, not a shared file system (--jobs is then unused)")
    p.add_argument("--feedback-shows-tests", action="store_true",
                   help="show the hidden tests' source, and full tracebacks, in the feedback pages "
                        "(default: each test's score and error message only, so the hidden tests "
                        "stay hidden when the pages are sent back)")
    p.add_argument("--max-notebook-mb", type=_megabytes, default=DEFAULT_MAX_NOTEBOOK_MB, metavar="MB",
                   help="a submitted notebook larger than this is not read and scores 0 "
                        f"(default: {DEFAULT_MAX_NOTEBOOK_MB:g})")
    limits = p.add_argument_group("sandbox and limits (each hit is named in the status column)")
    limits.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap",
                        help="bwrap (default): every student's kernel runs in a bubblewrap sandbox, which "
                             "must be installed (apt-get install bubblewrap); none: student code runs with "
                             "your rights (a warning says so; only for submissions you trust)")
    limits.add_argument("--memory-mb", type=_whole_mb, default=Limits.memory_mb, metavar="MB",
                        help="memory of a student's kernel and everything it starts, each process and all "
                             f"together ('memory limit'; default: {Limits.memory_mb})")
    limits.add_argument("--max-processes", type=_positive_int, default=Limits.processes, metavar="N",
                        help="processes and threads a student's code may run at once "
                             f"('process limit'; default: {Limits.processes})")
    limits.add_argument("--max-file-mb", type=_whole_mb, default=Limits.file_size_mb, metavar="MB",
                        help="largest file a student's code may write; its private working folder and /tmp "
                             f"hold twice that each, in memory ('file size limit'; default: {Limits.file_size_mb})")
    limits.add_argument("--max-output-mb", type=_megabytes, default=DEFAULT_MAX_OUTPUT_MB, metavar="MB",
                        help="outputs kept per notebook; the cell that prints past it is interrupted "
                             f"('output limit'; default: {DEFAULT_MAX_OUTPUT_MB:g})")
    p.set_defaults(func=cmd_autograde)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("llmcourse.grading")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _say(args):
    return (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def cmd_list(args) -> int:
    import nbformat

    from llmcourse.grading.execution import is_autograded_test, nbgrader_meta

    course = Course.load(args.course)
    for assignment in course.resolve_assignments(None):
        print(assignment)
        for notebook in course.notebooks(assignment):
            nb = nbformat.read(str(course.source_dir / assignment / f"{notebook}.ipynb"), as_version=4)
            tests = [(nbgrader_meta(c)["grade_id"], nbgrader_meta(c).get("points", 0))
                     for c in nb.cells if is_autograded_test(c)]
            total = sum(float(p) for _, p in tests)
            print(f"  {notebook}.ipynb  {len(tests)} test cell(s), {total:g} point(s)")
            for grade_id, points in tests:
                print(f"    {grade_id:<30} {float(points):g}")
    return 0


def cmd_release(args) -> int:
    from llmcourse.grading.release import release

    course = Course.load(args.course)
    names = release(course, args.assignments)
    for name in names:
        print(f"released {course.release_dir.relative_to(course.root)}/{name}/ "
              f"({', '.join(n + '.ipynb' for n in course.notebooks(name))})")
    return 0


def cmd_validate(args) -> int:
    from llmcourse.grading.validate import format_report, validate

    course = Course.load(args.course)
    names = course.resolve_assignments(args.assignments)
    _say(args)(f"validating {', '.join(names)} ...")
    report = validate(course, names, jobs=args.jobs, timeout=args.timeout,
                      check_release=not args.skip_release_check)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_check(args) -> int:
    from llmcourse.grading.check import check, format_check

    report = check(args.notebook, course_root=args.course, timeout=args.timeout,
                   sandbox_kind=args.sandbox, progress=_say(args))
    print(format_check(report))
    return 0 if report.ok else 1


def cmd_autograde(args) -> int:
    from llmcourse.grading.autograde import autograde, format_summary

    course = Course.load(args.course)
    report = autograde(
        course, args.submissions, args.out, jobs=args.jobs, timeout=args.timeout,
        student_timeout=args.student_timeout, assignments=args.assignments, progress=_say(args),
        feedback_shows_tests=args.feedback_shows_tests, max_notebook_mb=args.max_notebook_mb,
        sandbox_kind=args.sandbox, max_output_mb=args.max_output_mb, cluster=args.cluster,
        limits=Limits.for_files(memory_mb=args.memory_mb, processes=args.max_processes,
                                file_size_mb=args.max_file_mb),
        db_url=args.db_url, students=args.students,
    )
    print(format_summary(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _setup_logging(args.quiet)
    from llmcourse.grading.execution import ensure_tool_path

    ensure_tool_path()
    try:
        return args.func(args)
    except GradingError as exc:
        print(f"llmcourse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"llmcourse {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
