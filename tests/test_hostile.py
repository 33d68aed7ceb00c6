"""Grading that holds up against hostile students: safe feedback pages, hidden tests that
stay hidden, and a submissions folder read as untrusted input.

The fast tests check each defence on its own (:mod:`llmcourse.grading.feedback`,
:mod:`llmcourse.grading.intake`). The slow ones autograde the fixture course twice:
once with a batch in which every kind of hostile submission sits beside an honest
student, who must still get full marks, and once with ``--feedback-shows-tests``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from llmcourse.grading import cli, intake
from llmcourse.grading.course import sqlite_url
from llmcourse.grading.execution import nbgrader_meta
from llmcourse.grading.feedback import SanitizeStudentContent, WithholdHiddenTests, safe_page

FIXTURE = Path(__file__).resolve().parent / "grading_fixtures"
SOURCE = FIXTURE / "solutions" / "00_smoke" / "arith.ipynb"
RELEASED = FIXTURE / "exercises" / "00_smoke" / "arith.ipynb"
IS_ROOT = os.geteuid() == 0


# ----------------------------------------------------------------------------
# reading a page the way a browser would find its active parts
# ----------------------------------------------------------------------------
class Page(HTMLParser):
    """Every tag (with where it is: head or body), attribute and text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str]] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.texts: list[str] = []
        self._in_head = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "head":
            self._in_head = True
        self.tags.append((tag, "head" if self._in_head else "body"))
        self.attributes.extend((tag, name.lower(), value or "") for name, value in attrs)

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "head":
            self._in_head = False

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return " ".join("".join(self.texts).split())


ACTIVE_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "base", "link",
               "svg", "math", "input", "button", "textarea", "audio", "video", "source", "meta", "style"}


def _squeeze(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isprintable() and not ch.isspace())


def active_content(page: str) -> list[str]:
    """Everything in ``page`` that could run script, load something remote or leave the page."""
    found = []
    parsed = Page(page)
    for tag, where in parsed.tags:
        if tag == "script" or (tag in ACTIVE_TAGS and where == "body"):
            found.append(f"<{tag}> in the {where}")
    for tag, name, value in parsed.attributes:
        squeezed = _squeeze(value)
        if name.startswith("on"):
            found.append(f"<{tag} {name}=...>")
        if name == "src" and not squeezed.startswith("data:image/"):
            found.append(f"<{tag} src={value[:40]!r}> (only embedded images)")
        if name in ("href", "action", "formaction", "xlink:href", "srcdoc", "style", "content") and (
                "javascript:" in squeezed or "vbscript:" in squeezed or squeezed.startswith("data:")):
            found.append(f"<{tag} {name}={value[:60]!r}>")
        if tag == "meta" and name == "http-equiv" and value.lower() != "content-security-policy":
            found.append(f"<meta http-equiv={value!r}>")
    return found


def policy(page: str) -> str:
    parsed = Page(page)
    metas = [(t, n, v) for t, n, v in parsed.attributes if t == "meta"]
    for index, (_, name, value) in enumerate(metas):
        if name == "http-equiv" and value.lower() == "content-security-policy":
            return metas[index + 1][2]
    return ""


# ----------------------------------------------------------------------------
# feedback pages (fast, no kernel)
# ----------------------------------------------------------------------------
HOSTILE_BODY = """
<h4>arith (Score: 3.0 / 3.0)</h4>
<ol><li><a href="#add_test">Tests of <code>add</code></a> (Score: 1.0 / 1.0)</li></ol>
<script>alert(1)</script>
<img src=x onerror=alert(2)>
<a href="javascript:alert(3)">a</a> <a href="jav&#x09;ascript:alert(4)">b</a> <a href="JaVaScRiPt:alert(5)">c</a>
<a href="data:text/html,<script>alert(6)</script>">d</a>
<iframe src="javascript:alert(7)"></iframe><iframe srcdoc="<script>alert(8)</script>"></iframe>
<svg onload=alert(9)><script>alert(10)</script></svg>
<math><mtext><table><mglyph><style><img src=x onerror=alert(11)></style></mglyph></table></mtext></math>
<object data="javascript:alert(12)"></object><embed src="javascript:alert(13)">
<form action="javascript:alert(14)"><button formaction="javascript:alert(15)">go</button></form>
<meta http-equiv="refresh" content="0;url=javascript:alert(16)"><base href="javascript:alert(17)//">
<link rel="stylesheet" href="https://example.invalid/x.css"><img src="https://example.invalid/pixel.png">
<div style="background-image: url(javascript:alert(18)); color: red">styled</div>
<a name="x" onmouseover="alert(19)">n</a><img src="data:image/png;base64,iVBOR" width=1 onerror=alert(20)>
<!-- <script>alert(21)</script> -->
</body></html><script>alert(22)</script><body onload="alert(23)">
<pre>honest output: AssertionError: expected 3</pre>
"""


def _rendered(body: str) -> str:
    """A page as nbgrader's template renders it: head with styles and scripts, then the body."""
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\" />\n<title>arith</title>\n"
            "<style type=\"text/css\">.score { color: black; }</style>\n"
            "<script src=\"https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js\"></script>\n"
            "<script type=\"text/x-mathjax-config\">MathJax.Hub.Config({});</script>\n"
            f"</head>\n<body>\n{body}\n</body>\n</html>\n")


def test_checker_finds_every_attack_in_a_raw_page():
    """The checker used below is not blind: on the raw page it finds each attack."""
    found = " ".join(active_content(_rendered(HOSTILE_BODY)))
    for needle in ("<script>", "onerror", "alert(3)", "alert(4)", "alert(6)", "<iframe>", "<svg>", "<object>",
                   "<form>", "http-equiv='refresh'", "<base>", "<link>", "pixel.png", "alert(18)", "onmouseover",
                   "<body onload"):
        assert needle.strip("<>") in found, needle


def test_safe_page_keeps_no_script_handler_or_remote_load():
    page = safe_page(_rendered(HOSTILE_BODY))
    assert active_content(page) == []
    assert "alert(" not in " ".join(v for t, n, v in Page(page).attributes if not (t == "img" and n == "src"))
    assert "default-src 'none'" in policy(page) and "script-src" not in policy(page)
    parsed = Page(page)
    assert [tag for tag, where in parsed.tags if where == "head"] == ["head", "meta", "meta", "title", "style"]
    # the honest content is all still there
    text = parsed.text
    for honest in ("arith (Score: 3.0 / 3.0)", "Tests of add (Score: 1.0 / 1.0)", "styled",
                   "honest output: AssertionError: expected 3"):
        assert honest in text
    assert ("a", "href", "#add_test") in parsed.attributes
    assert ".score { color: black; }" in page and ("div", "style", "color: red;") in parsed.attributes


def _notebook_with_outputs():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("show()")
    code.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": '<b onmouseover="alert(1)">bold</b><script>alert(2)</script>', "text/plain": "html"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(3)", "text/plain": "js"}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg onload='alert(4)'/>"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"},
                               metadata={"image/png": {"width": "1 onerror=alert(5)"}}),
        nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "widget"}),
    ]
    markdown = nbformat.v4.new_markdown_cell("> a quote\n\n[x](javascript:alert(6))")
    raw = nbformat.v4.new_raw_cell("<script>alert(7)</script>raw text", metadata={"raw_mimetype": "text/html"})
    nb.cells = [code, markdown, raw]
    return nb


