"""Grading that holds up against hostile students: safe feedback pages, hidden tests that
stay hidden, and a submissions folder read as untrusted input.

The fast tests check each defence on its own (:mod:`llmcourse.grading.feedback`,
:mod:`llmcourse.grading.intake`). The slow ones autograde the fixture course twice:
once with a batch in which every kind of hostile submission sits beside an honest
student, who must still get full marks, and once with ``--feedback-shows-tests``.
"""

from __future__ import annotations

import csv
import json
import os
import stat
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
