"""The book: its configuration, an offline scratch build, and the real build in Chromium.

Fast tests (run by default):
  * ``_config.yml`` and ``_toc.yml`` parse and name files that exist;
  * ``book/vendor/README.md`` records the versions pinned in ``scripts/vendor_js.sh``;
  * a scratch book (two pages with stored outputs: math, a PNG, a widget, two attention
    views; nothing executed) built with the course's configuration loads no script, stylesheet,
    font or image from another host.

Slow tests (``pytest -m slow tests/test_book.py``; run ``bash scripts/ensure_chromium.sh``
first) build the real book exactly as ``make book`` does,

    python scripts/execute_chapters.py --path-output <tmp>     # chapters run side by side
    jupyter-book build <repo> --path-output <tmp> --warningiserror --nitpick --keep-going

into a temporary folder (so with an empty execution cache: every chapter runs), check
that the build took every chapter from the cache the first command filled, then
serve the HTML on 127.0.0.1 and open every page in Debian's headless Chromium
(/usr/bin/chromium, driven by Playwright; Playwright's own browsers are never used).
A page fails on: a request to any other host (blocked), a failed request or an HTTP
status >= 400, a console error not in CONSOLE_ERROR_ALLOWLIST, an uncaught JavaScript
error, an image that did not load, a font that did not load, saved widget state whose
widgets did not render, math that MathJax did not typeset, or an attention view (bertviz,
``llmcourse.viz.head_view``/``model_view``) that did not draw its SVG.

Environment:
  LLMCOURSE_BOOK_OUTPUT=<dir>       build into <dir> instead of a temporary folder (e.g.
                                    ``.`` reuses the local cache in ./_build/.jupyter_cache;
                                    the cache does not notice changes to src/llmcourse)
  LLMCOURSE_BOOK_SCREENSHOTS=<dir>  save a full-page screenshot of every page opened
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html.parser
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "_config.yml"
TOC = REPO / "_toc.yml"
VENDOR = REPO / "book" / "vendor"
VENDOR_SCRIPT = REPO / "scripts" / "vendor_js.sh"
ENSURE_CHROMIUM = REPO / "scripts" / "ensure_chromium.sh"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

JUPYTER_BOOK = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]
EXECUTE_CHAPTERS = [sys.executable, str(REPO / "scripts" / "execute_chapters.py")]
BUILD_FLAGS = ["--warningiserror", "--nitpick", "--keep-going"]

# Console messages of type "error" that do not fail a page: (pattern, why it is harmless).
# Keep this list tiny; every entry needs a reason.
CONSOLE_ERROR_ALLOWLIST: list[tuple[re.Pattern[str], str]] = []

WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
# bertviz's views (llmcourse.viz.head_view, model_view) draw into <div id="bertviz-<hex>"> ... <div id="vis">
ATTENTION_VIEW = re.compile(r'<div id="(bertviz-[0-9a-f]+)"')
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

# folders of the built HTML that hold assets, not pages (the theme ships Jinja macro
# files named *.html in _static/)
NOT_PAGES = {"_static", "_sources", "_images", "_downloads"}


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), f"{path.name} should hold a mapping, got {type(data).__name__}"
    return data


def toc_files(toc: dict) -> list[str]:
    """Every document named in a jb-book table of contents, root first."""
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return found


def source_for(docname: str, root: Path = REPO) -> Path | None:
    """The source file of a toc entry (written without its suffix), if it exists."""
    for suffix in ("", ".md", ".ipynb"):
        candidate = root / f"{docname}{suffix}"
        if candidate.is_file() and candidate.suffix in (".md", ".ipynb"):
            return candidate
    return None


def build_book(source: Path, output: Path, config: Path | None = None,
               execute_first: bool = False) -> tuple[int, str, float]:
    """Run ``jupyter-book build`` as CI does; return (exit code, log, seconds).

    ``execute_first`` runs ``scripts/execute_chapters.py`` before, as ``make book`` does;
    its output starts the log.
    """
    env = dict(os.environ)
    # tests/conftest.py sets MPLBACKEND=Agg for the test process; the notebook kernels
    # must keep ipykernel's inline backend, or figures vanish from the book.
    env.pop("MPLBACKEND", None)
    cmd = [*JUPYTER_BOOK, "build", str(source), "--path-output", str(output), *BUILD_FLAGS]
    if config is not None:
        cmd += ["--config", str(config)]
    start, log = time.perf_counter(), ""
    if execute_first:
        run = subprocess.run([*EXECUTE_CHAPTERS, "--path-output", str(output)], check=False, cwd=source,
                             env=env, capture_output=True, text=True)
        log = run.stdout + run.stderr
    proc = subprocess.run(cmd, check=False, cwd=source, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return proc.returncode, log + proc.stdout + proc.stderr, seconds


def log_problems(log: str, limit: int = 60) -> str:
    """The lines of a build log that explain a failure (warnings, errors, tracebacks)."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    keep = [
        line
        for line in log.splitlines()
        if re.search(r"WARNING|ERROR|Error|Traceback|Exception|failed", line)
        and "MdParserConfig" not in line
        and "NbParserConfig" not in line
    ]
    if not keep:
        keep = log.splitlines()[-limit:]
    return "\n".join(keep[:limit])