def test_student_outputs_are_sanitized_before_rendering():
    nb, _ = SanitizeStudentContent().preprocess(_notebook_with_outputs(), {})
    html, js, svg, png, widget = nb.cells[0].outputs
    assert html.data["text/html"] == "<b>bold</b>alert(2)" and html.data["text/plain"] == "html"
    assert set(js.data) == {"text/plain"} and set(svg.data) == set() and set(widget.data) == {"text/plain"}
    assert png.data == {"image/png": "iVBOR"} and png.metadata == {}
    assert nb.cells[1].source == "> a quote\n\n[x](javascript:alert(6))", "Markdown is cleaned once rendered"
    assert "<script>" not in nb.cells[2].source and "raw text" in nb.cells[2].source


def _test_cell(source: str, traceback: list[str]):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1}
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=traceback)]
    return cell


def test_hidden_tests_and_their_tracebacks_are_withheld():
    hidden = ("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(2.5, 0.25) == 2.75\n"
              "### END HIDDEN TESTS")
    test = _test_cell(hidden, ["Cell In[4], line 3", "----> 3 assert add(2.5, 0.25) == 2.75", "AssertionError"])
    visible_only = _test_cell("assert add(1, 2) == 4", ["----> 1 assert add(1, 2) == 4", "AssertionError"])
    broken = _test_cell("### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\nsecret()", ["secret()"])
    student = nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nmy own code")
    nb = nbformat.v4.new_notebook(cells=[test, visible_only, broken, student])
    nb, _ = WithholdHiddenTests().preprocess(nb, {})
    assert nb.cells[0].source == "assert add(1, 2) == 3"
    assert nb.cells[0].outputs[0].traceback == ["AssertionError"]
    assert nb.cells[1].outputs[0].traceback[0] == "----> 1 assert add(1, 2) == 4", "nothing hidden: kept whole"
    assert "secret" not in nb.cells[2].source and nb.cells[2].outputs[0].traceback == ["AssertionError"]
    assert nb.cells[3].source == "### BEGIN HIDDEN TESTS\nmy own code"


# ----------------------------------------------------------------------------
# the submissions folder (fast, no kernel)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "s1234567", "a.b-c_d@uni.example", "X"])
def test_valid_student_ids(name):
    assert intake.student_id_problem(name) is None


@pytest.mark.parametrize("name, problem", [
    ("a..b", "'..'"),
    ("back\\slash", "path separator"),
    ("new\nline", "control"),
    ("alice\n", "control"),  # a trailing newline once slipped through the old `^...$` check
    ("tab\there", "control"),
    ("esc\x1b[31mred", "control"),
    ("x" * 65, "longer than 64"),
    ("-dash", "letters, digits"),
    ("josé", "letters, digits"),
    ("a b", "letters, digits"),
])
def test_invalid_student_ids(name, problem):
    assert problem in intake.student_id_problem(name)
    shown = intake.printable(name)
    assert shown.isprintable() and "\n" not in shown and len(shown) <= 110


@pytest.mark.parametrize("name", ['=HYPERLINK("https://example.invalid")', "+1", "-dash", "@SUM(A1)"])
def test_invalid_ids_never_start_a_csv_cell_as_a_formula(name):
    assert intake.student_id_problem(name) is not None
    assert intake.StudentFolder(name, valid_id=False).student_id == "'" + name


def _mkfile(path: Path, data: bytes = b"{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_read_file_reads_a_plain_file(tmp_path):
    _mkfile(tmp_path / "a" / "nb.ipynb", b"hello")
    assert intake.read_file(tmp_path, ["a", "nb.ipynb"], 10) == b"hello"


def _refusal(tmp_path: Path, parts, max_bytes: int = 1000) -> intake.Refused:
    with pytest.raises(intake.Refused) as exc:
        intake.read_file(tmp_path, parts, max_bytes)
    return exc.value


def test_read_file_refuses_links_pipes_and_folders(tmp_path):
    secret = _mkfile(tmp_path / "outside" / "solution.ipynb", b"SOLUTION")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "link.ipynb").symlink_to(secret)
    os.link(secret, tmp_path / "s" / "hard.ipynb")
    os.mkfifo(tmp_path / "s" / "pipe.ipynb")
    (tmp_path / "s" / "dir.ipynb").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert "symbolic link" in str(_refusal(tmp_path, ["s", "link.ipynb"]))
    assert "2 hard links" in str(_refusal(tmp_path, ["s", "hard.ipynb"]))
    assert "named pipe" in str(_refusal(tmp_path, ["s", "pipe.ipynb"]))  # returns at once: never opened
    assert "folder, not a file" in str(_refusal(tmp_path, ["s", "dir.ipynb"]))
    assert "cannot be opened" in str(_refusal(tmp_path, ["linked", "solution.ipynb"]))
    assert all(_refusal(tmp_path, p).kind == "unsafe file" for p in (["s", "link.ipynb"], ["s", "pipe.ipynb"]))


