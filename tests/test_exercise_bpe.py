"""The BPE exercise, solutions/02_tokenization/bpe.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below: the
solution passes, the stubs fail, each WRONG solution fails its own cell through the
hidden tests alone, HELPER_BUGS cost their own cell's points only. The tests here are
this exercise's own: the reference tokenizer follows the notebook's rules, and the
grading helpers the notebook calls behave.
"""

from __future__ import annotations

import pytest

from exercise_support import Exercise, from_template, grade_id

ANSWERS = ["get_pair_counts", "merge", "train_bpe", "encode", "decode"]

# ---------------------------------------------------------------------------------------------
# Plausible wrong solutions: (answer cell, code). Each replaces that one answer cell.

WRONG = {
    # get_pair_counts
    "counts: pairs taken two by two, no overlap": ("get_pair_counts", """
        def get_pair_counts(ids):
            counts = {}
            for pair in zip(ids[::2], ids[1::2]):
                counts[pair] = counts.get(pair, 0) + 1
            return counts
    """),
    "counts: a repeated pair skips ahead": ("get_pair_counts", """
        def get_pair_counts(ids):
            counts, i = {}, 0
            while i < len(ids) - 1:
                pair = (ids[i], ids[i + 1])
                counts[pair] = counts.get(pair, 0) + 1
                i += 2 if ids[i] == ids[i + 1] else 1
            return counts
    """),
    "counts: last pair missed": ("get_pair_counts", """
        def get_pair_counts(ids):
            counts = {}
            for i in range(len(ids) - 2):
                pair = (ids[i], ids[i + 1])
                counts[pair] = counts.get(pair, 0) + 1
            return counts
    """),
    "counts: presence instead of counts": ("get_pair_counts", """
        def get_pair_counts(ids):
            return {pair: 1 for pair in zip(ids, ids[1:])}
    """),
    # merge
    "merge: overlapping occurrences": ("merge", """
        def merge(ids, pair, new_id):
            out = []
            for i in range(len(ids)):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                    out.append(new_id)
                elif i > 0 and (ids[i - 1], ids[i]) == tuple(pair):
                    continue
                else:
                    out.append(ids[i])
            return out
    """),
    "merge: scans right to left": ("merge", """
        def merge(ids, pair, new_id):
            out, i = [], len(ids) - 1
            while i >= 0:
                if i >= 1 and (ids[i - 1], ids[i]) == tuple(pair):
                    out.append(new_id)
                    i -= 2
                else:
                    out.append(ids[i])
                    i -= 1
            return out[::-1]
    """),
    "merge: moves on by one after a match": ("merge", """
        def merge(ids, pair, new_id):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                    out.append(new_id)
                    i += 1  # should be 2: the second id is used up too
                else:
                    out.append(ids[i])
                    i += 1
            return out
    """),
    "merge: changes the input list in place": ("merge", """
        def merge(ids, pair, new_id):
            i = 0
            while i < len(ids) - 1:
                if (ids[i], ids[i + 1]) == tuple(pair):
                    ids[i : i + 2] = [new_id]
                i += 1
            return ids
    """),
    "merge: drops the last id": ("merge", """
        def merge(ids, pair, new_id):
            out, i = [], 0
            while i < len(ids) - 1:
                if (ids[i], ids[i + 1]) == tuple(pair):
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            return out
    """),
    "merge: returns the caller's own list when the pair is absent": ("merge", """
        def merge(ids, pair, new_id):
            if tuple(pair) not in zip(ids, ids[1:]):
                return ids  # nothing to merge: the same list, not a new one
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            return out
    """),
}