def html_pages(html_dir: Path) -> list[str]:
    """Every page of a built book, as paths relative to its HTML folder."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if rel.parts[0] in NOT_PAGES:
            continue
        pages.append(rel.as_posix())
    return pages


class _AssetCollector(html.parser.HTMLParser):
    """Collects the URLs a page makes the browser load (not prose links)."""

    LOADING_ATTRS: ClassVar[dict[str, tuple[str, ...]]] = {
        "script": ("src",),
        "link": ("href",),
        "img": ("src", "srcset"),
        "iframe": ("src",),
        "source": ("src", "srcset"),
        "audio": ("src",),
        "video": ("src", "poster"),
        "track": ("src",),
        "embed": ("src",),
        "object": ("data",),
    }

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.assets: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self._in_style = False
        self.style_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in self.LOADING_ATTRS.get(tag, ()):
            value = attributes.get(name)
            if not value:
                continue
            urls = (
                [part.strip().split()[0] for part in value.split(",") if part.strip()] if name == "srcset" else [value]
            )
            self.assets.extend((tag, name, url) for url in urls)
        if attributes.get("style"):
            self.style_text.append(attributes["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style_text.append(data)


def remote_asset_problems(html_dir: Path) -> list[str]:
    """Absolute http(s) URLs the built pages would load, and local assets that are missing."""
    problems = []
    for rel in html_pages(html_dir):
        page = html_dir / rel
        collector = _AssetCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        for tag, attr, url in collector.assets:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{rel}: <{tag} {attr}={url!r}> loads from another host")
            elif not parts.scheme and parts.path:
                target = (page.parent / unquote(parts.path)).resolve()
                if not target.exists():
                    problems.append(f"{rel}: <{tag} {attr}={url!r}> names a file missing from the build")
        for css in collector.style_text:
            for url in re.findall(r"(?:@import\s+|url\()\s*['\"]?((?:https?:)?//[^'\")\s]+)", css):
                problems.append(f"{rel}: inline CSS loads {url!r} from another host")
    return problems


@contextlib.contextmanager
def serve(directory: Path):
    """Serve a folder on 127.0.0.1 (random port) in a thread; yield the base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # same signature as the base class
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# JavaScript run in each page -------------------------------------------------------

_JS_OPEN_DETAILS = "() => document.querySelectorAll('details').forEach(d => { d.open = true; })"

_JS_WIDGET_STATUS = """
() => Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')).map(tag => {
  let id = '?';
  try { id = JSON.parse(tag.textContent).model_id; } catch (e) {}
  const area = tag.previousElementSibling;
  const widgets = area && area.classList.contains('widget-subarea')
    ? Array.from(area.querySelectorAll('.jupyter-widgets')) : [];
  const visible = widgets.some(el => el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== 'hidden');
  const errors = area ? Array.from(area.querySelectorAll('.jupyter-widgets-error-widget'))
    .map(el => el.textContent.trim().slice(0, 200)) : [];
  return {id, visible, errors};
})
"""