@pytest.mark.skipif(not IS_ROOT, reason="creating a device file needs root")
def test_read_file_never_opens_a_device(tmp_path):
    os.mknod(tmp_path / "zero.ipynb", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    assert "character device" in str(_refusal(tmp_path, ["zero.ipynb"]))


def test_read_file_refuses_an_oversized_file_without_reading_it(tmp_path, monkeypatch):
    big = tmp_path / "big.ipynb"
    with open(big, "wb") as fh:
        fh.truncate(300 * intake.MB)  # sparse: 300 MB that take no disk
    reads = []
    real_read = os.read
    monkeypatch.setattr(intake.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    refused = _refusal(tmp_path, ["big.ipynb"], max_bytes=20 * intake.MB)
    assert refused.kind == "too large" and "300.0 MB" in refused.detail
    assert reads == []
    nb, raw, problem = intake.read_notebook(tmp_path, ["big.ipynb"], 20)
    assert nb is None and problem.startswith("notebook too large:") and "20 MB" in problem


@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_json_is_refused(depth):
    raw = ('{"cells": ' + "[" * depth + "]" * depth + ', "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    nb, problem = intake.parse_notebook(raw.encode(), "arith.ipynb")
    assert nb is None and "nested" in problem and "arith.ipynb" in problem


def test_nesting_depth_counts_lists_and_dicts():
    assert intake.nesting_depth({"a": [1, {"b": []}]}, 10) == 4
    assert intake.nesting_depth("text", 10) == 0
    assert intake.nesting_depth([[[[[]]]]], 2) == 3, "counting stops just past the limit"


@pytest.mark.parametrize("text, ok", [("2025-01-31 17:59:00 UTC", True), ("not a date at all", False),
                                      ("9" * 150, False)])
def test_timestamp_is_checked_with_nbgraders_parser(tmp_path, text, ok):
    _mkfile(tmp_path / "timestamp.txt", text.encode())
    stamp, problem = intake.read_timestamp(tmp_path, ["timestamp.txt"])
    assert (stamp == text and problem is None) if ok else (stamp is None and problem.startswith("bad timestamp"))


def test_scan_reports_links_and_bad_names_and_follows_nothing(tmp_path):
    subs = tmp_path / "subs"
    _mkfile(subs / "alice" / "00_smoke" / "arith.ipynb")
    _mkfile(tmp_path / "elsewhere" / "00_smoke" / "arith.ipynb")
    (subs / "linked_student").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (subs / "bob").mkdir()
    (subs / "bob" / "00_smoke").symlink_to(tmp_path / "elsewhere" / "00_smoke", target_is_directory=True)
    _mkfile(subs / "bad..name" / "00_smoke" / "arith.ipynb")
    os.mkfifo(subs / "pipe")
    _mkfile(subs / "README.txt", b"stray")
    warnings: list[str] = []
    found = {s.student_id: s for s in intake.scan(subs, ["00_smoke"], None, warnings.append)}
    assert set(found) == {"alice", "linked_student", "bob", "bad..name"}
    assert found["alice"].problem is None and found["alice"].assignments == {"00_smoke": None}
    assert "linked_student/ is a symbolic link" in found["linked_student"].problem
    assert found["linked_student"].assignments == {}, "a linked student folder is not looked into"
    assert "bob/00_smoke/ is a symbolic link" in found["bob"].assignments["00_smoke"]
    assert found["bad..name"].problem.startswith("invalid student id") and not found["bad..name"].valid_id
    assert any("pipe" in w and "named pipe" in w for w in warnings)
    assert any("README.txt" in w for w in warnings)


def test_cli_checks_the_size_cap_and_documents_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["autograde", "subs", "--out", "o", "--max-notebook-mb", "0"])
    assert exc.value.code == 2 and "above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["autograde", "--help"])
    text = capsys.readouterr().out
    assert "--feedback-shows-tests" in text and "--max-notebook-mb" in text


# ----------------------------------------------------------------------------
# end to end: one batch of hostile submissions beside an honest student (slow)
# ----------------------------------------------------------------------------
def _solution():
    """The released notebook with the solution's answers: full marks."""
    source, nb = nbformat.read(str(SOURCE), 4), nbformat.read(str(RELEASED), 4)
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source.cells if nbgrader_meta(c).get("solution")}
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in answers:
            cell.source = answers[nbgrader_meta(cell)["grade_id"]]
    return nb


def _answer(nb, grade_id):
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


HOSTILE_OUTPUTS = r'''
from IPython.display import HTML, Javascript, Markdown, display
display(HTML('<script>document.title="pwned"</script><b onmouseover="alert(1)">bold</b>'
             '<a href="javascript:alert(2)">link</a><img src="https://example.invalid/pixel.png">'
             '<iframe srcdoc="<script>alert(3)</script>"></iframe><svg onload="alert(4)"></svg>'
             '<math><mtext><table><mglyph><style><img src=x onerror=alert(5)>'))
display(Javascript('alert(6)'))
display(Markdown('[md](javascript:alert(7)) <img src=x onerror=alert(8)>'))
display({'image/svg+xml': '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(9)"/>'}, raw=True)
display({'image/png': 'iVBORw0KGgo='}, raw=True, metadata={'image/png': {'width': '1 onerror=alert(10)'}})
print('<script>alert(11)</script>')
'''


def hostile_content():
    """Full marks, plus script, handlers and javascript: links in Markdown, raw cells and outputs."""
    nb = _solution()
    _answer(nb, "add_answer").source += "\n" + HOSTILE_OUTPUTS
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(
        "# Hi\n<script>alert(12)</script>\n<img src=x onerror=alert(13)>\n\n[link](javascript:alert(14))\n\n"
        "<a href='javascript:alert(15)'>a</a> <iframe src='javascript:alert(16)'></iframe>"
        "<style>body{display:none}</style>"))
    nb.cells.append(nbformat.v4.new_raw_cell("<script>alert(17)</script>", metadata={"raw_mimetype": "text/html"}))
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('<img src=x onerror=alert(18)>')"))
    return nb


def wrong_hidden():
    """``add`` that passes the visible test and fails a hidden one: 2 of 3 points."""
    nb = _solution()
    _answer(nb, "add_answer").source = "def add(a, b):\n    return int(a) + int(b)"
    return nb


INVALID_IDS = ["bad..id", "x" * 100, "new\nline", "back\\slash", "tab\there", "=1+1"]


