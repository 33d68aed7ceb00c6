"""The feedback page a student gets back: nbgrader's page, safe to open and safe to send.

nbgrader's ``GenerateFeedback`` renders the autograded notebook as it is: a
student's ``<script>``, ``onerror=`` handler or ``javascript:`` link runs in the
browser of whoever opens the page, and every test cell shows its hidden tests.
The worker (:mod:`llmcourse.grading.worker`) configures it with :func:`configure`
and finishes each page with :func:`make_safe`:

* **No script, handler or remote load from student content**, in three layers,
  the first two built on bleach (the sanitizer nbconvert itself uses):

  1. before rendering, :class:`SanitizeStudentContent` (nbconvert's
     ``SanitizeHTML`` with the allow-list below) drops outputs a browser would run
     (JavaScript, SVG, widget views) and cleans HTML and Markdown outputs and raw cells;
  2. after rendering, :func:`make_safe` rebuilds the page: the template's own
     head (title and style sheets only) and the body cleaned with the same
     allow-list, which also catches what the first layer cannot see (Markdown
     rendered into links, attributes the template builds from cell or output metadata);
  3. a ``Content-Security-Policy`` in the head forbids scripts and remote loads
     in any browser, should anything get through.

* **No work done twice**: :class:`FeedbackExporter`, the
  exporter the worker's ``GenerateFeedback`` renders with, keeps the compiled templates
  for the life of the worker (nbgrader makes a new exporter for every notebook, which
  would compile them again), and leaves out nbconvert's own pass over the page with
  BeautifulSoup: its one change that survives cleaning, ``alt`` text on images that
  have none, is made in the same pass that cleans the page (:class:`DescribeImages`).

* **Hidden tests stay hidden** (unless ``show_tests``): :class:`WithholdHiddenTests`
  removes the hidden region from each test cell (nbgrader's own
  ``ClearHiddenTests``) and shortens the error such a cell raised to its message,
  because a traceback quotes the failing line and the lines around it. Each
  test's score and error message are still on the page.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import jinja2
from bleach.css_sanitizer import CSSSanitizer
from bleach.html5lib_shim import Filter
from bleach.sanitizer import Cleaner
from bs4 import BeautifulSoup
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbconvert.preprocessors.sanitize import SanitizeHTML
from nbgrader.preprocessors import ClearHiddenTests
from traitlets import Bool, Set

from llmcourse.grading.execution import nbgrader_meta

# What a feedback page may hold: text formatting, tables, images, links. No
# script, style, form, frame, object, embed or SVG element; no event handler.
TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "main", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u",
    "ul", "var",
})
COMMON_ATTRIBUTES = frozenset({"class", "id", "title", "style", "align"})
ATTRIBUTES = {
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "ol": {"start"},
    "table": {"border"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
# Links may go anywhere a click takes the reader; images must be embedded (``data:image/...``),
# so that opening a page loads nothing from elsewhere.
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
CSS_PROPERTIES = frozenset({
    "color", "background-color", "font-weight", "font-style", "font-family", "text-align",
    "text-decoration", "vertical-align", "white-space",
})
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
                           "base-uri 'none'; form-action 'none'")


def allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: the allow-list above, and ``data:`` only for embedded images."""
    if name not in COMMON_ATTRIBUTES and name not in ATTRIBUTES.get(tag, ()):
        return False
    if tag == "img" and name == "src":
        return value.strip().lower().startswith("data:image/")
    if name == "href":
        return not value.strip().lower().startswith("data:")
    return True


def clean_html(text: str, filters: tuple = ()) -> str:
    """``text`` with every tag, attribute, URL and style property outside the allow-list removed.

    ``filters`` (html5lib filters) then see the cleaned tokens; what they add must be safe.
    """
    cleaner = Cleaner(tags=TAGS, attributes=allowed_attribute, protocols=PROTOCOLS,
                      css_sanitizer=CSSSanitizer(allowed_css_properties=CSS_PROPERTIES),
                      strip=True, strip_comments=True, filters=list(filters))
    return cleaner.clean(text)


NO_ALT_TEXT = "No description has been provided for this image"  # nbconvert's HTMLExporter's words


class DescribeImages(Filter):
    """Give every image without ``alt`` text nbconvert's fixed one (a constant: nothing from the page)."""

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img":
                token["data"].setdefault((None, "alt"), NO_ALT_TEXT)
            yield token