_JS_ALL_WIDGETS_VISIBLE = f"() => ({_JS_WIDGET_STATUS})().every(w => w.visible)"

_JS_MATH_STATUS = """
async () => {
  const mj = window.MathJax;
  if (!mj || !mj.startup || !mj.startup.promise) {
    return {loaded: false, unrendered: [], errors: []};
  }
  await mj.startup.promise;
  const unrendered = Array.from(document.querySelectorAll('.math'))
    .filter(el => !el.querySelector('mjx-container'))
    .map(el => el.textContent.trim().slice(0, 80));
  const errors = Array.from(document.querySelectorAll('mjx-merror'))
    .map(el => el.getAttribute('data-mjx-error') || el.textContent.slice(0, 80));
  return {loaded: true, unrendered, errors};
}
"""

_JS_BROKEN_IMAGES = """
async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => { img.loading = 'eager'; return img.decode().catch(() => null); }));
  return images.filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.currentSrc || img.getAttribute('src') || img.outerHTML.slice(0, 120));
}
"""

# each bertviz view: its SVG, and how many lines (attention) and texts (tokens) it drew
_JS_ATTENTION_VIEWS = """
() => Array.from(document.querySelectorAll('div[id^="bertviz-"]')).map(root => {
  const svg = root.querySelector('#vis svg');
  return {id: root.id, svg: !!svg, lines: svg ? svg.querySelectorAll('line').length : 0,
          texts: svg ? svg.querySelectorAll('text').length : 0};
})
"""

_JS_ALL_ATTENTION_VIEWS_DRAWN = f"() => ({_JS_ATTENTION_VIEWS})().every(v => v.lines > 0 && v.texts > 0)"

_JS_BROKEN_FONTS = """
async () => {
  await document.fonts.ready;
  return Array.from(document.fonts).filter(f => f.status === 'error').map(f => f.family);
}
"""


def _allowed_console_error(text: str) -> bool:
    return any(pattern.search(text) for pattern, _why in CONSOLE_ERROR_ALLOWLIST)