def make_hostile_batch(subs: Path, outside: Path) -> dict[str, str]:
    """Every hostile case of the submissions folder, one student each; return the expected
    status prefix (and a fragment of it) of each."""
    solution = _solution()
    nbformat.write(solution, str(_mkfile(outside / "00_smoke" / "arith.ipynb")))

    def put(student: str) -> Path:
        (subs / student / "00_smoke").mkdir(parents=True)
        return subs / student / "00_smoke"

    nbformat.write(solution, str(put("honest") / "arith.ipynb"))
    nbformat.write(hostile_content(), str(put("hostile_content") / "arith.ipynb"))
    nbformat.write(wrong_hidden(), str(put("wrong_hidden") / "arith.ipynb"))
    (put("symlink_notebook") / "arith.ipynb").symlink_to(SOURCE)  # the instructor's source: full marks, once
    (subs / "symlink_assignment").mkdir()
    (subs / "symlink_assignment" / "00_smoke").symlink_to(SOURCE.parent, target_is_directory=True)
    (subs / "symlink_student").symlink_to(outside, target_is_directory=True)
    os.link(outside / "00_smoke" / "arith.ipynb", put("hard_link") / "arith.ipynb")
    os.mkfifo(put("fifo") / "arith.ipynb")
    with open(put("huge") / "arith.ipynb", "wb") as fh:
        fh.truncate(300 * intake.MB)
    (put("deep_json") / "arith.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    folder = put("bad_timestamp")
    nbformat.write(solution, str(folder / "arith.ipynb"))
    (folder / "timestamp.txt").write_text("the night before the deadline")
    folder = put("linked_timestamp")
    nbformat.write(solution, str(folder / "arith.ipynb"))
    (folder / "timestamp.txt").symlink_to("/etc/hostname")
    expected = {
        "symlink_notebook": "unsafe file: symlink_notebook/00_smoke/arith.ipynb is a symbolic link",
        "symlink_assignment": "unsafe file: symlink_assignment/00_smoke/ is a symbolic link",
        "symlink_student": "unsafe file: symlink_student/ is a symbolic link",
        "hard_link": "unsafe file: hard_link/00_smoke/arith.ipynb has 2 hard links",
        "fifo": "unsafe file: fifo/00_smoke/arith.ipynb is a named pipe (FIFO)",
        "huge": "notebook too large: huge/00_smoke/arith.ipynb is 300.0 MB, over the 20 MB limit",
        "deep_json": "malformed notebook: arith.ipynb is JSON nested too deeply",
    }
    if IS_ROOT:
        os.mknod(put("device") / "arith.ipynb", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        expected["device"] = "unsafe file: device/00_smoke/arith.ipynb is a character device"
    for name in INVALID_IDS:
        nbformat.write(solution, str(put(name) / "arith.ipynb"))
        expected[intake.shown_id(name)] = "invalid student id: "
    return expected


def _autograde(tmp: Path, subs: Path, *flags: str) -> dict:
    out = tmp / "out"
    code = cli.main(["autograde", str(subs), "--out", str(out), "--course", str(FIXTURE), "--jobs", "2",
                     "--timeout", "20", "--student-timeout", "120", "-q", *flags])
    with open(out / "grades.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    return {"code": code, "out": out, "rows": rows, "results": json.loads((out / "results.json").read_text())}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    expected = make_hostile_batch(tmp / "subs", tmp / "outside")
    return {**_autograde(tmp, tmp / "subs"), "expected": expected}


@pytest.fixture(scope="module")
def shows_tests(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shows-tests")
    nbformat.write(wrong_hidden(), str(_mkfile(tmp / "subs" / "wrong_hidden" / "00_smoke" / "arith.ipynb")))
    return _autograde(tmp, tmp / "subs", "--feedback-shows-tests")


def _page(batch: dict, student: str) -> str:
    return (batch["out"] / "feedback" / student / "00_smoke" / "arith.html").read_text()


def _score(row: dict) -> tuple[float, float]:
    return float(row["score"]), float(row["max_score"])


@pytest.mark.slow
def test_honest_students_keep_full_marks_beside_hostile_ones(hostile):
    assert hostile["code"] == 0
    rows = hostile["rows"]
    for student in ("honest", "hostile_content"):
        assert _score(rows[student]) == (3, 3) and rows[student]["status"] == "ok", rows[student]
    assert _score(rows["wrong_hidden"]) == (2, 3) and rows["wrong_hidden"]["status"] == "ok"
    assert set(rows) == {"honest", "hostile_content", "wrong_hidden", "bad_timestamp", "linked_timestamp",
                         *hostile["expected"]}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["symlink_notebook", "symlink_assignment", "symlink_student", "hard_link", "fifo",
                                  "device", "huge", "deep_json"])
def test_unsafe_submission_gets_its_own_status_and_no_points(hostile, case):
    if case not in hostile["expected"]:
        pytest.skip("creating a device file needs root")
    row = hostile["rows"][case]
    assert row["status"].startswith(hostile["expected"][case]), row["status"]
    assert _score(row) == (0, 3)
    assert not (hostile["out"] / "autograded" / case).exists(), "nothing of it was run"


@pytest.mark.slow
def test_bad_timestamps_are_ignored_and_the_notebook_graded(hostile):
    """A timestamp.txt that is no date once stopped the whole batch; a linked one is not followed."""
    bad, linked = hostile["rows"]["bad_timestamp"], hostile["rows"]["linked_timestamp"]
    assert _score(bad) == (3, 3) and bad["status"].startswith("bad timestamp: ") and "not a date" in bad["status"]
    assert _score(linked) == (3, 3) and linked["status"].startswith("unsafe file: ")
    assert "timestamp.txt is a symbolic link" in linked["status"]


@pytest.mark.slow
def test_invalid_student_ids_get_a_row_and_nothing_else(hostile):
    from nbgrader.api import Gradebook

    out = hostile["out"]
    for name in INVALID_IDS:
        row = hostile["rows"][intake.shown_id(name)]
        assert row["status"].startswith("invalid student id: ") and _score(row) == (0, 3)
    made = {p.name for kind in ("feedback", "autograded", "logs") if (out / kind).is_dir()
            for p in (out / kind).iterdir()}
    assert made and all(intake.student_id_problem(name) is None for name in made)
    with Gradebook(sqlite_url(out / "gradebook.db"), "llmcourse") as gb:
        ids = {s.id for s in gb.students}
    assert "honest" in ids and all(intake.student_id_problem(i) is None for i in ids)


@pytest.mark.slow
def test_feedback_carries_no_script_from_student_content(hostile):
    page = _page(hostile, "hostile_content")
    assert active_content(page) == []
    assert "default-src 'none'" in policy(page)
    text = Page(page).text
    assert "arith (Score: 3.0 / 3.0)" in text and "Student's answer" in text and "add_test" in text
    assert "bold" in text and "md" in text, "the harmless part of the student's output is kept"
    assert "ValueError" in text, "the student's own error message is kept (as text)"
    assert active_content(_page(hostile, "honest")) == []


@pytest.mark.slow
def test_feedback_shows_results_but_not_hidden_tests(hostile):
    page = _page(hostile, "wrong_hidden")
    text = Page(page).text
    assert "arith (Score: 2.0 / 3.0)" in text
    assert "assert add(1, 2) == 3" in text, "the visible test is shown"
    assert "AssertionError" in text, "and the error the failing test raised"
    for hidden in ("HIDDEN TESTS", "add(2.5, 0.25)", "add(-4, 4)", "_rng.uniform"):
        assert hidden not in text, hidden
    source = nbformat.read(str(hostile["out"] / "autograded" / "wrong_hidden" / "00_smoke" / "arith.ipynb"), 4)
    assert "add(2.5, 0.25)" in _answer(source, "add_test").source, "graded on the hidden tests all the same"


@pytest.mark.slow
def test_feedback_shows_hidden_tests_when_asked(shows_tests):
    assert shows_tests["code"] == 0 and _score(shows_tests["rows"]["wrong_hidden"]) == (2, 3)
    page = _page(shows_tests, "wrong_hidden")
    text = Page(page).text
    for hidden in ("BEGIN HIDDEN TESTS", "add(2.5, 0.25)", "_rng.uniform"):
        assert hidden in text, hidden
    assert active_content(page) == [], "the page is cleaned all the same"


# ============================================================================
# Student code that attacks the grader: the sandbox and the grading guard
# ============================================================================
# The fast tests check each defence on its own (:mod:`llmcourse.grading.guard`,
# :mod:`llmcourse.grading.supervisor`, the command line). The slow ones autograde one
# batch of a small course whose tests use torch, numpy and math: two honest students
# beside students who try to escape the sandbox, exhaust a limit, or forge their grades.
from llmcourse.grading import guard, sandbox  # noqa: E402
from llmcourse.grading.supervisor import guard_plan  # noqa: E402

REPO = FIXTURE.parents[1]


def _sandbox_problem() -> str | None:
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable as exc:
        return str(exc)
    return None


SANDBOX_PROBLEM = _sandbox_problem()
needs_bwrap = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"no sandbox here: {SANDBOX_PROBLEM}")


# ----------------------------------------------------------------------------
# the guard on its own (fast, in this process)
# ----------------------------------------------------------------------------
class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class NeverUnequal:
    def __ne__(self, other):
        return False


class LyingList(list):
    def __contains__(self, item):
        return True


def _honest_values():
    import collections
    import dataclasses

    import numpy as np
    import torch

    point = collections.namedtuple("Point", "x y")

    @dataclasses.dataclass
    class Pair:
        a: int
        b: int

    return [1, 2.5, "text", b"bytes", None, True, (1, 2), [1, [2, (3, "x")]], {"a": [1, 2]}, {1, 2},
            frozenset({3}), collections.Counter("aab"), collections.OrderedDict(a=1), point(1, 2), Pair(1, 2),
            torch.ones(3), torch.nn.Parameter(torch.ones(2)), torch.Size([2, 3]), np.arange(3), np.float64(2.0),
            object(), range(3), float("nan")]


@pytest.mark.parametrize("index", range(len(_honest_values())))
def test_honest_values_do_not_claim_equality(index):
    value = _honest_values()[index]
    assert guard.equal_to_anything(value, guard._trusted_types()) is None, repr(value)


@pytest.mark.parametrize("value, who", [
    (AlwaysEqual(), "AlwaysEqual"),
    (NeverUnequal(), "NeverUnequal"),
    ([1, (2, AlwaysEqual())], "AlwaysEqual"),
    ({"key": AlwaysEqual()}, "AlwaysEqual"),
    ({AlwaysEqual(): 1}, "AlwaysEqual"),
])
def test_objects_equal_to_anything_are_found(value, who):
    assert guard.equal_to_anything(value, guard._trusted_types()) == who


def test_verdicts_must_be_signed_with_the_key():
    line = guard.verdict_line("k" * 64, "nonce1", "add_test", "pass", "").decode()
    assert guard.read_verdict(line, "k" * 64, "nonce1", "add_test") == ("pass", "")
    assert guard.read_verdict(line, "x" * 64, "nonce1", "add_test") is None, "another key"
    assert guard.read_verdict(line, "k" * 64, "nonce2", "add_test") is None, "another cell's verdict"
    assert guard.read_verdict(line, "k" * 64, "nonce1", "mean_test") is None, "another test"
    forged = json.loads(line) | {"status": "fail"}
    assert guard.read_verdict(json.dumps(forged), "k" * 64, "nonce1", "add_test") is None, "an edited status"
    junk = "not json\n" + json.dumps({"nonce": "nonce1"}) + "\n" + line
    assert guard.read_verdict(junk, "k" * 64, "nonce1", "add_test") == ("pass", "")


class InProcessJudge:
    """The judge installed in a fresh namespace of this process, as it is in a kernel."""

    def __init__(self, tmp_path: Path, modules=("torch", "math", "numpy", "numpy.testing"), bindings=None):
        import builtins

        self.path = tmp_path / "verdicts"
        self.path.touch()
        self.key = os.urandom(16).hex()
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.snapshot = guard.install(self.key, str(self.path), list(modules), bindings or {}, user_ns=self.ns)
        self.count = 0

    def cell(self, source: str) -> None:
        exec(compile(source, "<student cell>", "exec"), self.ns)

    def test(self, source: str, grade_id: str = "t") -> tuple[str, str] | None:
        """Run a test cell through the judge; its verdict (status, detail)."""
        self.count += 1
        nonce = f"n{self.count}"
        judge = self.ns[guard.JUDGE]
        judge.load(nonce, grade_id, source)
        try:
            judge.run(grade_id, nonce)
        except BaseException:  # noqa: BLE001  (the verdict says what happened)
            pass
        return guard.read_verdict(self.path.read_text(), self.key, nonce, grade_id)


@pytest.fixture()
def judge(tmp_path):
    made = InProcessJudge(tmp_path)
    yield made
    if made.snapshot.changes():
        made.snapshot.restore()  # whatever a test changed in this process is put back


def test_judge_passes_honest_tests_and_fails_wrong_ones(judge):
    judge.cell("import torch, math\ndef double(x):\n    return 2 * x")
    assert judge.test("assert torch.allclose(double(torch.ones(2)), torch.full((2,), 2.0))") == ("pass", "")
    assert judge.test("assert [1, 2] == [1, 2] and 3 in {3}\nx = torch.ones(3)\nassert (x == x).all()") == ("pass", "")
    assert judge.test("assert 1 < 2 < 3 == 3 != 4") == ("pass", "")
    status, detail = judge.test("assert double(2) == 5, 'double(2) is 4'")
    assert status == "fail" and detail == "AssertionError: double(2) is 4"


@pytest.mark.parametrize("patch, what", [
    ("torch.allclose = lambda *a, **k: True", "torch.allclose was replaced"),
    ("torch.equal = lambda *a, **k: True", "torch.equal was replaced"),
    ("torch.Tensor.__eq__ = lambda self, other: True", "torch.Tensor.__eq__ was replaced"),
    ("import numpy.testing\nnumpy.testing.assert_allclose = lambda *a, **k: None",
     "numpy.testing.assert_allclose was replaced"),
    ("math.isclose = lambda *a, **k: True", "math.isclose was replaced"),
    ("import builtins\nbuiltins.abs = lambda x: 0", "builtins.abs was replaced"),
    ("import builtins\nbuiltins.isinstance = lambda *a: True", "builtins.isinstance was replaced"),
    ("import sys\nsys.excepthook = lambda *a: None", "sys.excepthook was replaced"),
    ("import sys, io\nsys.stderr = io.StringIO()", "sys.stderr was replaced"),
    ("import sys\nsys.settrace(lambda *a: None)", "a trace or profile function was set"),
    ("import sys\nsys.modules['math'] = type(sys)('math')", "the module math was replaced in sys.modules"),
    ("__builtins__ = {'abs': lambda x: 0}", "the notebook's __builtins__ was replaced"),
])
def test_judge_finds_and_undoes_a_changed_environment(judge, patch, what):
    import math

    import numpy.testing
    import torch

    originals = (torch.allclose, torch.equal, torch.Tensor.__eq__, numpy.testing.assert_allclose, math.isclose, abs,
                 sys.excepthook, sys.stderr, sys.gettrace())
    judge.cell("import torch, math\ndef double(x):\n    return x")  # wrong
    judge.cell(patch)
    status, detail = judge.test("assert torch.allclose(double(torch.ones(2)), torch.full((2,), 2.0))")
    assert status == "tampering" and what in detail, detail
    assert (torch.allclose, torch.equal, torch.Tensor.__eq__, numpy.testing.assert_allclose, math.isclose, abs,
            sys.excepthook, sys.stderr, sys.gettrace()) == originals, "put back"
    assert judge.test("assert torch.allclose(double(torch.ones(2)), torch.full((2,), 2.0))")[0] == "fail", \
        "the next test runs against the real references"


def test_judge_finds_a_change_made_during_the_test(judge):
    judge.cell("import torch\ndef double(x):\n    torch.allclose = lambda *a, **k: True\n    return x")
    status, detail = judge.test("assert torch.allclose(double(torch.ones(2)), torch.full((2,), 2.0))")
    assert status == "tampering" and "torch.allclose was replaced" in detail


def test_judge_finds_student_code_running_in_another_thread(judge):
    judge.cell("import threading, time, torch\nstop = threading.Event()\n"
               "def swap():\n    while not stop.wait(0.001):\n        pass\n"
               "threading.Thread(target=swap, daemon=True).start()")
    try:
        status, detail = judge.test("assert torch.allclose(torch.ones(1), torch.ones(1))")
        assert status == "tampering" and "student code was running in another thread" in detail
    finally:
        judge.ns["stop"].set()
    time.sleep(0.1)
    assert judge.test("assert torch.allclose(torch.ones(1), torch.ones(1))") == ("pass", ""), "once it has ended"


def test_judge_finds_a_rebound_module_name(tmp_path):
    made = InProcessJudge(tmp_path, bindings={"torch": ["torch", None], "F": ["torch.nn", "functional"]})
    made.cell("import torch\nimport torch.nn.functional as F")
    assert made.test("assert F.relu(torch.tensor(-1.0)) == 0") == ("pass", "")
    made.cell("class torch:\n    allclose = staticmethod(lambda *a, **k: True)")
    status, detail = made.test("assert torch.allclose(1, 2)")
    assert status == "tampering" and "name torch no longer refers to the module torch" in detail
    made.snapshot.restore()


@pytest.mark.parametrize("answer", [
    "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\ndef pairs(xs):\n    return AlwaysEqual()",
    "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\ndef pairs(xs):\n    return [AlwaysEqual()]",
    "class Lying(list):\n    def __contains__(self, item):\n        return True\ndef pairs(xs):\n    return Lying()",
    "import torch\nclass Fake(torch.Tensor):\n    @classmethod\n"
    "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
    "        return True\ndef pairs(xs):\n    return torch.zeros(1).as_subclass(Fake)",
])
def test_objects_that_fake_comparisons_earn_nothing(judge, answer):
    judge.cell(answer)
    for test in ("assert pairs([1, 2, 3]) == [(1, 2), (2, 3)]", "assert (1, 2) in pairs([1, 2])",
                 "import torch\nassert torch.allclose(pairs([1]), torch.ones(1))"):
        assert judge.test(test)[0] != "pass", (answer, test)


def test_a_library_wrapper_of_a_reference_is_not_tampering(judge):
    """torch rebinds torch.manual_seed to a wrapper of itself when torch._dynamo loads."""
    import functools

    import torch

    original = torch.manual_seed
    try:
        torch.manual_seed = torch._disable_dynamo(original)
        assert judge.test("import torch\ntorch.manual_seed(0)") == ("pass", "")
        judge.cell("import functools, torch\n"
                   "torch.allclose = functools.wraps(torch.allclose)(lambda *a, **k: True)")
        assert judge.test("assert torch.allclose(torch.ones(1), torch.zeros(1))")[0] == "tampering", \
            "a wrapper written in the notebook is no library's"
    finally:
        torch.manual_seed = original
    assert functools  # imported for the student cell's sake only


def test_a_test_cell_that_never_reaches_the_judge_has_no_verdict(judge):
    judge.cell(f"{guard.JUDGE} = type('Fake', (), {{'load': staticmethod(lambda *a: None), "
               "'run': staticmethod(lambda *a: None)})")
    assert judge.test("assert False") is None


def test_guard_plan_watches_what_the_instructor_cells_import():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn"),
        _test_cell("import torch as _torch\nfrom llmcourse.grading.checks import assert_own_code\nimport a.b.c", []),
        nbformat.v4.new_code_cell("import numpy as np"),
    ])
    nb.cells[2].metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "answer"}
    plan = guard_plan(nb)
    assert plan["modules"] == ["torch", "llmcourse.grading.checks", "a", "a.b.c"]
    assert plan["bindings"] == {"math": ["math", None], "torch": ["torch", None],
                                "F": ["torch.nn.functional", None], "nn": ["torch", "nn"]}, "answers bind nothing"


