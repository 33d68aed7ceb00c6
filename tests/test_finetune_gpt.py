"""Instruction and preference tuning of a GPT: task data, the objectives, exact match and the KL estimate.

Independent references: hand-written responses and token ids, greedy decoding by
``generate`` (for the one-pass exact match), log-probabilities summed by hand,
SciPy's Wilson interval, and a tiny GPT trained through the course's ``Trainer``.
"""

import copy
import multiprocessing
import time

import numpy as np
import pytest
import torch
from scipy import stats

from llmcourse.finetune import InstructionExample, cached_arrays, instruction_batch, sequence_logprob
from llmcourse.finetune.instruction import COMPACT_TEMPLATE
from llmcourse.finetune.preference import (
    DPO,
    PreferencePairs,
    continuation_logprob,
    kl_estimate,
    openings,
    pair_batch,
    sample_continuations,
)
from llmcourse.finetune.tasks import (
    LABELS,
    TASKS,
    InstructionData,
    InstructionLM,
    cached_training,
    choice_logprobs,
    exact_match,
    greedy_matches,
    make_examples,
    next_token_logprobs,
)
from llmcourse.generation import generate
from llmcourse.models import GPT, GPTConfig
from llmcourse.tokenizers import CharTokenizer
from llmcourse.training.trainer import TrainConfig, Trainer


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest.py)


def tiny_gpt(seed: int, vocab_size: int = 20) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.tiny(vocab_size=vocab_size, dropout=0.0)).eval()


# ----------------------------------------------------------------------------- task data


def test_the_tasks_answer_with_a_leading_space_and_skip_punctuation():
    rows = make_examples([("the plot is thin , but fun .", 1), ("a dull mess", 0)], seed=0)
    got = {(name, ex.input): ex.response for name, ex in rows}
    assert got[("sentiment", "the plot is thin , but fun .")] == " positive"
    assert got[("sentiment", "a dull mess")] == " negative"
    assert got[("first word", "a dull mess")] == " a"
    assert got[("last word", "the plot is thin , but fun .")] == " fun"  # the final "." is not a word
    assert LABELS == (" negative", " positive")
    assert len(rows) == 2 * len(TASKS)
    assert make_examples([("... !", 1)], tasks=("first word",)) == []  # no word: no example


def test_held_out_templates_never_appear_in_training():
    sentences = [(f"sentence number {i} .", i % 2) for i in range(60)]
    train = {ex.instruction for _, ex in make_examples(sentences)}
    held = {ex.instruction for _, ex in make_examples(sentences, held_out_templates=True)}
    assert train == {t for task in TASKS.values() for t in task.templates}  # every template drawn
    assert held and not train & held


def test_an_example_with_a_template_uses_it():
    ex = InstructionExample("Say it.", " yes", input="a film", template=COMPACT_TEMPLATE)
    assert ex.prompt() == "Say it.\nSentence: a film\nAnswer:"
    assert InstructionExample("Say it.", " yes", input="a film").prompt().startswith("### Instruction:\n")


def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?:.,\nASCW")


def test_instruction_data_keeps_the_response_when_it_cuts():
    tok = char_tokenizer()
    data = InstructionData(tok, [InstructionExample("ab", " c", input="abcabc", template=COMPACT_TEMPLATE)],
                           eos_id=0, max_length=10)
    prompt, response = data.pairs[0]
    assert response == [*tok.encode(" c"), 0] and len(prompt) + len(response) == 10
    assert tok.decode(prompt) == "Answer:"  # cut from the left: the last 7 of the prompt
    assert len(data) == 10 and data.width == 10


# ----------------------------------------------------------------------------- objective and scoring


def test_the_instruction_objective_masks_the_prompt_or_not():
    pairs = [([3, 4, 5], [6, 7, 1]), ([8, 9], [10, 1])]
    data = InstructionData.__new__(InstructionData)
    data.pairs, data.lengths = pairs, torch.tensor([6, 4])
    g = torch.Generator().manual_seed(0)
    x, y = InstructionLM(block_size=6, pad_id=1, pool=1).batch(data, 8, g)
    g = torch.Generator().manual_seed(0)
    _, y_all = InstructionLM(block_size=6, pad_id=1, mask_prompt=False, pool=1).batch(data, 8, g)
    for row in range(8):
        which = 0 if x[row, 0] == 3 else 1
        expected = instruction_batch([pairs[which]], pad_id=1)[1][0].tolist()
        assert y[row, : len(expected)].tolist() == expected
    assert (y_all != -100).sum() > (y != -100).sum()