TRAIN_TEMPLATE = """
    def train_bpe(text, vocab_size):
        if vocab_size {check} 256:
            raise ValueError("vocab_size")
        ids = {ids}
        merges = {{}}
        for new_id in range({start}, {stop}):
            counts = get_pair_counts(ids)
            {stop_check}
            pair = {choose}
            ids = merge(ids, pair, new_id{shift})
            merges[pair] = new_id{shift}
        return {result}
"""
TRAIN_RIGHT = dict(
    check="<",
    ids='list(text.encode("utf-8"))',
    start="256",
    stop="vocab_size",
    stop_check="if not counts: break",
    choose="min(counts, key=lambda p: (-counts[p], p))",
    shift="",
    result="merges",
)
TRAIN_BUGS = {
    "train: new ids start at 255": dict(start="255", stop="vocab_size - 1"),
    "train: new ids start at 257": dict(shift=" + 1"),
    "train: vocab_size - 255 merges": dict(stop="vocab_size + 1"),
    "train: ties go to the first occurrence (max by count)": dict(choose="max(counts, key=counts.get)"),
    "train: ties go to the largest pair": dict(choose="max(counts, key=lambda p: (counts[p], p))"),
    "train: ties go to the last pair in dict order": dict(
        choose="sorted(counts.items(), key=lambda kv: kv[1])[-1][0]"
    ),
    "train: ties compare only the first id": dict(choose="min(counts, key=lambda p: (-counts[p], p[0]))"),
    "train: crashes when no pair is left": dict(stop_check="pass"),
    "train: stops when the best pair occurs once": dict(
        stop_check="if not counts or max(counts.values()) < 2: break"
    ),
    "train: no ValueError below 256": dict(check="< 0 and vocab_size <"),
    "train: ValueError also at 256": dict(check="<="),
    "train: code points instead of bytes": dict(ids="[ord(c) for c in text]"),
    "train: merges returned sorted by pair": dict(result="dict(sorted(merges.items()))"),
}
WRONG.update(from_template("train_bpe", TRAIN_TEMPLATE, TRAIN_RIGHT, TRAIN_BUGS))

WRONG.update({
    "train: keeps merging pairs whose count fell to 0": ("train_bpe", """
        def train_bpe(text, vocab_size):
            if vocab_size < 256:
                raise ValueError("vocab_size")
            ids = list(text.encode("utf-8"))
            merges, counts = {}, {}
            for new_id in range(256, vocab_size):
                counts = {pair: 0 for pair in counts}  # stale pairs stay, with count 0
                counts.update(get_pair_counts(ids))
                if not counts:
                    break
                pair = min(counts, key=lambda p: (-counts[p], p))
                ids = merge(ids, pair, new_id)
                merges[pair] = new_id
            return merges
    """),
    # encode
    "encode: merges chosen by frequency in the text": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            while True:
                counts = {p: c for p, c in get_pair_counts(ids).items() if p in merges}
                if not counts:
                    return ids
                pair = min(counts, key=lambda p: (-counts[p], p))
                ids = merge(ids, pair, merges[pair])
    """),
    "encode: merges applied in reverse order": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            for pair, new_id in reversed(list(merges.items())):
                ids = merge(ids, pair, new_id)
            return ids
    """),
    "encode: merges applied sorted by pair": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            for pair in sorted(merges):
                ids = merge(ids, pair, merges[pair])
            return ids
    """),
    "encode: a single merge step": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            counts = get_pair_counts(ids)
            if counts:
                pair = min(counts, key=lambda p: merges.get(p, float("inf")))
                if pair in merges:
                    ids = merge(ids, pair, merges[pair])
            return ids
    """),
    "encode: one left-to-right pass over the ids": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) in merges:
                    out.append(merges[(ids[i], ids[i + 1])])
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            return out
    """),
    "encode: no stop when nothing is left to merge": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            while len(ids) >= 2:
                counts = get_pair_counts(ids)
                pair = min(counts, key=lambda p: merges.get(p, float("inf")))
                ids = merge(ids, pair, merges[pair])
            return ids
    """),
    "encode: code points instead of bytes": ("encode", """
        def encode(text, merges):
            ids = [ord(c) for c in text]
            while len(ids) >= 2:
                counts = get_pair_counts(ids)
                pair = min(counts, key=lambda p: merges.get(p, float("inf")))
                if pair not in merges:
                    break
                ids = merge(ids, pair, merges[pair])
            return ids
    """),
    "encode: greedy longest match in the vocabulary": ("encode", """
        def encode(text, merges):
            vocab = {bytes([i]): i for i in range(256)}
            pieces = {i: bytes([i]) for i in range(256)}
            for (a, b), new_id in merges.items():
                pieces[new_id] = pieces[a] + pieces[b]
                vocab[pieces[new_id]] = new_id
            data, ids, i = text.encode("utf-8"), [], 0
            while i < len(data):
                j = max(j for j in range(i + 1, len(data) + 1) if data[i:j] in vocab)
                ids.append(vocab[data[i:j]])
                i = j
            return ids
    """),
    "encode: changes merges": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            while len(ids) >= 2:
                counts = get_pair_counts(ids)
                pair = min(counts, key=lambda p: merges.get(p, float("inf")))
                if pair not in merges:
                    break
                ids = merge(ids, pair, merges.pop(pair))
            return ids
    """),
})

DECODE_TEMPLATE = """
    def decode(ids, merges):
        vocab = {{i: bytes([i]) for i in range(256)}}
        for (left, right), new_id in {order}:
            vocab[new_id] = vocab[left] + vocab[right]
        {body}