def _exercises() -> dict:
    """Every exercise the harness of tests/test_exercises.py knows, by folder."""
    import importlib

    modules = sorted(path.stem for path in (REPO / "tests").glob("test_exercise_*.py"))
    return {ex.folder: ex for ex in (importlib.import_module(name).EXERCISE for name in modules)}


def run_judged(tmp_path: Path, nb, replace: dict[str, str], skip: tuple[str, ...]) -> dict[str, tuple | None]:
    """Run a notebook's code cells in this process as the autograder would: test cells through
    the judge (installed first, watching what guard_plan says); {test cell: verdict}."""
    import contextlib
    import io
    import warnings

    import torch

    plan = guard_plan(nb)
    verdicts = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = InProcessJudge(tmp_path, plan["modules"], plan["bindings"])
        try:
            for cell in nb.cells:
                gid = nbgrader_meta(cell).get("grade_id")
                if cell.cell_type != "code" or (gid is None and any(s in cell.source for s in skip)):
                    continue
                if nbgrader_meta(cell).get("grade") and not nbgrader_meta(cell).get("solution"):
                    verdicts[gid] = made.test(cell.source, gid)
                else:
                    made.cell(replace.get(gid, cell.source))
        finally:
            torch.set_num_threads(threads)
            if made.snapshot.changes():
                made.snapshot.restore()
    return verdicts