def test_greedy_matches_agrees_with_greedy_generation():
    model = tiny_gpt(0)
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [2, 2]]
    pairs = []
    for p in prompts:
        out = generate(model, torch.tensor(p), 3, temperature=0).tolist()[len(p):]  # the greedy continuation
        pairs.append((p, out))
    pairs.append((prompts[0], [pairs[0][1][0], (pairs[0][1][1] + 1) % 20, pairs[0][1][2]]))  # one token wrong
    assert greedy_matches(model, pairs, pad_id=0).tolist() == [True, True, True, True, False]


def test_choice_logprobs_sum_the_choices_tokens():
    model = tiny_gpt(1)
    prompts, choices = [[1, 2, 3], [4]], [[5], [6, 7]]
    got = choice_logprobs(model, prompts, choices, pad_id=0)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            for c, choice in enumerate(choices):
                log_p = model(torch.tensor([p + choice])).logits.log_softmax(-1)[0]
                want = sum(log_p[len(p) - 1 + j, t] for j, t in enumerate(choice))
                assert got[i, c].item() == pytest.approx(want.item(), abs=1e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (7, 20), (20, 20)])
def test_exact_match_interval_is_wilsons(k, n):
    value, low, high = exact_match(np.arange(n) < k)
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert value == k / n and low == pytest.approx(ci.low, abs=1e-9) and high == pytest.approx(ci.high, abs=1e-9)


def test_a_tiny_gpt_learns_to_copy_the_first_token_through_the_trainer():
    rng = np.random.default_rng(0)
    pairs = [([2, int(a), int(b), 3], [int(a), 1]) for a, b in rng.integers(4, 20, size=(200, 2))]
    data = InstructionData.__new__(InstructionData)
    data.pairs, data.lengths = pairs, torch.full((200,), 6)
    model = tiny_gpt(0)
    before = greedy_matches(model, pairs, pad_id=1).float().mean()
    config = TrainConfig(max_steps=150, batch_size=32, lr=3e-3, warmup_steps=10, eval_interval=150,
                         eval_batches=1, progress=False)
    Trainer(model, InstructionLM(block_size=6, pad_id=1, pool=1), data, data, config).fit()
    assert greedy_matches(model, pairs, pad_id=1).float().mean() > max(0.9, before + 0.5)


def test_cached_training_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    calls = []

    def fit(model):
        calls.append(1)
        with torch.no_grad():
            model.token_embedding.weight.add_(1.0)
        from llmcourse.training.trainer import History

        return History(step=[1], train_loss=[0.5])

    first, record = cached_training("demo", tiny_gpt(0), ["a", "b"], fit)
    again, record_again = cached_training("demo", tiny_gpt(0), ["a", "b"], fit)
    other, _ = cached_training("demo", tiny_gpt(0), ["a", "c"], fit)
    assert len(calls) == 2 and record_again["history"]["train_loss"] == [0.5]
    assert torch.equal(first.token_embedding.weight, again.token_embedding.weight)
    assert not torch.equal(tiny_gpt(0).token_embedding.weight, again.token_embedding.weight)


def test_cached_arrays_compute_once_then_load_the_same_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"flags": np.array([True, False, True]), "ids": torch.arange(6).view(2, 3), "x": [0.25, -1.5]}

    first = cached_arrays("demo", ["a", "b"], compute)
    again = cached_arrays("demo", ["a", "b"], compute)
    cached_arrays("demo", ["a", "c"], compute)
    assert len(calls) == 2
    assert again["flags"].dtype == np.bool_ and again["flags"].tolist() == [True, False, True]
    assert again["ids"].tolist() == [[0, 1, 2], [3, 4, 5]] and again["x"].tolist() == [0.25, -1.5]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with pytest.raises(TypeError, match="dict of arrays"):
        cached_arrays("demo", ["d"], lambda: [1, 2])


def _slow_cached_arrays(log: str) -> None:
    def compute():
        with open(log, "a") as f:
            f.write("computed\n")
        time.sleep(1.0)  # long enough for the other process to arrive while this one computes
        return {"x": np.arange(3)}

    assert cached_arrays("shared", ["same key"], compute)["x"].tolist() == [0, 1, 2]