def check_page(browser, base_url: str, rel: str, static_html: str, screenshot_dir: Path | None) -> list[str]:
    """Open one page in a fresh browser context; return its problems (empty when fine)."""
    problems: list[str] = []
    own_host = urlsplit(base_url).netloc
    blocked: set[str] = set()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

    def route(route_obj):
        url = route_obj.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != own_host:
            blocked.add(url)
            problems.append(f"{rel}: request to another host (blocked): {url}")
            route_obj.abort("blockedbyclient")
        else:
            route_obj.continue_()

    def on_console(msg):
        if msg.type != "error" or _allowed_console_error(msg.text):
            return
        where = msg.location or {}
        if where.get("url") in blocked:  # already reported as a blocked request
            return
        origin = f" [{where.get('url', '')}:{where.get('lineNumber', '')}]" if where.get("url") else ""
        problems.append(f"{rel}: console error: {msg.text}{origin}")

    def on_failed(request):
        if request.url not in blocked:
            problems.append(f"{rel}: request failed ({request.failure}): {request.url}")

    def on_response(response):
        if response.status >= 400:
            problems.append(f"{rel}: HTTP {response.status} for {response.url}")

    def on_page_error(error):
        problems.append(f"{rel}: uncaught JavaScript error: {error.name}: {error.message}")

    try:
        context.route("**/*", route)
        page = context.new_page()
        page.on("console", on_console)
        page.on("requestfailed", on_failed)
        page.on("response", on_response)
        page.on("pageerror", on_page_error)

        url = urljoin(base_url, rel)
        try:
            page.goto(url, wait_until="load", timeout=60_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - report the page and go on with the others
            problems.append(f"{rel}: page did not finish loading ({url}): {exc}")
            return problems

        page.evaluate(_JS_OPEN_DETAILS)

        if WIDGET_STATE_MIME in static_html:
            n_views = static_html.count(f'type="{WIDGET_VIEW_MIME}"')
            if n_views == 0:
                problems.append(f"{rel}: page has saved widget state but no widget view to render")
            else:
                with contextlib.suppress(Exception):
                    page.wait_for_function(_JS_ALL_WIDGETS_VISIBLE, timeout=30_000)
                for status in page.evaluate(_JS_WIDGET_STATUS):
                    if status["errors"]:
                        problems.append(f"{rel}: widget {status['id']} rendered an error: {status['errors']}")
                    elif not status["visible"]:
                        problems.append(f"{rel}: widget {status['id']} was not rendered (no visible .jupyter-widgets)")

        if 'class="math' in static_html:
            math = page.evaluate(_JS_MATH_STATUS)
            if not math["loaded"]:
                problems.append(f"{rel}: page has math but MathJax did not load")
            for tex in math["unrendered"]:
                problems.append(f"{rel}: math not typeset by MathJax: {tex!r}")
            for err in math["errors"]:
                problems.append(f"{rel}: MathJax error: {err}")

        expected_views = ATTENTION_VIEW.findall(static_html)
        if expected_views:
            with contextlib.suppress(Exception):
                page.wait_for_function(_JS_ALL_ATTENTION_VIEWS_DRAWN, timeout=30_000)
            views = {view["id"]: view for view in page.evaluate(_JS_ATTENTION_VIEWS)}
            for view_id in expected_views:
                view = views.get(view_id, {"svg": False, "lines": 0, "texts": 0})
                if not (view["lines"] and view["texts"]):
                    problems.append(
                        f"{rel}: attention view {view_id} did not draw (svg: {view['svg']}, "
                        f"{view['lines']} lines, {view['texts']} texts)"
                    )

        for src in page.evaluate(_JS_BROKEN_IMAGES):
            problems.append(f"{rel}: image did not load: {src}")
        for family in page.evaluate(_JS_BROKEN_FONTS):
            problems.append(f"{rel}: font did not load: {family}")

        with contextlib.suppress(Exception):  # let late requests (fonts, widget assets) settle
            page.wait_for_load_state("networkidle", timeout=15_000)

        if screenshot_dir is not None:
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            name = rel.replace("/", "__").removesuffix(".html") + ".png"
            page.screenshot(path=str(screenshot_dir / name), full_page=True)
    finally:
        context.close()
    return problems


def check_site(browser, html_dir: Path, label: str) -> list[str]:
    pages = html_pages(html_dir)
    assert pages, f"{label}: no HTML pages in {html_dir}"
    shots = os.environ.get("LLMCOURSE_BOOK_SCREENSHOTS")
    screenshot_dir = Path(shots) / label if shots else None
    problems: list[str] = []
    with serve(html_dir) as base_url:
        for rel in pages:
            static_html = (html_dir / rel).read_text(encoding="utf-8")
            problems += check_page(browser, base_url, rel, static_html, screenshot_dir)
    return problems


# --------------------------------------------------------------------------- fixtures


@dataclass
class Build:
    returncode: int
    log: str
    seconds: float
    html_dir: Path


def _scratch_notebook() -> dict:
    """A notebook with stored outputs: a PNG figure, an ipywidgets VBox and two attention
    views (no kernel needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from ipywidgets.embed import embed_data

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2, 3], [0, 1, 4, 9])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode("ascii")

    # the label holds math: ipywidgets typesets it through offline.js's MathJax 2 shim
    slider = widgets.IntSlider(value=3, min=0, max=10, description="\\(k\\) merges")
    label = widgets.HTML(value="<b>merge</b> t + h &rarr; th")
    box = widgets.VBox([slider, label])
    data = embed_data(views=[box])
    view = data["view_specs"][0]
    for w in (slider, label, box):
        w.close()

    # bertviz's head and model views, on the page that also loads require.js and the widget embedder
    import torch

    from llmcourse.viz import head_view, model_view

    gen = torch.Generator().manual_seed(0)
    attention = tuple(torch.randn(1, 2, 4, 4, generator=gen).softmax(-1) for _ in range(2))  # 2 x (1, nh, T, T)
    tokens = ["[CLS]", "the", "cat", "[SEP]"]
    views = {"head_view": head_view(attention, tokens), "model_view": model_view(attention, tokens)}

    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "widgets": {WIDGET_STATE_MIME: data["manager_state"]},
        },
        "cells": [
            {
                "cell_type": "markdown",
                "id": "intro",
                "metadata": {},
                "source": "# Scratch widgets\n\nInline $e^{i\\pi} + 1 = 0$.\n\n$$\n\\mathrm{softmax}(x)_i = \\frac{e^{x_i}}{\\sum_j e^{x_j}}\n$$\n",
            },
            {
                "cell_type": "code",
                "id": "figure",
                "execution_count": 1,
                "metadata": {},
                "source": "plt.plot([0, 1, 2, 3], [0, 1, 4, 9])",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": png, "text/plain": "<Figure>"},
                    }
                ],
            },
            {
                "cell_type": "code",
                "id": "widget",
                "execution_count": 2,
                "metadata": {},
                "source": "widgets.VBox([slider, label])",
                "outputs": [
                    {
                        "output_type": "execute_result",
                        "execution_count": 2,
                        "metadata": {},
                        "data": {WIDGET_VIEW_MIME: view, "text/plain": "VBox(...)"},
                    }
                ],
            },
            *(
                {
                    "cell_type": "code",
                    "id": name,
                    "execution_count": count,
                    "metadata": {},
                    "source": f"{name}(attention, tokens)",
                    "outputs": [
                        {
                            "output_type": "execute_result",
                            "execution_count": count,
                            "metadata": {},
                            "data": {"text/html": shown.data, "text/plain": repr(shown)},
                        }
                    ],
                }
                for count, (name, shown) in enumerate(views.items(), start=3)
            ),
        ],
    }


@pytest.fixture(scope="module")
def scratch_build(tmp_path_factory) -> Build:
    """Two pages with stored outputs, built with the course's _config.yml (execution off)."""
    root = tmp_path_factory.mktemp("scratch_book")
    config = load_yaml(CONFIG)
    config["execute"] = {**config.get("execute", {}), "execute_notebooks": "off"}
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["html_static_path"] = [str((REPO / p).resolve()) for p in sphinx_config.get("html_static_path", [])]
    favicon = config.get("html", {}).get("favicon")
    if favicon:
        config["html"]["favicon"] = str((REPO / favicon).resolve())
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (root / "_toc.yml").write_text(
        yaml.safe_dump({"format": "jb-book", "root": "intro", "chapters": [{"file": "widgets"}]}), encoding="utf-8"
    )
    (root / "intro.md").write_text(
        "# Scratch book\n\nA page with math, $a^2 + b^2 = c^2$, and a prose link to "
        "[an external site](https://example.org).\n\n$$\nP(w_1,\\dots,w_n) = \\prod_i P(w_i \\mid w_{<i})\n$$\n",
        encoding="utf-8",
    )
    (root / "widgets.ipynb").write_text(json.dumps(_scratch_notebook(), indent=1), encoding="utf-8")
    code, log, seconds = build_book(root, root)
    return Build(code, log, seconds, root / "_build" / "html")


@pytest.fixture(scope="module")
def book_build(tmp_path_factory) -> Build:
    """The real book, built as in CI (fresh execution cache unless LLMCOURSE_BOOK_OUTPUT says otherwise)."""
    chosen = os.environ.get("LLMCOURSE_BOOK_OUTPUT")
    output = Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("book")
    code, log, seconds = build_book(REPO, output, execute_first=True)
    print(f"\nexecuting the chapters and jupyter-book build took {seconds:.1f} s (exit code {code}); HTML in {output / '_build' / 'html'}")
    return Build(code, log, seconds, output / "_build" / "html")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if not CHROMIUM.exists() and ENSURE_CHROMIUM.exists() and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["bash", str(ENSURE_CHROMIUM)], check=False, capture_output=True, text=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing and could not be installed (run `bash scripts/ensure_chromium.sh` as root)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


# --------------------------------------------------------------------------- fast tests


def test_config_and_toc_parse_and_name_existing_files():
    config = load_yaml(CONFIG)
    toc = load_yaml(TOC)

    assert config["title"] == "LLMs from the inside"
    assert config["author"] == "The llmcourse authors"
    assert config["only_build_toc_files"] is True
    excluded = set(config["exclude_patterns"])
    for folder in ("solutions", "exercises", "src", "tests", "benchmarks", ".venv", "README.md", "_build"):
        assert folder in excluded, f"_config.yml exclude_patterns should list {folder!r}"

    execute = config["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["allow_errors"] is False
    assert execute["stderr_output"] in ("warn", "error", "severe")
    assert execute["timeout"] >= 60

    # nothing that talks to other hosts
    assert not config["launch_buttons"].get("thebe")
    for key in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url"):
        assert not config["launch_buttons"].get(key), f"launch_buttons.{key} must stay empty"
    assert not config["repository"].get("url"), "repository.url must stay empty (no repository buttons)"
    assert not any(config["html"]["analytics"].values()), "no analytics"
    sphinx_config = config["sphinx"]["config"]
    for ext in ("sphinx_thebe", "sphinx.ext.intersphinx"):
        assert ext not in sphinx_config["extensions"], f"{ext} would reach the network"

    # static files: every local script the config names exists in a static folder
    static_dirs = [REPO / p for p in sphinx_config["html_static_path"]]
    for folder in static_dirs:
        assert folder.is_dir(), f"html_static_path entry {folder} is missing"
        assert folder.name != "_static", "the vendored folder must not be called _static"
    scripts = [*sphinx_config["nb_ipywidgets_js"], sphinx_config["mathjax_path"]]
    for script in scripts:
        assert "://" not in script and not script.startswith("//"), f"{script} is not a local file"
        assert any((folder / script).is_file() for folder in static_dirs), f"{script} is not in {static_dirs}"
    favicon = config["html"].get("favicon")
    if favicon:
        assert (REPO / favicon).is_file(), f"favicon {favicon} is missing"

    # table of contents
    assert toc["format"] == "jb-book"
    assert toc["root"] == "chapters/index"
    captions = [part.get("caption") for part in toc.get("parts", [])]
    assert captions and captions[0] == "Foundations"
    assert "chapters/tokenization" in [c["file"] for c in toc["parts"][0]["chapters"]]
    files = toc_files(toc)
    assert len(files) == len(set(files)), f"a file appears twice in _toc.yml: {files}"
    missing = [f for f in files if source_for(f) is None]
    assert not missing, f"_toc.yml names files that do not exist (.md or .ipynb): {missing}"
    for f in files:
        assert not f.startswith(("solutions/", "exercises/")), f"{f}: solutions/exercises are not part of the book"


def test_vendor_readme_records_pinned_versions():
    script = VENDOR_SCRIPT.read_text(encoding="utf-8")
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    pins = dict(re.findall(r"^([A-Z0-9_]+)_VERSION=([0-9][^\s#]*)", script, flags=re.MULTILINE))
    assert {"REQUIREJS", "HTML_MANAGER", "MATHJAX"} <= set(pins), pins
    packages = {
        "REQUIREJS": "requirejs",
        "HTML_MANAGER": "@jupyter-widgets/html-manager",
        "MATHJAX": "mathjax",
        "D3": "d3",
        "JQUERY": "jquery",
    }
    for key, version in pins.items():
        row = f"| `{packages[key]}` | {version} |"
        assert row in readme, f"book/vendor/README.md lacks {row!r}: re-run scripts/vendor_js.sh"
    for rel in (
        "requirejs/require.js",
        "jupyter-widgets/offline.js",
        "jupyter-widgets/html-manager/dist/embed-amd.js",
        "mathjax/tex-chtml-full.js",
        "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
        "d3/d3.min.js",  # inlined into attention views by llmcourse.viz.head_view / model_view
        "jquery/jquery.min.js",
    ):
        assert (VENDOR / rel).is_file(), f"book/vendor/{rel} is missing: run scripts/vendor_js.sh"


def test_scratch_book_builds_and_loads_nothing_remote(scratch_build):
    assert scratch_build.returncode == 0, f"scratch book build failed:\n{log_problems(scratch_build.log)}"
    html_dir = scratch_build.html_dir
    assert (html_dir / "index.html").is_file()
    widgets_page = (html_dir / "widgets.html").read_text(encoding="utf-8")
    assert WIDGET_STATE_MIME in widgets_page, "the widget state did not reach the page"
    for local in ("_static/requirejs/require.js", "_static/jupyter-widgets/html-manager/dist/embed-amd.js"):
        assert local in widgets_page, f"widgets.html does not load {local}"
    assert "_static/mathjax/tex-chtml-full.js" in (html_dir / "intro.html").read_text(encoding="utf-8")
    assert len(ATTENTION_VIEW.findall(widgets_page)) == 2, "the two attention views did not reach the page"
    problems = remote_asset_problems(html_dir)
    assert not problems, "built HTML loads assets from other hosts or misses files:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- slow tests


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_scratch_book_renders_offline_in_chromium(scratch_build, browser):
    """Widgets, math, images and attention views render from vendored files, whatever the chapters contain."""
    assert scratch_build.returncode == 0, f"scratch book build failed:\n{log_problems(scratch_build.log)}"
    problems = check_site(browser, scratch_build.html_dir, "scratch")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)

    # the slider's label "\(k\) merges" was typeset by MathJax 3 on ipywidgets' MathJax 2 call
    with serve(scratch_build.html_dir) as base_url:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(urljoin(base_url, "widgets.html"), wait_until="load")
            probe = "() => !!document.querySelector('.jupyter-widgets .widget-label mjx-container')"
            with contextlib.suppress(Exception):
                page.wait_for_function(probe, timeout=30_000)
            typeset = page.evaluate(probe)
        finally:
            context.close()
    assert typeset, (
        "widgets.html: the slider label '\\(k\\) merges' was not typeset by MathJax "
        "(MathJax.Hub.Queue shim in book/vendor/jupyter-widgets/offline.js)"
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_book_builds_without_warnings(book_build):
    assert book_build.returncode == 0, (
        f"jupyter-book build failed (exit {book_build.returncode}, {book_build.seconds:.0f} s):\n"
        f"{log_problems(book_build.log)}"
    )
    assert (book_build.html_dir / "index.html").is_file(), "_build/html/index.html was not produced"
    for docname in toc_files(load_yaml(TOC)):
        page = book_build.html_dir / f"{docname}.html"
        assert page.is_file(), f"{docname} is in _toc.yml but {page} was not produced"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_build_takes_every_chapter_from_the_parallel_execution(book_build):
    from myst_nb.core.read import is_myst_markdown_notebook

    notebooks = [name for name in toc_files(load_yaml(TOC))
                 if is_myst_markdown_notebook((REPO / f"{name}.md").read_text(encoding="utf-8"))]
    executed_again = [name for name in notebooks if f"{name}.md: Executing notebook" in book_build.log]
    cached = [name for name in notebooks if f"{name}.md: Using cached notebook" in book_build.log]
    failures = book_build.log[book_build.log.find(" FAILED after "):][:6000] if " FAILED after " in book_build.log else ""
    assert not executed_again, (f"jupyter-book executed {executed_again} again after scripts/execute_chapters.py"
                                f"\n{failures}")
    assert cached == notebooks, f"not from the cache: {sorted(set(notebooks) - set(cached))}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_book_html_loads_nothing_remote(book_build):
    assert (book_build.html_dir / "index.html").is_file(), f"the book was not built:\n{log_problems(book_build.log)}"
    problems = remote_asset_problems(book_build.html_dir)
    assert not problems, "built HTML loads assets from other hosts or misses files:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_book_page_in_chromium(book_build, browser):
    assert (book_build.html_dir / "index.html").is_file(), f"the book was not built:\n{log_problems(book_build.log)}"
    problems = check_site(browser, book_build.html_dir, "book")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