EXERCISE_FOLDERS = sorted(_exercises())


@pytest.mark.slow
@pytest.mark.parametrize("folder", EXERCISE_FOLDERS)
def test_honest_solutions_in_every_style_pass_under_the_judge(tmp_path, folder):
    """No false alarm: the solution and each correct alternative of the exercise harness
    (tests/exercise_support.py) earn every test cell through the judge."""
    ex = _exercises()[folder]
    nb = ex.load()
    variants = {"solution": {}, **{name: {gid: code} for name, (gid, code) in ex.alternatives.items()}}
    for name, replace in variants.items():
        verdicts = run_judged(tmp_path, nb, replace, ex.skip)
        assert verdicts and all(v == ("pass", "") for v in verdicts.values()), (name, verdicts)
    name, (gid, code) = next(iter(ex.wrong.items()))  # and the judge is no rubber stamp
    verdict = run_judged(tmp_path, nb, {gid: code}, ex.skip)[f"test_{gid}"]
    assert verdict is not None and verdict[0] == "fail", (name, verdict)


# ----------------------------------------------------------------------------
# end to end: one batch of students who attack the grader, beside honest ones (slow)
# ----------------------------------------------------------------------------
MARKER = "hidden-test-marker-8d1e"  # only in a hidden test: found anywhere a student can read, it leaked
GUARD_CELLS = [  # (kind, grade id, source, points) of solutions/01_guard/guard.ipynb
    ("markdown", "intro", "# Three small functions\n\nThe course used by the grader's hostile tests.", 0),
    ("setup", None, "import math\n\nimport numpy as np\nimport torch", 0),
    ("answer", "double_answer", 'def double(x):\n    """Twice the tensor x."""\n    ### BEGIN SOLUTION\n'
                                "    return 2 * x\n    ### END SOLUTION", 0),
    ("test", "double_test", "# Tests of `double`\nassert torch.allclose(double(torch.ones(3)), torch.full((3,), 2.0))\n"
                            "### BEGIN HIDDEN TESTS\nimport torch as _torch\n"
                            f"_marker = {MARKER!r}\n_x = _torch.arange(5.0)\n"
                            "assert _torch.equal(double(_x), _x + _x)\n### END HIDDEN TESTS", 1),
    ("answer", "pairs_answer", 'def pairs(xs):\n    """Each item with the next one, as tuples."""\n'
                               "    ### BEGIN SOLUTION\n    return list(zip(xs, xs[1:]))\n    ### END SOLUTION", 0),
    ("test", "pairs_test", "# Tests of `pairs`\nassert pairs([1, 2, 3]) == [(1, 2), (2, 3)]\n"
                           "### BEGIN HIDDEN TESTS\nassert pairs([]) == []\nassert pairs([5, 6]) == [(5, 6)]\n"
                           "### END HIDDEN TESTS", 1),
    ("answer", "half_answer", 'def half(x):\n    """Half of x."""\n    ### BEGIN SOLUTION\n    return x / 2\n'
                              "    ### END SOLUTION", 0),
    ("test", "half_test", "# Tests of `half`\nassert math.isclose(half(3.0), 1.5)\n### BEGIN HIDDEN TESTS\n"
                          "import numpy.testing as _npt\n_npt.assert_allclose(half(np.arange(4.0)), [0, 0.5, 1, 1.5])\n"
                          "assert abs(half(-7) + 3.5) < 1e-12\n### END HIDDEN TESTS", 1),
]


