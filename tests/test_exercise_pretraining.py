"""The pretraining exercise, solutions/06_pretraining/pretraining.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong get_batch or lm_loss costs points once: train_step is graded with the course's
loss, and trains on the course's batches whenever the student's are wrong. The test
here is this exercise's own: the references the hidden tests use agree.
"""

from __future__ import annotations

from exercise_support import Exercise, from_template

ANSWERS = ["get_batch", "lm_loss", "train_step"]
SKIP = ("n_steps", "plt.", "multinomial")  # the training run, its plot and the sample: not graded, and slow

GET_BATCH = """
    import random

    def get_batch(data, block_size, batch_size, generator=None):
        n_starts = len(data) - block_size
        {check}
        starts = ({starts}).tolist()
        x = torch.stack([data[{x}] for s in starts])
        y = torch.stack([data[{y}] for s in starts])
        return {result}
"""
GET_BATCH_RIGHT = dict(
    check="""if n_starts < 1:
            raise ValueError("data is too short")""",
    starts="torch.randint(n_starts, (batch_size,), generator=generator)",
    x="s : s + block_size", y="s + 1 : s + block_size + 1", result="x, y",
)
GET_BATCH_BUGS = {
    "batch: targets not shifted (y = x)": dict(y="s : s + block_size"),
    "batch: targets shifted the wrong way": dict(
        starts="torch.randint(1, n_starts + 1, (batch_size,), generator=generator)", y="s - 1 : s + block_size - 1"),
    "batch: never starts at 0": dict(starts="torch.randint(1, n_starts, (batch_size,), generator=generator)"),
    "batch: never the last start": dict(starts="torch.randint(n_starts - 1, (batch_size,), generator=generator)"),
    "batch: one start too many (reads past the end)": dict(
        starts="torch.randint(n_starts + 1, (batch_size,), generator=generator)"),
    "batch: windows of block_size - 1": dict(x="s : s + block_size - 1", y="s + 1 : s + block_size"),
    "batch: windows of block_size + 1": dict(x="s : s + block_size + 1", y="s + 1 : s + block_size + 2"),
    "batch: x and y swapped": dict(result="y, x"),
    "batch: always starts at 0": dict(starts="torch.zeros(batch_size, dtype=torch.long)"),
    "batch: consecutive windows, not random": dict(starts="torch.arange(batch_size) % n_starts"),
    "batch: one start for the whole batch": dict(
        starts="torch.randint(n_starts, (1,), generator=generator).repeat(batch_size)"),
    "batch: the generator ignored": dict(starts="torch.randint(n_starts, (batch_size,))"),
    "batch: Python's random module": dict(
        starts="torch.tensor([random.randrange(n_starts) for _ in range(batch_size)])"),
    "batch: targets are the input ids plus one": dict(result="x, x + 1"),
    "batch: float tensors": dict(result="x.float(), y.float()"),
    "batch: no ValueError when data is too short": dict(check="pass"),
    "batch: an AssertionError when data is too short": dict(check='assert n_starts >= 1, "data is too short"'),
}
WRONG = from_template("get_batch", GET_BATCH, GET_BATCH_RIGHT, GET_BATCH_BUGS)
WRONG.update({
    "batch: starts anywhere, windows wrapped around the end": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            if len(data) <= block_size:
                raise ValueError("data is too short")
            starts = torch.randint(len(data), (batch_size, 1), generator=generator)  # (B, 1)
            idx = (starts + torch.arange(block_size + 1)) % len(data)  # (B, T + 1)
            return data[idx[:, :-1]], data[idx[:, 1:]]
    """),
    "batch: x and y from separate draws": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            n = len(data) - block_size
            if n < 1:
                raise ValueError("data is too short")
            x = torch.stack([data[s : s + block_size] for s in torch.randint(n, (batch_size,), generator=generator)])
            y = torch.stack([data[s + 1 : s + block_size + 1] for s in torch.randint(n, (batch_size,), generator=generator)])
            return x, y
    """),
    "batch: the package's causal_lm_batch": ("get_batch", """
        from llmcourse.training import causal_lm_batch

        def get_batch(data, block_size, batch_size, generator=None):
            return causal_lm_batch(data, block_size, batch_size, generator)
    """),
    "batch: windows side by side, not overlapping": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            n_windows = (len(data) - 1) // block_size
            if n_windows < 1:
                raise ValueError("data is too short")
            starts = torch.randint(n_windows, (batch_size,), generator=generator) * block_size
            idx = starts[:, None] + torch.arange(block_size)  # (B, T)
            return data[idx], data[idx + 1]
    """),
})

LM_LOSS = """
    def lm_loss(logits, targets):
        B, T, V = logits.shape
        {body}
"""
LM_LOSS_BUGS = {
    "loss: cross-entropy on the wrong axis": "return F.cross_entropy(logits, targets)",
    "loss: sum instead of mean": 'return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="sum")',
    "loss: log-softmax over the positions": """log_p = torch.log_softmax(logits, dim=1)
        return -log_p.gather(-1, targets[..., None]).mean()""",
    "loss: log-softmax over the batch": """log_p = torch.log_softmax(logits, dim=0)
        return -log_p.gather(-1, targets[..., None]).mean()""",
    "loss: the minus sign missing": """log_p = torch.log_softmax(logits, dim=-1)
        return log_p.gather(-1, targets[..., None]).mean()""",
    "loss: probabilities instead of log-probabilities": (
        "return F.nll_loss(torch.softmax(logits, dim=-1).reshape(B * T, V), targets.reshape(B * T))"),
    "loss: log of softmax (underflows)": """p = torch.softmax(logits, dim=-1)
        return -torch.log(p).gather(-1, targets[..., None]).mean()""",
    "loss: logits and targets flattened in different orders": (
        "return F.cross_entropy(logits.transpose(0, 1).reshape(B * T, V), targets.reshape(B * T))"),
    "loss: targets shifted once more": "return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))",
    "loss: the last position only": "return F.cross_entropy(logits[:, -1], targets[:, -1])",
    "loss: mean of per-sequence sums": (
        'return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="none").view(B, T).sum(1).mean()'),
    "loss: averaged over the vocabulary too": """one_hot = F.one_hot(targets, V)
        return -(one_hot * torch.log_softmax(logits, dim=-1)).mean()""",
    "loss: a float, not a tensor": "return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T)).item()",
    "loss: detached from the graph": "return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T)).detach()",
    "loss: binary cross-entropy on one-hot targets": (
        "return F.binary_cross_entropy_with_logits(logits, F.one_hot(targets, V).float())"),
    "loss: view instead of reshape (fails on non-contiguous inputs)": (
        "return F.cross_entropy(logits.view(B * T, V), targets.view(B * T))"),
}
WRONG.update(from_template("lm_loss", LM_LOSS, {}, LM_LOSS_BUGS))

TRAIN_STEP = """
    def train_step(model, optimizer, x, y):
        {body}
"""
TRAIN_STEP_BUGS = {
    "step: no zero_grad (gradients accumulate)": """logits = model(x).logits
        loss = lm_loss(logits, y)
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: zero_grad after backward": """logits = model(x).logits
        loss = lm_loss(logits, y)
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
        return loss.item()""",
    "step: zero_grad at the end instead of the start": """logits = model(x).logits
        loss = lm_loss(logits, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()""",
    "step: no optimizer.step": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        return loss.item()""",
    "step: step before backward": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        optimizer.step()
        loss.backward()
        return loss.item()""",
    "step: returns the loss tensor": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        optimizer.step()
        return loss""",
    "step: returns a detached tensor": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        optimizer.step()
        return loss.detach()""",
    "step: returns the loss recomputed after the update": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            return lm_loss(model(x).logits, y).item()""",
    "step: forward pass under torch.no_grad": """optimizer.zero_grad()
        with torch.no_grad():
            logits = model(x).logits
        loss = lm_loss(logits, y)
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: logits detached": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits.detach(), y)
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: the model's own loss, model(x, y).loss": """optimizer.zero_grad()
        loss = model(x, y).loss
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: the model's own loss, model(x, targets=y)[1]": """optimizer.zero_grad()
        loss = model(x, targets=y)[1]
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: cross-entropy written out instead of lm_loss": """optimizer.zero_grad()
        logits = model(x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: inputs and targets swapped": """optimizer.zero_grad()
        loss = lm_loss(model(y).logits, x)
        loss.backward()
        optimizer.step()
        return loss.item()""",
    "step: two optimizer steps": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        optimizer.step()
        optimizer.step()
        return loss.item()""",
    "step: gradients clipped": """optimizer.zero_grad()
        loss = lm_loss(model(x).logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        return loss.item()""",
}
WRONG.update(from_template("train_step", TRAIN_STEP, {}, TRAIN_STEP_BUGS))
WRONG["step: the package's CausalLM objective for the loss"] = ("train_step", """
    from llmcourse.training import CausalLM

    def train_step(model, optimizer, x, y):
        optimizer.zero_grad()
        loss = CausalLM(x.size(1)).loss(model, x, y)
        loss.backward()
        optimizer.step()
        return loss.item()
""")

# A wrong get_batch or lm_loss must cost the points of its own cell and no more: train_step's
# tests use the course's loss, and the course's batches whenever the student's are wrong.
BATCH_AND_LOSS_BUGS = [
    "batch: targets not shifted (y = x)",
    "batch: one start too many (reads past the end)",
    "batch: float tensors",
    "batch: x and y from separate draws",
    "batch: always starts at 0",
    "loss: cross-entropy on the wrong axis",
    "loss: sum instead of mean",
    "loss: a float, not a tensor",
    "loss: detached from the graph",
]

# Correct solutions written in other styles: each must earn full marks, with the visible asserts too.
ALTERNATIVES = {
    "batch: unfold, then pick rows": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            if len(data) <= block_size:
                raise ValueError(f"{len(data)} tokens leave no window of {block_size} with a target")
            windows = data.unfold(0, block_size + 1, 1)  # (N - T, T + 1): every window with its next token
            rows = windows[torch.randint(len(windows), (batch_size,), generator=generator)]  # (B, T + 1)
            return rows[:, :-1], rows[:, 1:]
    """),
    "batch: index arithmetic (gather)": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            n = data.numel() - block_size
            if n <= 0:
                raise ValueError("data too short")
            starts = torch.randint(0, n, (batch_size, 1), generator=generator)  # (B, 1)
            idx = starts + torch.arange(block_size)  # (B, T)
            return torch.gather(data.expand(batch_size, -1), 1, idx), data[idx + 1]
    """),
    "batch: one draw per row, Python lists": ("get_batch", """
        def get_batch(data, block_size, batch_size, generator=None):
            if len(data) < block_size + 1:
                raise ValueError("need at least block_size + 1 tokens")
            tokens = data.tolist()
            xs, ys = [], []
            for _ in range(batch_size):
                s = int(torch.randint(len(tokens) - block_size, (1,), generator=generator))
                xs.append(tokens[s : s + block_size])
                ys.append(tokens[s + 1 : s + block_size + 1])
            return torch.tensor(xs), torch.tensor(ys)
    """),
    "loss: NLL of log_softmax": ("lm_loss", """
        def lm_loss(logits, targets):
            log_probs = F.log_softmax(logits, dim=-1).reshape(-1, logits.size(-1))  # (B*T, V)
            return F.nll_loss(log_probs, targets.reshape(-1))
    """),
    "loss: cross_entropy with the classes moved to dim 1": ("lm_loss", """
        def lm_loss(logits, targets):
            return F.cross_entropy(logits.transpose(1, 2), targets)  # (B, V, T) against (B, T)
    """),
    "loss: logsumexp minus the target's logit, in float64": ("lm_loss", """
        def lm_loss(logits, targets):
            z = logits.double()
            picked = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
            return (torch.logsumexp(z, dim=-1) - picked).mean()
    """),
    "loss: nn.CrossEntropyLoss on flattened tensors": ("lm_loss", """
        def lm_loss(logits, targets):
            return nn.CrossEntropyLoss()(logits.flatten(0, 1), targets.flatten())
    """),
    "step: zero_grad(set_to_none=False), float(loss)": ("train_step", """
        def train_step(model, optimizer, x, y):
            optimizer.zero_grad(set_to_none=False)
            loss = lm_loss(model(x).logits, y)
            loss.backward()
            optimizer.step()
            return float(loss)
    """),
    "step: model.zero_grad(), model(x)[0], loss read before the update": ("train_step", """
        def train_step(model, optimizer, x, y):
            model.train()
            model.zero_grad()
            loss = lm_loss(model(x)[0], y)
            value = loss.item()
            loss.backward()
            optimizer.step()
            return value
    """),
}
EXERCISE = Exercise(
    folder="06_pretraining", notebook="pretraining", answers=ANSWERS, points=(10, 12),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=BATCH_AND_LOSS_BUGS, skip=SKIP,
)


def test_the_references_agree():
    """The hidden tests' references (torch's cross-entropy, the plain formula, the GPT's own loss) agree."""
    import math

    import torch
    import torch.nn.functional as F

    from llmcourse.models import GPT, GPTConfig

    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7, dtype=torch.float64), torch.randint(7, (2, 5))
    plain = sum(math.log(sum(math.exp(v) for v in logits[b, t].tolist())) - logits[b, t, targets[b, t]].item()
                for b in range(2) for t in range(5)) / 10
    assert math.isclose(F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item(), plain, rel_tol=1e-9)
    model = GPT(GPTConfig.tiny(vocab_size=7, block_size=8))
    out = model(targets, targets)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits.flatten(0, 1), targets.flatten()))
