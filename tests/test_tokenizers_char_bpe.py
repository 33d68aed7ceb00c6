"""Tests for the character and byte-level BPE tokenizers.

The BPE trainer is checked three ways: a hand-checkable example, a naive
reference that recounts every pair after every merge (written here, independent
of the package), and round trips on hard and random strings.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import regex

from llmcourse.tokenizers import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
)

PATTERNS = [None, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN]

HARD_STRINGS = [
    "",
    " ",
    "hello world",
    "Hello, World! It's 12345 o'clock.\n\n  \t tabs\r\n",
    "😀",
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",  # ZWJ sequences, variation selectors, skin tones
    "日本語のテキスト、中文文本，한국어 텍스트",
    "e\u0301 a\u0300\u0316 Z\u0335\u0321a\u0337\u0322lgo",  # combining marks
    "\x00\x01\x02\x07\x1b[31mred\x1b[0m\x7f",  # control characters and NUL
    "\u200b\u200c\u200d\ufeff\u2028\u2029\u00a0",  # zero-width and odd whitespace
    "\ufffd\uffff\U0010ffff\U0001f600",
    "\ud800",  # lone surrogates
    "a\udfffb",
    "\ud83d\ude00",  # a surrogate *pair* written as two code points
    "\udc00\ud800",
    "<|endoftext|>",
    "x" * 1000,
    "    " * 50 + "\n" * 20,
]


# ---------------------------------------------------------------------------
# an independent, naive reference: recount every pair after every merge


def naive_merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_chunks(docs: list[str], pattern: str | None) -> list[list[int]]:
    chunks = []
    for doc in docs:
        pieces = [doc] if pattern is None else regex.findall(pattern, doc)
        chunks += [list(p.encode("utf-8", "surrogatepass")) for p in pieces]
    return chunks


def naive_train(docs: list[str], vocab_size: int, pattern: str | None) -> dict[tuple[int, int], int]:
    chunks = naive_chunks(docs, pattern)
    merges = {}
    for new_id in range(256, vocab_size):
        counts: dict[tuple[int, int], int] = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest pair
        merges[best] = new_id
        chunks = [naive_merge(ids, best, new_id) for ids in chunks]
    return merges


def naive_encode(text: str, merges: dict[tuple[int, int], int], pattern: str | None) -> list[int]:
    out = []
    for ids in naive_chunks([text], pattern):
        for pair, new_id in merges.items():  # learned order
            ids = naive_merge(ids, pair, new_id)
        out += ids
    return out


def random_corpus(rng: random.Random, alphabet: str, n_docs: int, max_len: int) -> list[str]:
    docs = []
    for _ in range(n_docs):
        doc = []
        while len(doc) < rng.randint(0, max_len):
            doc.append(rng.choice(alphabet) * rng.choice([1, 1, 2, 3, 7]))  # runs such as "aaaaaaa"
        docs.append("".join(doc))
    return docs


def random_unicode(rng: random.Random, n: int) -> str:
    """Code points from every plane, surrogates included."""
    ranges = [(0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0xD800, 0xDFFF), (0x10000, 0x10FFFF), (0x1F300, 0x1FAFF)]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(n))


# ---------------------------------------------------------------------------
# BPE: the hand-checkable example and the merge rule


def test_aaabdaaabac_by_hand():
    # (a,a) occurs 4 times -> 256: [256 a b d 256 a b a c].
    # Then (256,a) and (a,b) both occur twice; the tie goes to the smaller pair (97, 98) -> 257,
    # giving [256 257 d 256 257 a c]; then (256, 257) -> 258. This is the Wikipedia BPE example:
    # aaabdaaabac -> ZabdZabac -> ZYdZYac -> XdXac.
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=None)
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert list(tok.merges.values()) == [256, 257, 258]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert tok.token_bytes(258) == b"aaab"
    assert tok.vocab_size == 259


def test_ties_go_to_the_smallest_pair():
    tok = BPETokenizer.train(["ba", "ab", "cd"], 257, pattern=None)
    assert tok.merges == {(97, 98): 256}


def test_overlapping_pairs_are_counted_as_a_plain_scan():
    # "aaa" holds (a,a) twice (a plain scan), so two "aaa" give 4 and three give 6; (b,c) occurs 5 times.
    tok = BPETokenizer.train(["aaa", "aaa", "bc", "bc", "bc", "bc", "bc"], 257, pattern=None)
    assert tok.merges == {(98, 99): 256}  # (a,a): 2+2 = 4 < 5
    tok = BPETokenizer.train(["aaa", "aaa", "aaa", "bc", "bc", "bc", "bc", "bc"], 257, pattern=None)
    assert tok.merges == {(97, 97): 256}  # (a,a): 6 > 5
    assert tok.encode("aaaa") == [256, 256]
    assert tok.encode("aaa") == [256, 97]


def test_pairs_never_cross_documents_chunks_or_specials():
    tok = BPETokenizer.train(["ab", "ab"], 300, pattern=None)
    assert tok.merges == {(97, 98): 256}
    tok = BPETokenizer.train("a b", 300, pattern=GPT2_SPLIT_PATTERN)
    assert tok.merges == {(32, 98): 256}  # chunks "a", " b"
    tok = BPETokenizer.train("ab<|s|>ab", 300, pattern=None, special_tokens=["<|s|>"])
    assert tok.merges == {(97, 98): 256}
    assert tok.special_tokens == {"<|s|>": 257}


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("abc", 10_000, pattern=None, special_tokens=["<|x|>"])
    assert tok.merges == {(97, 98): 256, (256, 99): 257}
    assert tok.special_tokens == {"<|x|>": 258}
    assert tok.vocab_size == 259
    assert BPETokenizer.train("", 300).merges == {}


@pytest.mark.parametrize("pattern", PATTERNS, ids=["none", "gpt2", "gpt4"])
@pytest.mark.parametrize("seed", range(12))
def test_training_equals_naive_reference(pattern, seed):
    rng = random.Random(seed)
    alphabet = ["ab", "ab ", "abc \n", "aé😀 .,'1\n", "xyz0123 !?'s"][seed % 5]
    docs = random_corpus(rng, alphabet, n_docs=rng.randint(1, 12), max_len=rng.randint(1, 120))
    vocab_size = 256 + rng.randint(1, 80)
    tok = BPETokenizer.train(docs, vocab_size, pattern=pattern)
    expected = naive_train(docs, vocab_size, pattern)
    assert list(tok.merges.items()) == list(expected.items())
    held_out = "".join(random_corpus(rng, alphabet, 1, 200))
    assert tok.encode(held_out) == naive_encode(held_out, expected, pattern)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["none", "gpt2", "gpt4"])
def test_training_equals_naive_reference_on_english(pattern):
    text = (
        "The cat sat on the mat. The dog sat on the log. Tokenizers turn text into numbers; "
        "the lowest, lower, newest and widest words share their endings. aaabdaaabac " * 3
    )
    docs = [text, text.upper(), "1234567890 " * 5]
    assert BPETokenizer.train(docs, 400, pattern=pattern).merges == naive_train(docs, 400, pattern)


def test_training_accepts_any_iterable_of_documents():
    docs = ["hello world", "hello there"]
    assert BPETokenizer.train(iter(docs), 270).merges == BPETokenizer.train(tuple(docs), 270).merges


# ---------------------------------------------------------------------------
# BPE: round trips


@pytest.fixture(scope="module")
def trained() -> dict[str | None, BPETokenizer]:
    corpus = HARD_STRINGS + ["The quick brown fox jumps over the lazy dog. " * 20, "日本語 😀 👍🏽 é" * 10]
    return {p: BPETokenizer.train(corpus, 600, pattern=p, special_tokens=["<|endoftext|>"]) for p in PATTERNS}


@pytest.mark.parametrize("pattern", PATTERNS, ids=["none", "gpt2", "gpt4"])
def test_round_trip_hard_strings(trained, pattern):
    tok = trained[pattern]
    for s in HARD_STRINGS:
        for allowed in ("all", "none"):
            assert tok.decode(tok.encode(s, allowed_special=allowed)) == s, repr(s)


@pytest.mark.parametrize("pattern", PATTERNS, ids=["none", "gpt2", "gpt4"])
def test_round_trip_random_unicode(trained, pattern):
    tok = trained[pattern]
    rng = random.Random(1234)
    for _ in range(300):
        s = random_unicode(rng, rng.randint(0, 40))
        assert tok.decode(tok.encode(s)) == s, repr(s)


def test_untrained_tokenizer_is_plain_bytes():
    tok = BPETokenizer()
    assert tok.encode("hé\ud800") == [104, 0xC3, 0xA9, 0xED, 0xA0, 0x80]
    assert tok.decode([104, 0xC3, 0xA9, 0xED, 0xA0, 0x80]) == "hé\ud800"


def test_decode_never_fails_on_arbitrary_ids(trained):
    tok = trained[GPT4_SPLIT_PATTERN]
    assert tok.decode([0xFF]) == "\ufffd"
    assert tok.decode([0xC3]) == "\ufffd"  # a cut-off character
    assert tok.decode([0xED, 0xA0, 0x80]) == "\ud800"  # the 3-byte form of a surrogate
    assert tok.decode([0xED, 0xA0]) == "\ufffd\ufffd"
    rng = random.Random(7)
    for _ in range(300):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randint(0, 12))]
        data = b"".join(tok.token_bytes(i) for i in ids)
        text = tok.decode(ids)
        assert isinstance(text, str)
        if not regex.search(rb"\xed[\xa0-\xbf][\x80-\xbf]", data):
            assert text == data.decode("utf-8", errors="replace")


def test_tokens_for_display(trained):
    tok = trained[GPT4_SPLIT_PATTERN]
    text = "The quick brown fox."
    assert "".join(tok.tokens(text)) == text
    assert len(tok.tokens(text)) == len(tok.encode(text))
    assert tok.tokens("<|endoftext|>") == ["<|endoftext|>"]


def test_encode_is_cached_and_stable(trained):
    tok = trained[GPT4_SPLIT_PATTERN]
    text = "The quick brown fox jumps over the lazy dog. " * 3 + "y" * 5000
    first = tok.encode(text)
    assert tok.encode(text) == first
    assert "The" in tok._cache and "y" * 5000 not in tok._cache  # long chunks are not kept


# ---------------------------------------------------------------------------
# BPE: special tokens


def test_special_tokens_get_the_last_ids():
    tok = BPETokenizer.train("hello hello hello", 260, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert len(tok.merges) == 2
    assert tok.special_tokens == {"<|endoftext|>": 258, "<|pad|>": 259}
    assert tok.vocab_size == 260
    assert tok.vocab[258] == b"<|endoftext|>"
    assert sorted(tok.vocab) == list(range(260))


def test_allowed_special():
    tok = BPETokenizer.train("hello world", 270, special_tokens=["<|endoftext|>"])
    eot = tok.special_tokens["<|endoftext|>"]
    text = "hello<|endoftext|>world"
    ids = tok.encode(text)
    assert ids.count(eot) == 1
    assert ids == tok.encode("hello") + [eot] + tok.encode("world")
    plain = tok.encode(text, allowed_special="none")
    assert eot not in plain
    assert tok.decode(ids) == tok.decode(plain) == text
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode(text, allowed_special="some")


def test_longest_special_token_wins():
    tok = BPETokenizer(special_tokens=["<|a|>", "<|a|>x"])
    assert tok.encode("<|a|>x<|a|>") == [tok.special_tokens["<|a|>x"], tok.special_tokens["<|a|>"]]


# ---------------------------------------------------------------------------
# BPE: save and load


@pytest.mark.parametrize("pattern", PATTERNS, ids=["none", "gpt2", "gpt4"])
def test_save_load_round_trip(trained, pattern, tmp_path):
    tok = trained[pattern]
    path = tmp_path / "bpe.json"
    tok.save(path)
    state = json.loads(path.read_text(encoding="utf-8"))  # plain, readable JSON
    assert state["version"] == 1 and state["type"] == "BPETokenizer"
    assert state["merges"][0]["pieces"] == [tok.vocab[p].decode("utf-8", "backslashreplace") for p in state["merges"][0]["pair"]]
    for loaded in (BPETokenizer.load(path), Tokenizer.load(path)):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.merges == tok.merges and list(loaded.merges) == list(tok.merges)
        assert loaded.special_tokens == tok.special_tokens
        assert loaded.pattern == tok.pattern
        assert loaded.vocab == tok.vocab
        for s in HARD_STRINGS:
            assert loaded.encode(s) == tok.encode(s)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "char.json"
    CharTokenizer.train("abc").save(path)
    with pytest.raises(ValueError, match="not a BPETokenizer"):
        BPETokenizer.load(path)
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a saved llmcourse tokenizer"):
        Tokenizer.load(tmp_path / "other.json")


# ---------------------------------------------------------------------------
# BPE: clear errors


def test_errors():
    with pytest.raises(ValueError, match="at least 258"):
        BPETokenizer.train("abc", 257, special_tokens=["<a>", "<b>"])
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("abc", 100)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("abc", 300.0)
    with pytest.raises(TypeError, match="str or an iterable of str"):
        BPETokenizer.train(b"abc", 300)
    with pytest.raises(TypeError, match="document 1 is a int"):
        BPETokenizer.train(["abc", 5], 300)
    with pytest.raises(ValueError, match="distinct"):
        BPETokenizer.train("abc", 300, special_tokens=["<a>", "<a>"])
    with pytest.raises(TypeError, match="sequence of strings"):
        BPETokenizer.train("abc", 300, special_tokens="<a>")
    tok = BPETokenizer.train("abc", 300)
    with pytest.raises(TypeError, match="expected text as a str"):
        tok.encode(b"abc")
    with pytest.raises(ValueError, match="unknown token id 5000"):
        tok.decode([97, 5000])
    with pytest.raises(ValueError, match="merge ids must be 256"):
        BPETokenizer({(97, 98): 300})


def test_patterns_split_as_gpt2_and_gpt4():
    text = "Hello world's  12345 DON'T!!\n\n"
    # GPT-2: contractions only in lower case, numbers whole, newlines apart.
    assert regex.findall(GPT2_SPLIT_PATTERN, text) == ["Hello", " world", "'s", " ", " 12345", " DON", "'", "T", "!!", "\n\n"]
    # GPT-4: contractions in any case, at most 3 digits, punctuation keeps its newlines.
    assert regex.findall(GPT4_SPLIT_PATTERN, text) == ["Hello", " world", "'s", " ", " ", "123", "45", " DON", "'T", "!!\n\n"]


def test_import_runs_nothing():
    code = (
        "import codecs, llmcourse.tokenizers\n"
        "try:\n    codecs.lookup_error('llmcourse-surrogates')\nexcept LookupError:\n    print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "clean"


# ---------------------------------------------------------------------------
# characters


def test_char_tokenizer_basics():
    tok = CharTokenizer.train(["hello", "world"], special_tokens=["<|endoftext|>"])
    assert tok.chars == sorted("helowrd")
    assert tok.vocab_size == 7 + 2
    assert tok.special_tokens == {"<unk>": 7, "<|endoftext|>": 8}
    assert tok.encode("hello") == [tok.chars.index(c) for c in "hello"]
    assert tok.encode("hi") == [tok.chars.index("h"), 7]
    assert tok.decode(tok.encode("hi")) == "h<unk>"
    ids = tok.encode("low<|endoftext|>")
    assert ids[-1] == 8 and tok.decode(ids) == "low<|endoftext|>"
    assert len(tok.encode("low<|endoftext|>", allowed_special="none")) == 3 + len("<|endoftext|>")
    assert repr(tok) == "CharTokenizer(vocab_size=9, special_tokens=2)"


def test_char_tokenizer_round_trips_seen_characters(tmp_path):
    rng = random.Random(99)
    texts = HARD_STRINGS + [random_unicode(rng, 30) for _ in range(100)]
    tok = CharTokenizer.train(texts)
    for s in texts:
        assert tok.decode(tok.encode(s)) == s, repr(s)
        assert tok.tokens(s) == list(s)
    tok.save(tmp_path / "char.json")
    loaded = Tokenizer.load(tmp_path / "char.json")
    assert isinstance(loaded, CharTokenizer) and loaded.vocab == tok.vocab
    assert all(loaded.encode(s) == tok.encode(s) for s in texts)


def test_char_tokenizer_errors():
    with pytest.raises(TypeError, match="str or an iterable"):
        CharTokenizer.train(42)
    tok = CharTokenizer.train("abc")
    with pytest.raises(TypeError):
        tok.encode(["a"])
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([99])