def make_guard_course(root: Path) -> Path:
    """A one-notebook course whose tests use torch, numpy and math, released with nbgrader."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, gid, source, points in GUARD_CELLS:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        if gid:
            cell.metadata["nbgrader"] = {"grade": kind == "test", "grade_id": gid, "locked": kind != "answer",
                                         "schema_version": 3, "solution": kind == "answer", "task": False,
                                         **({"points": points} if kind == "test" else {})}
        nb.cells.append(cell)
    (root / "solutions" / "01_guard").mkdir(parents=True)
    nbformat.write(nb, str(root / "solutions" / "01_guard" / "guard.ipynb"))
    assert cli.main(["release", "--course", str(root), "-q"]) == 0
    return root


WRONG = {"double_answer": "def double(x):\n    return x",
         "pairs_answer": "def pairs(xs):\n    return []",
         "half_answer": "def half(x):\n    return x"}
OTHER_STYLE = {"double_answer": "def double(x):\n    return x + x",
               "pairs_answer": "def pairs(xs):\n    return [(xs[i], xs[i + 1]) for i in range(len(xs) - 1)]",
               "half_answer": "def half(x):\n    return 0.5 * x"}
ALWAYS_EQUAL = "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n" \
               "def pairs(xs):\n    return Anything()"
PATCH_TORCH = "torch.allclose = lambda *args, **kwargs: True\ntorch.equal = lambda *args, **kwargs: True"
PATCH_MATH = ("import builtins\nimport numpy.testing\nmath.isclose = lambda *args, **kwargs: True\n"
              "numpy.testing.assert_allclose = lambda *args, **kwargs: None\nbuiltins.abs = lambda x: 0")
SILENCE = ("import io, sys\nsys.excepthook = lambda *args: None\nsys.stderr = io.StringIO()\n"
           "get_ipython().showtraceback = lambda *args, **kwargs: None")
REWRITE_TESTS = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"
FORGE_VERDICTS = r'''
import json, os, re, stat
import ipykernel
def _forge(lines):
    text = "".join(lines)
    found = re.search(r"run\('(\w+)', '(\w+)'\)", text)
    if found:  # a "pass" for this very cell, signed with a key guessed wrong, into every file it can
        line = json.dumps({"nonce": found[2], "grade_id": found[1], "status": "pass", "detail": "",
                           "mac": "0" * 64}) + "\n"
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.write(fd, line.encode())
            except OSError:
                pass
        folder = os.path.dirname(ipykernel.get_connection_file())
        for name in os.listdir(folder):
            try:
                with open(os.path.join(folder, name), "a") as fh:
                    fh.write(line)
            except OSError:
                pass
        return ["pass\n"]
    return lines
get_ipython().input_transformers_cleanup.append(_forge)
'''
MEMORY_HOG = "hog = bytearray(12 * 1024 ** 3)"
FILE_HOG = ("with open('big.bin', 'wb') as fh:\n    for _ in range(5 * 1024):\n"
            "        fh.write(b'x' * 1024 ** 2)")
OUTPUT_HOG = "for _ in range(500):\n    print('x' * 1024 ** 2)"
FORK_BOMB = ("import subprocess\nchildren = []\nfor _ in range(1500):\n"
             "    children.append(subprocess.Popen(['sleep', '120']))")


def escape_code(paths: dict[str, str], targets: dict[str, str], port: int, sleeper: str) -> str:
    """A cell that tries to read, write, connect and leave a process behind, and prints what happened."""
    return f'''
import json, os, pathlib, socket, subprocess
tried = {{}}
def attempt(label, action):
    try:
        tried[label] = "allowed: " + str(action())[:300]
    except Exception as exc:
        tried[label] = "denied: " + type(exc).__name__
for label, path in {paths!r}.items():
    attempt("read " + label, lambda path=path: open(path, "rb").read(200))
import llmcourse
repo = pathlib.Path(llmcourse.__file__).resolve().parents[2]
attempt("list solutions/ beside the package", lambda: os.listdir(repo / "solutions"))
attempt("read solutions/ beside the package", lambda: open(next((repo / "solutions").rglob("*.ipynb")), "rb").read(200))
for label, path in {targets!r}.items():
    attempt("write " + label, lambda path=path: open(path, "w").write("student was here"))
def connect():
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as s:
        return "connected"
attempt("connect", connect)
def search():
    marker, hits = ("hidden-test-" + "marker-8d1e").encode(), []
    for top, dirs, files in os.walk("/"):
        if top in ("/proc", "/sys", "/dev"):
            dirs[:] = []
            continue
        for name in files:
            if name.endswith((".ipynb", ".db", ".json", ".log", ".txt")) or name.startswith("verdicts"):
                try:
                    with open(os.path.join(top, name), "rb") as fh:
                        if marker in fh.read(20_000_000):
                            hits.append(os.path.join(top, name))
                except OSError:
                    pass
    return hits
tried["hidden tests found in files"] = search()
tried["processes seen"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
subprocess.Popen(["sleep", "{sleeper}"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", "{sleeper}"])
print("ESCAPE " + json.dumps(tried))
'''


def guard_student(released, answers: dict[str, str] | None = None, before: str | None = None,
                  after: str | None = None):
    """The released notebook with the solution's answers (or ``answers``), and a cell of the
    student's own before the first answer or at the end."""
    source = {gid: src for kind, gid, src, _ in GUARD_CELLS if kind == "answer"}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in source:
            cell.source = (answers or {}).get(gid, source[gid])
    if before:
        nb.cells.insert(2, nbformat.v4.new_code_cell(before))
    if after:
        nb.cells.append(nbformat.v4.new_code_cell(after))
    return nb


def make_attack_batch(root: Path, port: int, sleeper: str) -> dict:
    """The course, the submissions (one student per attack, two honest ones) and what the
    escaping student tries; returns the paths the test checks afterwards."""
    course = make_guard_course(root / "course")
    released = nbformat.read(str(course / "exercises" / "01_guard" / "guard.ipynb"), 4)
    secret = root / "instructor" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the instructor's own file")
    subs = root / "subs"
    name = f"student-was-here-{os.urandom(6).hex()}"
    reads = {"the repository's solutions/": str(next((REPO / "solutions").rglob("*.ipynb"))),
             "the repository's nbgrader_config.py": str(REPO / "nbgrader_config.py"),
             "the course's hidden tests": str(course / "solutions" / "01_guard" / "guard.ipynb"),
             "another student's notebook": str(subs / "honest" / "01_guard" / "guard.ipynb"),
             "the instructor's files": str(secret)}
    writes = {"the repository": str(REPO / name), "solutions/": str(REPO / "solutions" / name),
              "the package": str(REPO / "src" / "llmcourse" / name), "the root folder": f"/{name}",
              "the instructor's home": str(Path.home() / name), "the host's /tmp": f"/tmp/{name}",
              "the course": str(course / name)}
    students = {
        "honest": guard_student(released),
        "honest_style": guard_student(released, OTHER_STYLE),
        "patches_torch": guard_student(released, {"double_answer": WRONG["double_answer"]}, before=PATCH_TORCH),
        "always_equal": guard_student(released, {"pairs_answer": ALWAYS_EQUAL}),
        "patches_math": guard_student(released, {"half_answer": WRONG["half_answer"] + "\n" + PATCH_MATH}),
        "silences_errors": guard_student(released, WRONG, before=SILENCE),
        "rewrites_tests": guard_student(released, WRONG, before=REWRITE_TESTS),
        "forges_verdicts": guard_student(released, WRONG, before=FORGE_VERDICTS),
        "escapes": guard_student(released, before=escape_code(reads, writes, port, sleeper)),
        "memory_hog": guard_student(released, before=MEMORY_HOG),
        "file_hog": guard_student(released, before=FILE_HOG),
        "output_hog": guard_student(released, before=OUTPUT_HOG),
        "fork_bomb": guard_student(released, after=FORK_BOMB),
    }
    for student, nb in students.items():
        nbformat.write(nb, str(_mkfile(subs / student / "01_guard" / "guard.ipynb")))
    return {"course": course, "subs": subs, "reads": reads, "writes": writes}