def test_cached_arrays_computed_once_when_two_processes_ask_at_once(tmp_path, monkeypatch):
    # two chapters executed side by side (scripts/execute_chapters.py) that need the same entry
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_slow_cached_arrays, args=(str(log),)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert log.read_text().splitlines() == ["computed"]


# ----------------------------------------------------------------------------- preference tuning


def test_openings_sampling_and_continuation_logprob():
    tok = char_tokenizer()
    prompts = openings(tok, ["abcdef", "ab", "zyxwvu"], 4)
    assert prompts.tolist() == [tok.encode("abcd"), tok.encode("zyxw")]  # "ab" is too short
    model = tiny_gpt(2, vocab_size=tok.vocab_size)
    a = sample_continuations(model, prompts, 5, seed=3)
    assert a.shape == (2, 5) and torch.equal(a, sample_continuations(model, prompts, 5, seed=3))
    got = continuation_logprob(model, prompts, a)
    with torch.no_grad():
        for i in range(2):
            seq = torch.cat([prompts[i], a[i]])
            log_p = model(seq[None, :-1]).logits.log_softmax(-1)[0]
            want = sum(log_p[3 + j, a[i, j]] for j in range(5))
            assert got[i].item() == pytest.approx(want.item(), abs=1e-5)
    inputs, targets = pair_batch(prompts, a)
    assert (targets[:, :3] == -100).all() and torch.equal(targets[:, 3:], a)
    torch.testing.assert_close(sequence_logprob(model, inputs, targets).detach(), got)


def test_dpo_through_the_trainer_prefers_the_chosen_and_leaves_the_reference_alone():
    reference = tiny_gpt(0)
    policy = copy.deepcopy(reference)
    frozen = copy.deepcopy(reference.state_dict())
    prompts = torch.randint(2, 20, (32, 3), generator=torch.Generator().manual_seed(0))
    chosen, rejected = torch.full((32, 2), 5), torch.full((32, 2), 6)
    data = PreferencePairs(prompts, chosen, rejected)
    gap = lambda m: (continuation_logprob(m, prompts, chosen) - continuation_logprob(m, prompts, rejected)).mean()
    before = gap(policy)
    objective = DPO(block_size=data.width, reference=reference, beta=0.5)
    x, y = objective.batch(data, 4, torch.Generator().manual_seed(1))
    assert x.shape == (4, 2, 4) and (y[:, :, :2] == -100).all()
    assert objective.loss(policy, x, y).item() == pytest.approx(np.log(2), abs=1e-6)  # policy == reference
    config = TrainConfig(max_steps=30, batch_size=8, lr=1e-2, warmup_steps=2, eval_interval=30, eval_batches=1,
                         progress=False)
    history = Trainer(policy, objective, data, data, config).fit()
    assert history.train_loss[-1] < history.train_loss[0] - 0.2
    assert gap(policy) > before + 1.0
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in frozen.items())
    with pytest.raises(ValueError, match="beta"):
        DPO(block_size=4, reference=reference, beta=0.0)
    with pytest.raises(ValueError, match="matching"):
        PreferencePairs(prompts, chosen, rejected[:3])


def test_kl_is_zero_for_the_reference_itself_and_positive_after_a_change():
    reference = tiny_gpt(0)
    prompts = torch.randint(1, 20, (64, 3), generator=torch.Generator().manual_seed(0))
    samples = sample_continuations(reference, prompts, 4, seed=0)
    mean, se = kl_estimate(reference, reference, prompts, samples)
    assert mean == 0.0 and se == 0.0
    policy = copy.deepcopy(reference)
    with torch.no_grad():
        for p in policy.parameters():  # a different model of the same shape
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    samples = sample_continuations(policy, prompts, 4, seed=0)
    mean, se = kl_estimate(policy, reference, prompts, samples)
    assert mean > 3 * se > 0


def test_next_token_logprobs_match_one_prompt_at_a_time():
    model = tiny_gpt(3)
    prompts = [[1, 2, 3, 4], [5], [6, 7]]
    got = next_token_logprobs(model, prompts, batch_size=2)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            want = model(torch.tensor([p])).logits[0, -1].log_softmax(-1)
            torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