"""
DECODE_RIGHT = dict(
    order="merges.items()",
    body='return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")',
)
DECODE_BUGS = {
    "decode: latin-1": dict(body='return b"".join(vocab[i] for i in ids).decode("latin-1")'),
    "decode: strict UTF-8 (raises on broken bytes)": dict(body='return b"".join(vocab[i] for i in ids).decode("utf-8")'),
    "decode: broken bytes dropped (errors='ignore')": dict(
        body='return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")'
    ),
    "decode: each token decoded on its own": dict(
        body='return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)'
    ),
    "decode: vocabulary built in reverse order": dict(order="reversed(list(merges.items()))"),
    "decode: vocabulary built sorted by pair": dict(order="sorted(merges.items())"),
    "decode: merges ignored": dict(body='return bytes(ids).decode("utf-8", errors="replace")'),
    "decode: one character per id": dict(body='return "".join(chr(i) for i in ids)'),
}
WRONG.update(from_template("decode", DECODE_TEMPLATE, DECODE_RIGHT, DECODE_BUGS))

# Right answers that are not the student's own work: they call the course package.
WRONG.update({
    "counts: the package's function under the exercise's name": ("get_pair_counts", """
        from llmcourse.tokenizers.bpe import pair_counts as get_pair_counts
    """),
    "counts: imports the package inside the function": ("get_pair_counts", """
        def get_pair_counts(ids):
            from llmcourse.tokenizers.bpe import pair_counts
            return pair_counts(ids)
    """),
    "merge: calls the package through an alias": ("merge", """
        import llmcourse.tokenizers.bpe as _b

        def merge(ids, pair, new_id):
            return _b.merge_pair(ids, pair, new_id)
    """),
    "train: the package's tokenizer trains": ("train_bpe", """
        from llmcourse.tokenizers import BPETokenizer as _T

        def train_bpe(text, vocab_size):
            return dict(_T.train(text, vocab_size, pattern=None).merges)
    """),
    "encode: the package's tokenizer, called from a helper": ("encode", """
        def _tokenizer(merges):
            from llmcourse.tokenizers import BPETokenizer
            return BPETokenizer(dict(merges), pattern=None)

        def encode(text, merges):
            return _tokenizer(merges).encode(text)
    """),
    "decode: the package's tokenizer decodes": ("decode", """
        from llmcourse.tokenizers import BPETokenizer

        def decode(ids, merges):
            return BPETokenizer(dict(merges), pattern=None).decode(list(ids))
    """),
})

# Correct solutions written in other styles: each must earn full marks, with the visible asserts too.
ALTERNATIVES = {
    "counts: collections.Counter over zip": ("get_pair_counts", """
        def get_pair_counts(ids):
            return Counter(zip(ids, ids[1:]))
    """),
    "merge: a for loop with a skip flag": ("merge", """
        def merge(ids, pair, new_id):
            out, skip = [], False
            for a, b in zip(ids, list(ids[1:]) + [None]):
                if skip:
                    skip = False
                elif (a, b) == tuple(pair):
                    out.append(new_id)
                    skip = True
                else:
                    out.append(a)
            return out
    """),
    "train: sorted candidates, a while loop": ("train_bpe", """
        def train_bpe(text, vocab_size):
            if vocab_size < 256:
                raise ValueError("vocab_size below 256")
            ids, merges = list(text.encode()), {}
            while len(merges) < vocab_size - 256 and len(ids) >= 2:
                counts = get_pair_counts(ids)
                best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
                new_id = 256 + len(merges)
                ids = merge(ids, best, new_id)
                merges[best] = new_id
            return merges
    """),
    "encode: every merge replayed once, in learned order": ("encode", """
        def encode(text, merges):
            ids = list(text.encode("utf-8"))
            for pair, new_id in merges.items():
                ids = merge(ids, pair, new_id)
            return ids
    """),
    "decode: each id expanded recursively": ("decode", """
        def decode(ids, merges):
            parts = {new_id: pair for pair, new_id in merges.items()}

            def expand(i):
                if i < 256:
                    return bytes([i])
                left, right = parts[i]
                return expand(left) + expand(right)

            return b"".join(expand(i) for i in ids).decode("utf-8", errors="replace")
    """),
}

# Wrong helpers that train_bpe and encode (as the solution writes them) call.
HELPER_BUGS = [name for name, (gid, _) in WRONG.items()
               if gid in ("get_pair_counts", "merge") and "package" not in name]

EXERCISE = Exercise(
    folder="02_tokenization", notebook="bpe", answers=ANSWERS, points=(15, 20),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS,
)


# ---------------------------------------------------------------------------------------------


def naive_train(text: str, vocab_size: int) -> dict[tuple[int, int], int]:
    """BPE training with the notebook's rules, written as plainly as possible."""
    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        counts: dict[tuple[int, int], int] = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        out, i = [], 0
        while i < len(ids):
            if ids[i : i + 2] == list(pair):
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids, merges[pair] = out, new_id
    return merges