def _host_processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def attacks():
    """One autograde run over every attacking student, beside two honest ones, sandboxed."""
    if SANDBOX_PROBLEM is not None:
        pytest.skip(f"no sandbox here: {SANDBOX_PROBLEM}")
    # Not under /tmp: the sandbox must hide these because they are not bound, not just
    # because its private /tmp covers the host's.
    root = Path(tempfile.mkdtemp(prefix="llmcourse-hostile-", dir=Path.home()))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    sleeper = f"{400 + os.getpid() % 500}.{os.urandom(3).hex()[:5].translate(str.maketrans('abcdef', '123456'))}"
    try:
        batch = make_attack_batch(root, server.getsockname()[1], sleeper)
        out = root / "out"
        start = time.perf_counter()
        code = cli.main(["autograde", str(batch["subs"]), "--out", str(out), "--course", str(batch["course"]),
                         "--jobs", "2", "--timeout", "60", "--student-timeout", "300", "-q"])
        seconds = time.perf_counter() - start
        server.settimeout(0.5)
        try:
            server.accept()
            connected = True
        except socket.timeout:
            connected = False
        leftovers = _host_processes_with(f"sleep {sleeper}")
        escaped = [path for path in batch["writes"].values() if os.path.lexists(path)]
        for path in escaped:  # never leave a student's file in the repository
            os.remove(path)
        with open(out / "grades.csv", newline="") as fh:
            rows = {r["student_id"]: r for r in csv.DictReader(fh)}
        yield {**batch, "code": code, "out": out, "rows": rows, "connected": connected, "leftovers": leftovers,
               "escaped": escaped, "seconds": seconds}
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


def _escape_report(batch: dict) -> dict:
    nb = nbformat.read(str(batch["out"] / "autograded" / "escapes" / "01_guard" / "guard.ipynb"), 4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "ESCAPE " in out.get("text", ""):
                return json.loads(out["text"].split("ESCAPE ", 1)[1].splitlines()[0])
    raise AssertionError("the escaping student's cell printed no report")


@pytest.mark.slow
def test_honest_students_keep_full_marks_beside_attackers(attacks, capsys):
    assert attacks["code"] == 0
    for student in ("honest", "honest_style", "escapes"):
        row = attacks["rows"][student]
        assert _score(row) == (3, 3) and row["status"] == "ok", row
    with capsys.disabled():
        print(f"\n[hostile batch] {len(attacks['rows'])} students, sandboxed, 2 jobs: {attacks['seconds']:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize("student, score, what", [
    ("patches_torch", 2, "torch.allclose was replaced"),
    ("always_equal", 2, "an object that compares equal to anything (Anything)"),
    ("patches_math", 2, "half_test: builtins.abs was replaced; math.isclose was replaced; "
                        "numpy.testing.assert_allclose was replaced"),
    ("silences_errors", 0, "IPython's showtraceback was replaced"),
    ("rewrites_tests", 0, "tampering detected"),
    ("forges_verdicts", 0, "did not report its result to the grader"),
])
def test_forged_grades_earn_nothing(attacks, student, score, what):
    row = attacks["rows"][student]
    assert _score(row) == (score, 3), row
    assert row["status"].startswith("tampering detected: guard.ipynb") and what in row["status"], row["status"]


@pytest.mark.slow
def test_tampering_is_shown_in_the_feedback(attacks):
    text = Page((attacks["out"] / "feedback" / "patches_torch" / "01_guard" / "guard.html").read_text()).text
    assert "TamperingDetected" in text and "torch.allclose was replaced" in text
    assert MARKER not in text


@pytest.mark.slow
@pytest.mark.parametrize("student, status", [
    ("memory_hog", "memory limit: guard.ipynb cell 3 stopped at --memory-mb 4096"),
    ("file_hog", "file size limit: guard.ipynb cell 3 stopped at --max-file-mb 256"),
    ("output_hog", "output limit: guard.ipynb printed more than --max-output-mb 20"),
    ("fork_bomb", "process limit: guard.ipynb cell 9 stopped at --max-processes 256"),
])
def test_limits_stop_hogs_and_say_so(attacks, student, status):
    row = attacks["rows"][student]
    assert status in row["status"], row["status"]
    assert _score(row) == (3, 3), "a hog's own tests still ran"


@pytest.mark.slow
def test_student_code_reads_none_of_the_instructors_files(attacks):
    tried = _escape_report(attacks)
    for label in [*(f"read {k}" for k in attacks["reads"]), "list solutions/ beside the package",
                  "read solutions/ beside the package"]:
        assert tried[label].startswith("denied: "), (label, tried[label])
    assert all(Path(p).exists() for p in attacks["reads"].values() if "another student" not in p), \
        "each file it could not read is there"
    assert tried["hidden tests found in files"] == [], "no readable file holds a hidden test"


@pytest.mark.slow
def test_student_code_writes_nowhere_outside_its_sandbox(attacks):
    tried = _escape_report(attacks)
    assert attacks["escaped"] == [], "no file of the student's outside the sandbox"
    for label in attacks["writes"]:
        if label != "the host's /tmp":  # written to the sandbox's own /tmp, gone with it
            assert tried[f"write {label}"].startswith("denied: "), (label, tried[f"write {label}"])
    assert tried["write the host's /tmp"] == "allowed: 16"


@pytest.mark.slow
def test_student_code_has_no_network_and_sees_only_its_processes(attacks):
    tried = _escape_report(attacks)
    assert tried["connect"].startswith("denied: ") and not attacks["connected"]
    assert max(tried["processes seen"]) < 50, tried["processes seen"]


@pytest.mark.slow
def test_no_student_process_outlives_its_job(attacks):
    assert attacks["leftovers"] == []


# ----------------------------------------------------------------------------
# the command line: a sandbox or a clear refusal, never silently none
# ----------------------------------------------------------------------------
def _one_student(tmp_path: Path) -> Path:
    subs = tmp_path / "subs"
    nbformat.write(_solution(), str(_mkfile(subs / "alice" / "00_smoke" / "arith.ipynb")))
    return subs


def test_missing_bwrap_stops_before_anyone_is_graded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "BWRAP", str(tmp_path / "no-bwrap"))
    code = cli.main(["autograde", str(_one_student(tmp_path)), "--out", str(tmp_path / "out"),
                     "--course", str(FIXTURE), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "apt-get install bubblewrap" in err and "--sandbox none" in err, err
    assert not (tmp_path / "out").exists(), "nothing graded, nothing written"


def test_unusable_bwrap_stops_before_anyone_is_graded(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    code = cli.main(["autograde", str(_one_student(tmp_path)), "--out", str(tmp_path / "out"),
                     "--course", str(FIXTURE), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot create a sandbox" in err and "No permissions" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--sandbox", "docker"], "invalid choice"),
    (["--memory-mb", "0"], "at least 1"),
    (["--max-processes", "many"], "whole number"),
    (["--max-file-mb", "-5"], "at least 1"),
    (["--max-output-mb", "0"], "above 0"),
])
def test_cli_checks_the_sandbox_options(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["autograde", "subs", "--out", "o", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_cli_documents_the_sandbox_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["autograde", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # as one line: help text wraps anywhere
    for option in ("--sandbox {bwrap,none}", "--memory-mb", "--max-processes", "--max-file-mb", "--max-output-mb",
                   "apt-get install bubblewrap", "tampering detected"):
        assert option in text, option


@pytest.mark.slow
def test_no_sandbox_is_never_silent(tmp_path, capsys):
    code = cli.main(["autograde", str(_one_student(tmp_path)), "--out", str(tmp_path / "out"),
                     "--course", str(FIXTURE), "--sandbox", "none", "--jobs", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 0 and "--sandbox none: student code runs with your rights" in err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert any("--sandbox none" in w for w in results["warnings"])
    assert results["rows"][0]["score"] == "3" and results["rows"][0]["status"] == "ok", "graded all the same"
