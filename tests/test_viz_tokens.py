"""Tokens in colour (llmcourse.viz.tokens): escaping, one span per token, ids, the playground widget."""

import re

import pytest
from IPython.display import HTML

from llmcourse.viz import show_tokens, token_pieces, tokenizer_playground, tokens_html

SPAN = re.compile(r'<span class="llmcourse-token" data-token-id="(\d+)" title="([^"]*)"[^>]*>(.*?)</span>', re.S)


class ByteTokenizer:
    """Every byte is a token whose id is the byte's value: emoji come out as partial bytes."""

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, i):
        return bytes([i])


class WordTokenizer:
    """Whitespace-split words over a fixed vocabulary of strings, like WordPiece's table."""

    def __init__(self):
        self.vocab = {"[UNK]": 0, "hello": 1, "<b>": 2, "world": 3}
        self.itos = {i: s for s, i in self.vocab.items()}

    def encode(self, text):
        return [self.vocab.get(w, 0) for w in text.split()]

    def id_to_token(self, i):
        return self.itos[i]

    def decode(self, ids):
        raise AssertionError("pieces should come from the vocabulary, not from decode")


class CharTokenizer:
    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def spans(markup):
    return SPAN.findall(markup)


def test_one_span_per_token_with_its_id_in_the_title():
    text = "hello world hello"
    found = spans(tokens_html(WordTokenizer(), text))
    assert [int(i) for i, _, _ in found] == [1, 3, 1]
    assert [body for _, _, body in found] == ["hello", "world", "hello"]
    assert all(title.startswith(f"id {i}") for i, title, _ in found)


def test_ids_and_counts_are_listed():
    markup = tokens_html(CharTokenizer(), "abc")
    assert "[97, 98, 99]" in markup
    assert "3 tokens" in markup and "3 characters" in markup
    assert "[97" not in tokens_html(CharTokenizer(), "abc", show_ids=False)


def test_script_tags_are_escaped_not_run():
    text = '<script>alert("x")</script> & \'q\''
    markup = tokens_html(CharTokenizer(), text)
    assert "<script" not in markup
    assert "&lt;" in markup and "&gt;" in markup and "&quot;" in markup and "&amp;" in markup
    assert len(spans(markup)) == len(text)
    # A token whose vocabulary string is markup is escaped too.
    assert "<b>" not in tokens_html(WordTokenizer(), "hello <b> world")
    assert "&lt;b&gt;" in tokens_html(WordTokenizer(), "hello <b> world")


def test_label_is_escaped():
    markup = tokens_html(CharTokenizer(), "a", label="<i>char</i>")
    assert "<i>" not in markup and "&lt;i&gt;char&lt;/i&gt;" in markup


def test_partial_utf8_bytes_are_shown_as_bytes():
    text = "a🍿"  # the emoji is four bytes: f0 9f 8d bf
    pieces = token_pieces(ByteTokenizer(), text)
    assert [p.partial for p in pieces] == [False, True, True, True, True]
    assert pieces[1].text == "\\xf0" and pieces[1].data == b"\xf0"
    markup = tokens_html(ByteTokenizer(), text)
    found = spans(markup)
    assert len(found) == 5
    assert "bytes f0" in found[1][1] and "part of a UTF-8 character" in found[1][1]
    assert "part of" not in found[0][1]


def test_newlines_stay_visible():
    markup = tokens_html(CharTokenizer(), "a\nb")
    assert "↵" in markup


def test_show_tokens_returns_displayable_html():
    shown = show_tokens(CharTokenizer(), "hi")
    assert isinstance(shown, HTML)
    assert len(spans(shown.data)) == 2


def test_playground_renders_at_creation_and_updates_on_change():
    toks = {"chars": CharTokenizer(), "bytes": ByteTokenizer()}
    pg = tokenizer_playground(toks, "ab")
    assert len(spans(pg.output.value)) == 2  # rendered before any interaction
    assert "[97, 98]" in pg.output.value

    pg.text.value = "abc<d>"
    assert len(spans(pg.output.value)) == 6
    assert ">d<" in pg.output.value and "<d>" not in pg.output.value and "&lt;" in pg.output.value

    pg.text.value = "é"
    assert len(spans(pg.output.value)) == 1
    pg.choice.value = "bytes"  # é is two bytes
    assert len(spans(pg.output.value)) == 2


def test_playground_counts_every_tokenizer_and_has_a_static_fallback():
    pg = tokenizer_playground({"chars": CharTokenizer(), "bytes": ByteTokenizer()}, "é!")
    assert re.search(r"chars</td><td[^>]*>2<", pg.output.value)
    assert re.search(r"bytes</td><td[^>]*>3<", pg.output.value)
    bundle = pg._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].endswith(pg.output.value)
    assert "running kernel" in bundle["text/html"]  # the static fallback says it is static


def test_playground_says_it_needs_a_running_kernel():
    toks = {"chars": CharTokenizer()}
    pg = tokenizer_playground(toks, "ab")
    assert pg.children[0] is pg.note and "running kernel" in pg.note.value
    custom = tokenizer_playground(toks, "ab", note="Run the notebook <to> play.")
    assert "&lt;to&gt;" in custom.note.value  # escaped like every other text
    silent = tokenizer_playground(toks, "ab", note=None)
    assert silent.children[0] is silent.choice and silent.note.value == ""
    assert len(silent.children) == 3


def test_playground_needs_a_tokenizer():
    with pytest.raises(ValueError):
        tokenizer_playground({})


# --- the course's own tokenizers -------------------------------------------------


def test_bpe_pieces_rebuild_the_text_and_mark_split_characters():
    from llmcourse.data import tiny_corpus
    from llmcourse.tokenizers import BPETokenizer

    tok = BPETokenizer.train(tiny_corpus(), vocab_size=300)
    text = "The cat sat 🍿 on the mat."
    pieces = token_pieces(tok, text)
    assert [p.id for p in pieces] == tok.encode(text)
    assert b"".join(p.data for p in pieces).decode("utf-8") == text
    assert any(p.partial for p in pieces)  # the emoji was never merged
    assert all(not p.partial for p in pieces if p.data.isascii())
    assert len(spans(tokens_html(tok, text))) == len(pieces)


def test_wordpiece_pieces_show_vocabulary_strings():
    from llmcourse.tokenizers import WordPieceTokenizer

    wp = WordPieceTokenizer.from_minilm()
    pieces = token_pieces(wp, "Tokenization <b>")
    assert [p.text for p in pieces] == ["[CLS]", "token", "##ization", "<", "b", ">", "[SEP]"]
    markup = tokens_html(wp, "Tokenization <b>")
    assert "##ization" in markup and "&lt;" in markup and "<b>" not in markup


def test_char_tokenizer_pieces_are_characters():
    from llmcourse.tokenizers import CharTokenizer

    tok = CharTokenizer.train("abc")
    assert [p.text for p in token_pieces(tok, "cab€")] == ["c", "a", "b", "<unk>"]