def naive_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """Apply the merges one after another, in learned order (equivalent to lowest-id-first)."""
    ids = list(text.encode("utf-8"))
    for pair, new_id in merges.items():
        out, i = [], 0
        while i < len(ids):
            if ids[i : i + 2] == list(pair):
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


def test_reference_tokenizer_follows_the_notebook_rules():
    """The hidden tests compare with BPETokenizer(pattern=None); if this fails, the package is at fault."""
    import random

    from llmcourse.tokenizers import BPETokenizer

    rng = random.Random(0)
    for _ in range(60):
        alphabet = rng.choice(["ab", "abc", "ab \n", "aé中🙂 \n", "xyzé"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        vocab_size = 256 + rng.randint(0, 40)
        tok = BPETokenizer.train(text, vocab_size, pattern=None)
        want = naive_train(text, vocab_size)
        assert list(tok.merges.items()) == list(want.items()), (text, vocab_size)
        other = "".join(rng.choice(alphabet + "é") for _ in range(rng.randint(0, 30)))
        assert tok.encode(text) == naive_encode(text, want)
        assert tok.encode(other) == naive_encode(other, want)
        assert tok.decode(tok.encode(text)) == text


def test_reference_helpers_restore_the_notebook():
    from llmcourse.grading.checks import reference_helpers

    def mine(ids):
        return "mine"

    namespace = {"get_pair_counts": mine}
    with pytest.raises(AssertionError):
        with reference_helpers(namespace, get_pair_counts=len, merge=max):
            assert namespace["get_pair_counts"] is len and namespace["merge"] is max
            raise AssertionError("a failing test inside the block")
    assert namespace == {"get_pair_counts": mine}, "the student's helper is back, nothing added"


def test_own_code_check_accepts_the_solution_and_plain_libraries():
    from llmcourse.grading.checks import package_uses

    namespace: dict = {"__name__": "__main__"}
    for cell in EXERCISE.load().cells:
        if grade_id(cell) in ANSWERS or (cell.cell_type == "code" and grade_id(cell) is None
                                         and "tiny_corpus" not in cell.source):
            exec(compile(cell.source, "<cell>", "exec"), namespace)
    for answer in ANSWERS:
        assert package_uses(namespace[answer]) == [], answer
    exec("import collections, re\ndef f(x):\n    return collections.Counter(re.findall('a', x))", namespace)
    assert package_uses(namespace["f"]) == []