# ----------------------------------------------------------------------------
# before rendering
# ----------------------------------------------------------------------------
class SanitizeStudentContent(SanitizeHTML):
    """nbconvert's ``SanitizeHTML`` with the feedback page's allow-list (:func:`clean_html`).

    Outputs of any type outside ``safe_output_keys`` and ``sanitized_output_types``
    (HTML and Markdown, which are cleaned) are removed.

    Markdown cells are left to :func:`make_safe`, which cleans them once they are
    HTML: bleach on Markdown source would escape its ``>`` quotes and still miss
    ``[link](javascript:...)``, which is Markdown, not HTML, until it is rendered.
    Outputs keep no metadata (their width and height are written into the page unescaped).
    """

    enabled = Bool(True).tag(config=True)  # nbconvert's default is off; nbgrader registers it as is
    safe_output_keys = Set(default_value={"text/plain", "text/latex", "image/png", "image/jpeg"}).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            return cell, resources
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if "metadata" in output:
                    output["metadata"] = {}
        return super().preprocess_cell(cell, resources, index)

    def sanitize_html_tags(self, html_str: str) -> str:
        return clean_html(html_str)


class WithholdHiddenTests(ClearHiddenTests):
    """Remove the hidden tests from the feedback: nbgrader's ``ClearHiddenTests`` on the
    graded test cells, whose errors keep only their message (``ename: evalue``).

    Only test cells are touched (a student's own cell is not theirs to hide);
    a test cell whose markers do not pair up loses its whole source.
    """

    enforce_metadata = Bool(False).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            return cell, resources
        try:
            hidden = self._remove_hidden_test_region(cell)
        except RuntimeError:
            cell.source, hidden = "# (the tests of this cell are not shown)", True
        if hidden:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    output["traceback"] = [message]
        return cell, resources


# ----------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------
class CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled templates, kept in memory; a template whose source changed is compiled again."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()  # one per process: shared by every exporter it makes


class FeedbackExporter(HTMLExporter):
    """nbconvert's ``HTMLExporter`` with its compiled templates kept per process and
    without its BeautifulSoup pass (see the module docstring). The page, once made safe,
    is the same: :func:`safe_page` adds the ``alt`` text, and the pass's other change,
    ``tabindex`` on JupyterLab's cells, is not on the allow-list anyway."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = COMPILED_TEMPLATES
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node (nbconvert 7) up to the page's BeautifulSoup pass
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


def configure(cfg, show_tests: bool = False) -> None:
    """Set nbgrader's ``GenerateFeedback`` in ``cfg`` to write pages as this module describes."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    steps = [GetGrades, SanitizeStudentContent, CSSHTMLHeaderPreprocessor]
    if not show_tests:
        steps.insert(1, WithholdHiddenTests)
    cfg.GenerateFeedback.preprocessors = steps
    cfg.GenerateFeedback.exporter_class = FeedbackExporter


# ----------------------------------------------------------------------------
# after rendering
# ----------------------------------------------------------------------------
# The template's head: the first one, which the template writes before any cell.
HEAD = re.compile(r"<head(?:\s[^>]*)?>.*?</head\s*>", re.IGNORECASE | re.DOTALL)


def split_head(page: str) -> tuple[str, str]:
    """``(head, rest)``: the page's first ``<head>...</head>``, and the page without it.

    Only ``rest`` can hold student content, and all of it is cleaned. The head is
    cut at its first ``</head>``, never later than a parser would end it. A page
    without a closed head has none: all of it is cleaned.
    """
    match = HEAD.search(page)
    if match is None:
        return "", page
    return match.group(0), page[:match.start()] + page[match.end():]


def safe_page(page: str) -> str:
    """A rendered feedback page rebuilt from its head's title and style sheets, a
    Content-Security-Policy, and its cleaned body (everything outside the head)."""
    head_html, rest = split_head(page)
    head = BeautifulSoup(head_html, "html.parser").head  # the head alone: a few tags, parsed fast
    title = head.title.get_text() if head is not None and head.title is not None else "Feedback"
    styles = [str(style) for style in head.find_all("style")] if head is not None else []
    body = clean_html(rest, filters=(DescribeImages,))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        f"<title>{escape(title)}</title>",
        *styles,
        "</head>",
        "<body>",
        body.strip(),
        "</body>",
        "</html>",
        "",
    ])


def make_safe(html_path: Path) -> None:
    """Rewrite a feedback page in place with :func:`safe_page`."""
    html_path.write_text(safe_page(html_path.read_text(encoding="utf-8")), encoding="utf-8")
