"""The fine-tuning exercise, solutions/08_finetuning/finetuning.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong freeze costs points once (the tests of unfreeze_last prepare their models with the
course's freeze, those of add_lora run with the course's freeze), and so does a wrong
LoRALinear (add_lora is graded with the course's LoRALinear). The tests here are this
exercise's own: the references the hidden tests use follow the rules the notebook states.
"""

from __future__ import annotations

from exercise_support import Exercise, from_template

ANSWERS = ["mean_pool", "freeze", "unfreeze_last", "count_trainable", "LoRALinear", "add_lora",
           "instruction_batch", "response_loss"]
SKIP = ("minilm", "tiny_gpt")  # the real MiniLM and the training run: not graded, and slow

# ----------------------------------------------------------------------------- 1. mean_pool

POOL = """
    def mean_pool(hidden, attention_mask):
        weights = {weights}  # (B, T, 1)
        total = {total}
        count = {count}
        return {result}
"""
POOL_RIGHT = dict(weights="attention_mask.to(hidden.dtype).unsqueeze(-1)", total="(hidden * weights).sum(dim=1)",
                  count="weights.sum(dim=1).clamp(min=1)", result="total / count")
POOL_BUGS = {
    "pool: padded vectors summed, real tokens counted": dict(total="hidden.sum(dim=1)"),
    "pool: divides by T, not by the number of real tokens": dict(count="hidden.size(1)"),
    "pool: sums over the batch axis": dict(total="(hidden * weights).sum(dim=0)", count="weights.sum(dim=0).clamp(min=1)"),
    "pool: averages over the feature axis": dict(total="(hidden * weights).sum(dim=-1)",
                                                 count="weights.sum(dim=-1).clamp(min=1)"),
    "pool: counts the real tokens of the whole batch": dict(count="weights.sum().clamp(min=1)"),
    "pool: a row without tokens gives NaN (0 / 0)": dict(count="weights.sum(dim=1)"),
    "pool: 0 / 0 patched with nan_to_num (NaN in the gradient)": dict(count="weights.sum(dim=1)",
                                                                     result="torch.nan_to_num(total / count)"),
    "pool: count without keepdim": dict(count="attention_mask.sum(dim=1).clamp(min=1)"),
    "pool: float32 hard-coded": dict(weights="attention_mask.float().unsqueeze(-1)", total="(hidden.float() * weights).sum(dim=1)"),
    "pool: mask inverted (averages the padding)": dict(weights="(attention_mask == 0).to(hidden.dtype).unsqueeze(-1)"),
    "pool: padding taken as the zero vectors": dict(weights="(hidden != 0).to(hidden.dtype)"),
    "pool: returns the sum, not the mean": dict(result="total"),
    "pool: keeps the T axis, (B, 1, d)": dict(total="(hidden * weights).sum(dim=1, keepdim=True)",
                                              count="weights.sum(dim=1, keepdim=True).clamp(min=1)"),
}
WRONG = from_template("mean_pool", POOL, POOL_RIGHT, POOL_BUGS)
WRONG.update({
    "pool: padding included (hidden.mean(dim=1))": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            return hidden.mean(dim=1)
    """),
    "pool: the [CLS] vector, not a mean": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            return hidden[:, 0].clone()
    """),
    "pool: the mean of the first n tokens (assumes padding at the end)": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            rows = []
            for h, m in zip(hidden, attention_mask):
                n = int(m.sum())
                rows.append(h[:n].mean(dim=0) if n else h.new_zeros(h.size(-1)))
            return torch.stack(rows)
    """),
    "pool: zeroes the padding in place (changes hidden)": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            pad = ~attention_mask.bool()
            hidden.masked_fill_(pad[..., None], 0.0)
            return hidden.sum(dim=1) / attention_mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
    """),
    "pool: max pooling over the real tokens": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            pad = ~attention_mask.bool()[..., None]
            out = hidden.masked_fill(pad, float("-inf")).amax(dim=1)
            return out.masked_fill(out == float("-inf"), 0.0)
    """),
    "pool: in plain Python floats (no gradient)": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            out = []
            for rows, marks in zip(hidden.tolist(), attention_mask.tolist()):
                real = [v for v, m in zip(rows, marks) if m]
                out.append([sum(c) / len(real) for c in zip(*real)] if real else [0.0] * len(rows[0]))
            return torch.tensor(out, dtype=hidden.dtype)
    """),
    "pool: under torch.no_grad() (no gradient)": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            with torch.no_grad():
                weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
                return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    """),
    "pool: rows flattened with view (fails on a transposed hidden)": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            B, T, d = hidden.shape
            flat = hidden.view(B * T, d) * attention_mask.reshape(B * T, 1).to(hidden.dtype)
            count = attention_mask.to(hidden.dtype).sum(dim=1, keepdim=True).clamp(min=1)
            return flat.view(B, T, d).sum(dim=1) / count
    """),
    "pool: a row without tokens left out": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            keep = attention_mask.bool()
            return torch.stack([h[m].mean(dim=0) for h, m in zip(hidden, keep) if m.any()])
    """),
    "pool: the package's mean_pool": ("mean_pool", """
        from llmcourse.finetune import mean_pool
    """),
    "pool: the package's mean_pool through a wrapper": ("mean_pool", """
        import llmcourse.models.bert as _bert

        def mean_pool(hidden, attention_mask):
            return _bert.mean_pool(hidden, attention_mask)
    """),
})

# ----------------------------------------------------------------------------- 2. freeze

WRONG.update({
    "freeze: gradients left in p.grad (an optimizer step still moves them)": ("freeze", """
        def freeze(model):
            for p in model.parameters():
                p.requires_grad = False
    """),
    "freeze: gradients zeroed, not dropped (weight decay still moves them)": ("freeze", """
        def freeze(model):
            for p in model.parameters():
                p.requires_grad_(False)
                if p.grad is not None:
                    p.grad.zero_()
    """),
    "freeze: p.detach_() (gradients kept)": ("freeze", """
        def freeze(model):
            for p in model.parameters():
                p.detach_()
    """),
    "freeze: model.eval() only": ("freeze", """
        def freeze(model):
            model.eval()
    """),
    "freeze: torch.no_grad() around nothing": ("freeze", """
        def freeze(model):
            with torch.no_grad():
                model.zero_grad(set_to_none=True)
    """),
    "freeze: the module's own parameters only (recurse=False)": ("freeze", """
        def freeze(model):
            for p in model.parameters(recurse=False):
                p.requires_grad_(False)
                p.grad = None
    """),
    "freeze: one level of submodules": ("freeze", """
        def freeze(model):
            for child in model.children():
                for p in child.parameters(recurse=False):
                    p.requires_grad_(False)
                    p.grad = None
    """),
    "freeze: weights only (biases and LayerNorm shifts train)": ("freeze", """
        def freeze(model):
            for name, p in model.named_parameters():
                if name.endswith("weight"):
                    p.requires_grad_(False)
                    p.grad = None
    """),
    "freeze: nn.Linear layers only": ("freeze", """
        def freeze(model):
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    for p in module.parameters():
                        p.requires_grad_(False)
                        p.grad = None
    """),
    "freeze: only the parameters that hold a gradient": ("freeze", """
        def freeze(model):
            for p in model.parameters():
                if p.grad is not None:
                    p.requires_grad_(False)
                    p.grad = None
    """),
    "freeze: a hook that zeroes the gradients (requires_grad stays True)": ("freeze", """
        def freeze(model):
            for p in model.parameters():
                p.grad = None
                p.register_hook(torch.zeros_like)
    """),
    "freeze: requires_grad set on the module, not its parameters": ("freeze", """
        def freeze(model):
            model.requires_grad = False
            model.zero_grad(set_to_none=True)
    """),
    "freeze: new frozen parameters in place of the model's": ("freeze", """
        def freeze(model):
            for module in model.modules():
                for name, p in list(module.named_parameters(recurse=False)):
                    setattr(module, name, nn.Parameter(p.detach().clone(), requires_grad=False))
    """),
    "freeze: the package's freeze": ("freeze", """
        from llmcourse.finetune import freeze
    """),
})

# ----------------------------------------------------------------------------- 3. unfreeze_last

UNFREEZE = """
    def unfreeze_last(model, k):
        n = len(model.blocks)
        {check}
        {before}
        for block in {chosen}:
            for {name}p in block.{params}():
                {set}
"""
UNFREEZE_RIGHT = dict(check='if not 0 <= k <= n:\n            raise ValueError(f"k must be in 0 .. {n}, got {k}")',
                      before="pass", chosen="list(model.blocks)[n - k :]", name="", params="parameters",
                      set="p.requires_grad_(True)")
UNFREEZE_BUGS = {
    "unfreeze: k = 0 unfreezes every block (blocks[-k:])": dict(chosen="list(model.blocks)[-k:]"),
    "unfreeze: the first k blocks": dict(chosen="list(model.blocks)[:k]"),
    "unfreeze: k + 1 blocks": dict(chosen="list(model.blocks)[max(n - k - 1, 0) :]"),
    "unfreeze: k - 1 blocks": dict(chosen="list(model.blocks)[n - k + 1 :]"),
    "unfreeze: the last block, k times": dict(chosen="[model.blocks[-1]] * k"),
    "unfreeze: freezes every other parameter first": dict(before="model.requires_grad_(False)"),
    "unfreeze: calls freeze(model) first": dict(before="freeze(model)"),
    "unfreeze: no check of k (k > n unfreezes every block)": dict(check="pass"),
    "unfreeze: k = 0 refused": dict(check='if not 0 < k <= n:\n            raise ValueError(f"k must be in 1 .. {n}")'),
    "unfreeze: an AssertionError for a bad k": dict(check='assert 0 <= k <= n, "bad k"'),
    "unfreeze: weights only": dict(name="name, ", params="named_parameters",
                                   set='p.requires_grad_(p.requires_grad or name.endswith("weight"))'),
}
WRONG.update(from_template("unfreeze_last", UNFREEZE, UNFREEZE_RIGHT, UNFREEZE_BUGS))
WRONG.update({
    "unfreeze: the last k blocks and everything after them": ("unfreeze_last", """
        def unfreeze_last(model, k):
            n = len(model.blocks)
            if not 0 <= k <= n:
                raise ValueError(f"k must be in 0 .. {n}, got {k}")
            if k == 0:
                return
            first = next(model.blocks[n - k].parameters())
            on = False
            for p in model.parameters():
                on = on or p is first
                if on:
                    p.requires_grad_(True)
    """),
    "unfreeze: the whole model when k covers every block": ("unfreeze_last", """
        def unfreeze_last(model, k):
            n = len(model.blocks)
            if not 0 <= k <= n:
                raise ValueError(f"k must be in 0 .. {n}, got {k}")
            if k == n:
                model.requires_grad_(True)
            for block in list(model.blocks)[n - k :]:
                block.requires_grad_(True)
    """),
    "unfreeze: train() mode instead of requires_grad": ("unfreeze_last", """
        def unfreeze_last(model, k):
            n = len(model.blocks)
            if not 0 <= k <= n:
                raise ValueError(f"k must be in 0 .. {n}, got {k}")
            for block in list(model.blocks)[n - k :]:
                block.train()
    """),
    "unfreeze: the package's unfreeze_last": ("unfreeze_last", """
        from llmcourse.finetune.heads import unfreeze_last
    """),
})

# ----------------------------------------------------------------------------- 4. count_trainable

WRONG.update({
    "count: every parameter, trainable or not": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for p in model.parameters())
    """),
    "count: the frozen ones": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for p in model.parameters() if not p.requires_grad)
    """),
    "count: a tied parameter twice (remove_duplicate=False)": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad)
    """),
    "count: a tied parameter twice (each module's own parameters)": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False) if p.requires_grad)
    """),
    "count: tensors, not numbers": ("count_trainable", """
        def count_trainable(model):
            return len([p for p in model.parameters() if p.requires_grad])
    """),
    "count: the state dict (buffers and tied weights, frozen ones too)": ("count_trainable", """
        def count_trainable(model):
            return sum(v.numel() for v in model.state_dict().values())
    """),
    "count: the state dict's trainable tensors (tied weights twice)": ("count_trainable", """
        def count_trainable(model):
            return sum(v.numel() for v in model.state_dict(keep_vars=True).values() if v.requires_grad)
    """),
    "count: rows, not numbers (p.shape[0])": ("count_trainable", """
        def count_trainable(model):
            return sum(p.shape[0] for p in model.parameters() if p.requires_grad)
    """),
    "count: weight matrices only": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and name.endswith("weight"))
    """),
    "count: returns a tensor": ("count_trainable", """
        def count_trainable(model):
            return torch.tensor([p.numel() for p in model.parameters() if p.requires_grad], dtype=torch.long).sum()
    """),
    "count: returns a float": ("count_trainable", """
        def count_trainable(model):
            return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
    """),
    "count: the parameters that hold a gradient": ("count_trainable", """
        def count_trainable(model):
            return sum(p.numel() for p in model.parameters() if p.grad is not None)
    """),
    "count: shared tensors found by shape (distinct layers of one shape counted once)": ("count_trainable", """
        def count_trainable(model):
            sizes = {tuple(p.shape): p.numel() for p in model.parameters() if p.requires_grad}
            return sum(sizes.values())
    """),
    "count: the package's count_trainable": ("count_trainable", """
        from llmcourse.finetune import count_trainable
    """),
})

# ----------------------------------------------------------------------------- 5. LoRALinear

LORA = """
    class LoRALinear(nn.Module):
        def __init__(self, base, r, alpha, dropout=0.0):
            super().__init__()
            self.base = {base}
            {freeze}
            w = base.weight
            self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype={dtype}, device=w.device))
            {init_A}
            self.lora_B = nn.Parameter({init_B})
            self.scaling = {scaling}
            self.dropout = nn.Dropout(dropout{inplace})
            self.merged = False

        def forward(self, x):
            y = self.base(x)
            if self.merged{ignore_merged}:
                return y
            return y + {lora_path}

        def merge(self):
            if {merge_guard}:
                with torch.no_grad():
                    self.base.weight += {merge_delta}
                self.merged = {merged_flag}

        def unmerge(self):
            if self.merged:
                with torch.no_grad():
                    {unmerge}
                self.merged = False
"""
LORA_RIGHT = dict(
    base="base", freeze="base.requires_grad_(False)", dtype="w.dtype",
    init_A="nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))",
    init_B="torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device)", scaling="alpha / r", inplace="",
    ignore_merged="", lora_path="self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)",
    merge_guard="not self.merged", merge_delta="self.scaling * (self.lora_B @ self.lora_A)", merged_flag="True",
    unmerge="self.base.weight -= self.scaling * (self.lora_B @ self.lora_A)",
)
LORA_BUGS = {
    "lora: scaled by alpha, not alpha / r": dict(scaling="alpha"),
    "lora: scaled by r / alpha": dict(scaling="r / alpha"),
    "lora: no scaling": dict(scaling="1.0"),
    "lora: alpha // r (integer division)": dict(scaling="alpha // r"),
    "lora: alpha / sqrt(r)": dict(scaling="alpha / math.sqrt(r)"),
    "lora: B random, A zero": dict(init_A="nn.init.zeros_(self.lora_A)",
                                   init_B="torch.empty(base.out_features, r, dtype=w.dtype).uniform_(-0.1, 0.1)"),
    "lora: B random too (the layer does not start as the base)": dict(
        init_B="torch.randn(base.out_features, r, dtype=w.dtype) * 0.01"),
    "lora: A and B both zero (never trains)": dict(init_A="nn.init.zeros_(self.lora_A)"),
    "lora: A initialised to a constant": dict(init_A="nn.init.constant_(self.lora_A, 0.01)"),
    "lora: A from a fixed seed (every layer the same A)": dict(
        init_A="self.lora_A.data = torch.randn(r, base.in_features, generator=torch.Generator().manual_seed(0), dtype=w.dtype)"),
    "lora: base left trainable": dict(freeze="pass"),
    "lora: the base weight frozen, its bias left trainable": dict(freeze="base.weight.requires_grad_(False)"),
    "lora: the bias frozen unconditionally (fails without one)": dict(
        freeze="base.weight.requires_grad_(False); base.bias.requires_grad_(False)"),
    "lora: base.requires_grad = False (an attribute, freezes nothing)": dict(freeze="base.requires_grad = False"),
    "lora: wraps a copy of the base layer": dict(base="copy.deepcopy(base)", freeze="self.base.requires_grad_(False)"),
    "lora: A and B in float32 (fails on float64 layers)": dict(dtype="torch.float32",
                                                              init_B="torch.zeros(base.out_features, r)"),
    "lora: merge with a transposed product (A^T B^T)": dict(
        merge_delta="self.scaling * (self.lora_A.T @ self.lora_B.T)",
        unmerge="self.base.weight -= self.scaling * (self.lora_A.T @ self.lora_B.T)"),
    "lora: merge without the scaling": dict(merge_delta="self.lora_B @ self.lora_A",
                                            unmerge="self.base.weight -= self.lora_B @ self.lora_A"),
    "lora: unmerge without the scaling": dict(unmerge="self.base.weight -= self.lora_B @ self.lora_A"),
    "lora: merge never sets the flag (the update counted twice)": dict(merged_flag="False"),
    "lora: a second merge adds the update again": dict(merge_guard="True"),
    "lora: unmerge does not restore the weight (the flag only)": dict(unmerge="pass"),
    "lora: unmerge adds the update again": dict(unmerge="self.base.weight += self.scaling * (self.lora_B @ self.lora_A)"),
    "lora: forward ignores the merged flag": dict(ignore_merged=" and False"),
    "lora: dropout on the output of the LoRA path": dict(
        lora_path="self.dropout(self.scaling * (x @ self.lora_A.T @ self.lora_B.T))"),
    "lora: no dropout": dict(lora_path="self.scaling * (x @ self.lora_A.T @ self.lora_B.T)"),
    "lora: dropout in place (changes x)": dict(inplace=", inplace=True"),
}
WRONG.update(from_template("LoRALinear", LORA, LORA_RIGHT, LORA_BUGS))
WRONG.update({
    "lora: dropout on both paths": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype))
                self.scaling, self.dropout, self.merged = alpha / r, nn.Dropout(dropout), False

            def forward(self, x):
                x = self.dropout(x)
                y = self.base(x)
                return y if self.merged else y + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)

            @torch.no_grad()
            def merge(self):
                if not self.merged:
                    self.base.weight += self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.merged:
                    self.base.weight -= self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = False
    """),
    "lora: dropout without the 1 / (1 - p) rescaling": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype))
                self.scaling, self.p, self.merged = alpha / r, dropout, False

            def forward(self, x):
                y = self.base(x)
                if self.merged:
                    return y
                if self.training and self.p > 0:
                    x = x * (torch.rand_like(x) >= self.p)  # dropped, but the rest not scaled up
                return y + self.scaling * (x @ self.lora_A.T @ self.lora_B.T)

            @torch.no_grad()
            def merge(self):
                if not self.merged:
                    self.base.weight += self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.merged:
                    self.base.weight -= self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = False
    """),
    "lora: A stored as (in, r) and B as (r, out)": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                self.lora_A = nn.Parameter(torch.empty(base.in_features, r, dtype=base.weight.dtype))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                self.lora_B = nn.Parameter(torch.zeros(r, base.out_features, dtype=base.weight.dtype))
                self.scaling, self.dropout, self.merged = alpha / r, nn.Dropout(dropout), False

            def forward(self, x):
                y = self.base(x)
                return y if self.merged else y + self.scaling * (self.dropout(x) @ self.lora_A @ self.lora_B)

            @torch.no_grad()
            def merge(self):
                if not self.merged:
                    self.base.weight += self.scaling * (self.lora_A @ self.lora_B).T
                    self.merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.merged:
                    self.base.weight -= self.scaling * (self.lora_A @ self.lora_B).T
                    self.merged = False
    """),
    "lora: A and B plain tensors, not nn.Parameter (no optimizer sees them)": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                self.lora_A = (torch.rand(r, base.in_features, dtype=base.weight.dtype) - 0.5).requires_grad_()
                self.lora_B = torch.zeros(base.out_features, r, dtype=base.weight.dtype, requires_grad=True)
                self.scaling, self.dropout, self.merged = alpha / r, nn.Dropout(dropout), False

            def forward(self, x):
                y = self.base(x)
                return y if self.merged else y + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)

            @torch.no_grad()
            def merge(self):
                if not self.merged:
                    self.base.weight += self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.merged:
                    self.base.weight -= self.scaling * (self.lora_B @ self.lora_A)
                    self.merged = False
    """),
    "lora: merge puts a new Parameter in place of base.weight (trainable)": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype))
                self.scaling, self.dropout, self.merged = alpha / r, nn.Dropout(dropout), False

            def forward(self, x):
                y = self.base(x)
                return y if self.merged else y + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)

            def merge(self):
                if not self.merged:
                    self.base.weight = nn.Parameter(self.base.weight + self.scaling * (self.lora_B @ self.lora_A).detach())
                    self.merged = True

            def unmerge(self):
                if self.merged:
                    self.base.weight = nn.Parameter(self.base.weight - self.scaling * (self.lora_B @ self.lora_A).detach())
                    self.merged = False
    """),
    "lora: a subclass of the package's LoRALinear": ("LoRALinear", """
        from llmcourse.finetune import LoRALinear as _Course

        class LoRALinear(_Course):
            pass
    """),
    "lora: peft's LoRA layer inside": ("LoRALinear", """
        import peft

        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.inner = peft.tuners.lora.Linear(base, "default", r=r, lora_alpha=alpha, lora_dropout=dropout)
                self.base = base
                self.lora_A = self.inner.lora_A["default"].weight
                self.lora_B = self.inner.lora_B["default"].weight

            def forward(self, x):
                return self.inner(x)

            def merge(self):
                self.inner.merge()

            def unmerge(self):
                self.inner.unmerge()
    """),
})

# ----------------------------------------------------------------------------- 6. add_lora

ADD = """
    def add_lora(model, r, alpha, targets=("query", "value")):
        chosen = [(name, module) for name, module in model.named_modules() if {is_layer} and {matches}]
        found = {{name.rsplit(".", 1)[-1] for name, _ in chosen}}
        missing = [t for t in targets if t not in found]
        if {refuse}:
            raise ValueError(f"no nn.Linear is named {{missing}}")
        {freeze_before}
        for name, layer in chosen:
            parent_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attribute, LoRALinear({wrapped}))
        {freeze_after}
        return {result}
"""
ADD_RIGHT = dict(is_layer="isinstance(module, nn.Linear)", matches='name.rsplit(".", 1)[-1] in targets', refuse="missing",
                 freeze_before="freeze(model)", wrapped="layer, r, alpha", freeze_after="pass",
                 result="[name for name, _ in chosen]")
ADD_BUGS = {
    "add: the model not frozen (only the wrapped layers)": dict(freeze_before="pass"),
    "add: frozen after wrapping (A and B frozen too)": dict(freeze_before="pass", freeze_after="freeze(model)"),
    "add: the target matched anywhere in the name (value_head, query_proj)": dict(matches="any(t in name for t in targets)"),
    "add: the target matched against any part of the name": dict(matches='any(t in name.split(".") for t in targets)'),
    "add: modules other than nn.Linear wrapped": dict(is_layer="True"),
    "add: no ValueError for a target that matches nothing": dict(refuse="False"),
    "add: a ValueError only when no target matches": dict(refuse="not chosen"),
    "add: r and alpha swapped": dict(wrapped="layer, alpha, r"),
    "add: wraps a copy of each layer": dict(wrapped="copy.deepcopy(layer), r, alpha"),
    "add: returns the last parts of the names": dict(result="[name.rsplit('.', 1)[-1] for name, _ in chosen]"),
    "add: returns the layers, not their names": dict(result="[layer for _, layer in chosen]"),
    "add: returns the names sorted": dict(result="sorted(name for name, _ in chosen)"),
}
WRONG.update(from_template("add_lora", ADD, ADD_RIGHT, ADD_BUGS))
WRONG.update({
    "add: names grouped by target": ("add_lora", """
        def add_lora(model, r, alpha, targets=("query", "value")):
            modules = dict(model.named_modules())
            chosen = []
            for target in targets:
                mine = [n for n, m in modules.items() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] == target]
                if not mine:
                    raise ValueError(f"no nn.Linear is named {target}")
                chosen += mine
            freeze(model)
            for name in chosen:
                parent_name, _, attribute = name.rpartition(".")
                setattr(model.get_submodule(parent_name), attribute, LoRALinear(modules[name], r, alpha))
            return chosen
    """),
    "add: set on the model under the dotted name": ("add_lora", """
        def add_lora(model, r, alpha, targets=("query", "value")):
            chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
            if any(t not in {n.rsplit(".", 1)[-1] for n, _ in chosen} for t in targets):
                raise ValueError("a target matches no nn.Linear")
            freeze(model)
            for name, layer in chosen:
                model.__dict__[name] = LoRALinear(layer, r, alpha)  # an attribute named "blocks.0.attention.query"
            return [n for n, _ in chosen]
    """),
    "add: the ValueError raised after wrapping": ("add_lora", """
        def add_lora(model, r, alpha, targets=("query", "value")):
            chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
            freeze(model)
            for name, layer in chosen:
                parent_name, _, attribute = name.rpartition(".")
                setattr(model.get_submodule(parent_name), attribute, LoRALinear(layer, r, alpha))
            if any(t not in {n.rsplit(".", 1)[-1] for n, _ in chosen} for t in targets):
                raise ValueError("a target matches no nn.Linear")
            return [n for n, _ in chosen]
    """),
    "add: the package's add_lora": ("add_lora", """
        from llmcourse.finetune import add_lora as _course_add_lora

        def add_lora(model, r, alpha, targets=("query", "value")):
            freeze(model)
            return _course_add_lora(model, r, alpha, target_modules=list(targets))
    """),
})

# ----------------------------------------------------------------------------- 7. instruction_batch

BATCH = """
    def instruction_batch(pairs, pad_id):
        rows = []
        for prompt, response in pairs:
            seq = [*prompt, *response]
            n_masked = {n_masked}
            rows.append(({inputs}, [-100] * n_masked + {targets}[n_masked:]))
        T = max(len(x) for x, _ in rows){extra}
        inputs = torch.full((len(rows), T), {input_pad}, dtype=torch.long)
        targets = torch.full((len(rows), T), {target_pad}, dtype={dtype})
        for i, (x, y) in enumerate(rows):
            inputs[i, {place_x}] = torch.tensor(x, dtype=torch.long)
            targets[i, {place_y}] = torch.tensor(y, dtype={dtype})
        {post}
        return inputs, targets
"""
BATCH_RIGHT = dict(n_masked="max(len(prompt) - 1, 0)", inputs="seq[:-1]", targets="seq[1:]", extra="", input_pad="pad_id",
                   target_pad="-100", dtype="torch.long", place_x=": len(x)", place_y=": len(y)", post="pass")
BATCH_BUGS = {
    "batch: the prompt not masked": dict(n_masked="0"),
    "batch: masked one too many (the first response token unscored)": dict(n_masked="len(prompt)"),
    "batch: masked one too few (the last prompt token scored)": dict(n_masked="max(len(prompt) - 2, 0)"),
    "batch: an empty prompt masks all but the last target (len(prompt) - 1 = -1)": dict(n_masked="len(prompt) - 1"),
    "batch: padding not masked (targets padded with pad_id)": dict(target_pad="pad_id"),
    "batch: padding found by comparing ids with pad_id (masks a real end-of-text)": dict(
        target_pad="pad_id", post="targets[targets == pad_id] = -100"),
    "batch: inputs not shifted (inputs = seq)": dict(inputs="seq"),
    "batch: targets not shifted (targets = seq[:-1])": dict(targets="seq[:-1]"),
    "batch: the shift reversed": dict(inputs="seq[1:]", targets="seq[:-1]"),
    "batch: padded on the left": dict(place_x="T - len(x) :", place_y="T - len(y) :"),
    "batch: inputs padded with -100": dict(input_pad="-100"),
    "batch: one column too many": dict(extra=" + 1"),
    "batch: float targets": dict(dtype="torch.float32"),
    "batch: int32 targets": dict(dtype="torch.int32"),
    "batch: the end-of-text target not scored": dict(targets="(seq[1:-1] + [-100])"),
}
WRONG.update(from_template("instruction_batch", BATCH, BATCH_RIGHT, BATCH_BUGS))
WRONG.update({
    "batch: the prompt masked in the inputs too": ("instruction_batch", """
        def instruction_batch(pairs, pad_id):
            T = max(len(p) + len(r) for p, r in pairs) - 1
            inputs = torch.full((len(pairs), T), pad_id, dtype=torch.long)
            targets = torch.full((len(pairs), T), -100, dtype=torch.long)
            for i, (prompt, response) in enumerate(pairs):
                seq = torch.tensor([*prompt, *response], dtype=torch.long)
                seq[: max(len(prompt) - 1, 0)] = -100  # meant for the targets, lands in the inputs as well
                inputs[i, : len(seq) - 1] = seq[:-1]
                targets[i, : len(seq) - 1] = seq[1:]
            return inputs, targets
    """),
    "batch: joins the prompt and the response with += (changes the caller's list)": ("instruction_batch", """
        def instruction_batch(pairs, pad_id):
            rows = []
            for prompt, response in pairs:
                n_masked = max(len(prompt) - 1, 0)
                seq = prompt
                seq += response
                rows.append((seq[:-1], [-100] * n_masked + list(seq[1:])[n_masked:]))
            T = max(len(x) for x, _ in rows)
            inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
            targets = torch.full((len(rows), T), -100, dtype=torch.long)
            for i, (x, y) in enumerate(rows):
                inputs[i, : len(x)] = torch.tensor(x, dtype=torch.long)
                targets[i, : len(y)] = torch.tensor(y, dtype=torch.long)
            return inputs, targets
    """),
    "batch: the package's instruction_batch": ("instruction_batch", """
        from llmcourse.finetune import instruction_batch as _course_batch

        def instruction_batch(pairs, pad_id):
            return _course_batch([(list(p), list(r)) for p, r in pairs], pad_id)
    """),
})

# ----------------------------------------------------------------------------- 8. response_loss

LOSS = """
    def response_loss(logits, targets):
        {guard}
        return {loss}
"""
LOSS_RIGHT = dict(guard="if not (targets != -100).any():\n            return logits.sum() * 0.0",
                  loss="F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)")
LOSS_BUGS = {
    "loss: NaN when nothing is scored (0 / 0)": dict(guard="pass"),
    "loss: nothing scored gives a constant (backward() fails)": dict(
        guard="if not (targets != -100).any():\n            return torch.tensor(0.0)"),
    "loss: the mean over all B * T positions": dict(
        loss="F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction='sum') / targets.numel()"),
    "loss: the sum, not the mean": dict(loss="F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction='sum')"),
    "loss: -100 scored as class 0": dict(loss="F.cross_entropy(logits.flatten(0, 1), targets.flatten().clamp(min=0))"),
    "loss: flattened with view (fails on slices)": dict(loss="F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))"),
    "loss: shifted again (the targets are shifted already)": dict(
        loss="F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten())"),
    "loss: (B, T, V) passed as it is (the class axis is T)": dict(loss="F.cross_entropy(logits, targets)"),
    "loss: the logits detached (no gradient)": dict(loss="F.cross_entropy(logits.detach().flatten(0, 1), targets.flatten())"),
    "loss: divided by the batch size": dict(
        loss="F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction='sum') / targets.size(0)"),
}
WRONG.update(from_template("response_loss", LOSS, LOSS_RIGHT, LOSS_BUGS))
WRONG.update({
    "loss: the mean of the rows' means": ("response_loss", """
        def response_loss(logits, targets):
            if not (targets != -100).any():
                return logits.sum() * 0.0
            rows = [F.cross_entropy(z, y) for z, y in zip(logits, targets) if (y != -100).any()]
            return torch.stack(rows).mean()
    """),
    "loss: token 0 never scored (targets > 0 as the mask)": ("response_loss", """
        def response_loss(logits, targets):
            scored = targets > 0
            if not scored.any():
                return logits.sum() * 0.0
            log_p = torch.log_softmax(logits, dim=-1)
            picked = log_p.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
            return -(picked * scored).sum() / scored.sum()
    """),
    "loss: the log of the softmax (a confident mistake gives inf)": ("response_loss", """
        def response_loss(logits, targets):
            scored = targets != -100
            if not scored.any():
                return logits.sum() * 0.0
            p = torch.softmax(logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
            return -(torch.log(p) * scored).sum() / scored.sum()
    """),
    "loss: the package's next-token loss": ("response_loss", """
        from llmcourse.training.objectives import next_token_loss

        def response_loss(logits, targets):
            if not (targets != -100).any():
                return logits.sum() * 0.0
            return next_token_loss(logits, targets)
    """),
})

# ----------------------------------------------------------------------------- right, in other styles

ALTERNATIVES = {
    "pool: masked_fill, then a sum over the real tokens": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            pad = attention_mask == 0  # (B, T)
            total = hidden.masked_fill(pad[..., None], 0.0).sum(dim=1)  # (B, d)
            count = (~pad).sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1) long
            return total / count.to(hidden.dtype)
    """),
    "pool: einsum with normalised weights": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            m = attention_mask.to(hidden.dtype)
            w = m / m.sum(dim=1, keepdim=True).clamp(min=1)  # (B, T), each row sums to 1 or 0
            return torch.einsum("btd,bt->bd", hidden, w)
    """),
    "pool: a loop over the rows with boolean indexing": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            rows = []
            for h, m in zip(hidden, attention_mask):
                real = h[m.bool()]  # (n, d)
                rows.append(real.mean(dim=0) if len(real) else h.new_zeros(h.size(-1)))
            return torch.stack(rows)
    """),
    "pool: float64 throughout, cast back": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            m = attention_mask.double()[..., None]
            out = (hidden.double() * m).sum(1) / m.sum(1).clamp(min=1)
            return out.to(hidden.dtype)
    """),
    "pool: a batched matrix product": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            m = attention_mask.to(hidden.dtype)[:, None, :]  # (B, 1, T)
            return (m @ hidden)[:, 0] / m.sum(-1).clamp(min=1)
    """),
    "pool: the mask used as it is, 1e-9 added to the count": ("mean_pool", """
        def mean_pool(hidden, attention_mask):
            m = attention_mask.unsqueeze(-1)  # (B, T, 1), any dtype
            return (hidden * m).sum(dim=1) / (m.sum(dim=1) + 1e-9)
    """),
    "freeze: requires_grad_ on the module, zero_grad(set_to_none=True)": ("freeze", """
        def freeze(model):
            model.requires_grad_(False)
            model.zero_grad(set_to_none=True)
            return model
    """),
    "freeze: every module's own parameters": ("freeze", """
        def freeze(model):
            for module in model.modules():
                for p in module.parameters(recurse=False):
                    p.requires_grad = False
                    p.grad = None
    """),
    "unfreeze: a loop over the blocks with their index": ("unfreeze_last", """
        def unfreeze_last(model, k):
            n = len(model.blocks)
            if k < 0 or k > n:
                raise ValueError(f"k = {k}, but the model has {n} blocks")
            for i, block in enumerate(model.blocks):
                if i >= n - k:
                    block.requires_grad_(True)
    """),
    "unfreeze: a slice of the ModuleList, k = 0 returned early": ("unfreeze_last", """
        def unfreeze_last(model, k):
            if not isinstance(k, int) or not 0 <= k <= len(model.blocks):
                raise ValueError("k out of range")
            if k == 0:
                return model
            for p in model.blocks[-k:].parameters():
                p.requires_grad_(True)
            return model
    """),
    "unfreeze: by the names of the parameters": ("unfreeze_last", """
        def unfreeze_last(model, k):
            n = len(model.blocks)
            if not 0 <= k <= n:
                raise ValueError("k out of range")
            wanted = tuple(f"blocks.{i}." for i in range(n - k, n))
            for name, p in model.named_parameters():
                if name.startswith(wanted):
                    p.requires_grad_(True)
    """),
    "count: each tensor once by id, from every name": ("count_trainable", """
        def count_trainable(model):
            seen = {}
            for _, p in model.named_parameters(remove_duplicate=False):
                if p.requires_grad:
                    seen[id(p)] = p.numel()
            return sum(seen.values())
    """),
    "count: math.prod of the shapes": ("count_trainable", """
        def count_trainable(model):
            total = 0
            for p in model.parameters():
                if p.requires_grad:
                    total += math.prod(p.shape)
            return total
    """),
    "count: the modules' own parameters with a set of seen tensors": ("count_trainable", """
        def count_trainable(model):
            seen, total = set(), 0
            for module in model.modules():
                for p in module.parameters(recurse=False):
                    if p.requires_grad and p.data_ptr() not in seen:
                        seen.add(p.data_ptr())
                        total += p.nelement()
            return total
    """),
    "lora: the update materialised as (alpha / r) B A": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base
                base.weight.requires_grad = False
                if base.bias is not None:
                    base.bias.requires_grad = False
                self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype, device=base.weight.device))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
                self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype, device=base.weight.device))
                self.r, self.alpha = r, alpha
                self.dropout = nn.Dropout(dropout)
                self.merged = False

            def delta(self):
                return (self.alpha / self.r) * self.lora_B @ self.lora_A  # (out, in)

            def forward(self, x):
                if self.merged:
                    return self.base(x)
                return self.base(x) + self.dropout(x) @ self.delta().T

            def merge(self):
                if not self.merged:
                    self.base.weight.data += self.delta().detach()
                    self.merged = True

            def unmerge(self):
                if self.merged:
                    self.base.weight.data -= self.delta().detach()
                    self.merged = False
    """),
    "lora: F.linear twice, F.dropout, Gaussian A, addmm_ to merge": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base.requires_grad_(False)
                w = base.weight
                self.lora_A = nn.Parameter(torch.randn(r, w.size(1), dtype=w.dtype, device=w.device) / r)
                self.lora_B = nn.Parameter(w.new_zeros(w.size(0), r))
                self.scale, self.p = alpha / r, dropout
                self.is_merged = False

            def forward(self, x):
                out = F.linear(x, self.base.weight, self.base.bias)
                if not self.is_merged:
                    h = F.linear(F.dropout(x, self.p, self.training), self.lora_A)  # (..., r)
                    out = out + self.scale * F.linear(h, self.lora_B)
                return out

            @torch.no_grad()
            def merge(self):
                if not self.is_merged:
                    self.base.weight.addmm_(self.lora_B, self.lora_A, alpha=self.scale)
                    self.is_merged = True

            @torch.no_grad()
            def unmerge(self):
                if self.is_merged:
                    self.base.weight.addmm_(self.lora_B, self.lora_A, alpha=-self.scale)
                    self.is_merged = False
    """),
    "lora: einsum, the update computed in float64": ("LoRALinear", """
        class LoRALinear(nn.Module):
            def __init__(self, base, r, alpha, dropout=0.0):
                super().__init__()
                self.base = base
                for p in self.base.parameters():
                    p.requires_grad_(False)
                self.lora_A = nn.Parameter(nn.init.kaiming_uniform_(base.weight.new_empty(r, base.in_features), a=math.sqrt(5)))
                self.lora_B = nn.Parameter(base.weight.new_zeros(base.out_features, r))
                self.scaling = alpha / r
                self.dropout = nn.Dropout(dropout)
                self.merged = False

            def forward(self, x):
                y = self.base(x)
                if self.merged:
                    return y
                h = torch.einsum("...i,ri->...r", self.dropout(x), self.lora_A)
                return y + self.scaling * torch.einsum("...r,or->...o", h, self.lora_B)

            def _delta(self):
                return (self.scaling * self.lora_B.double() @ self.lora_A.double()).to(self.base.weight.dtype)

            def merge(self):
                if not self.merged:
                    with torch.no_grad():
                        self.base.weight.add_(self._delta())
                    self.merged = True

            def unmerge(self):
                if self.merged:
                    with torch.no_grad():
                        self.base.weight.sub_(self._delta())
                    self.merged = False
    """),
    "add: a recursive walk over named_children": ("add_lora", """
        def add_lora(model, r, alpha, targets=("query", "value")):
            def find(module, prefix):
                for child_name, child in module.named_children():
                    name = f"{prefix}.{child_name}" if prefix else child_name
                    if isinstance(child, nn.Linear) and child_name in targets:
                        yield module, child_name, name
                    yield from find(child, name)

            found = list(find(model, ""))
            for target in targets:
                if not any(attribute == target for _, attribute, _ in found):
                    raise ValueError(f"{target!r} matches no nn.Linear")
            freeze(model)
            for parent, attribute, _ in found:
                setattr(parent, attribute, LoRALinear(getattr(parent, attribute), r, alpha))
            return [name for _, _, name in found]
    """),
    "add: the parent found with getattr along the name": ("add_lora", """
        import functools

        def add_lora(model, r, alpha, targets=("query", "value")):
            names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in set(targets)]
            unmatched = set(targets) - {n.split(".")[-1] for n in names}
            if unmatched:
                raise ValueError(f"nothing matches {sorted(unmatched)}")
            freeze(model)
            for name in names:
                *path, last = name.split(".")
                parent = functools.reduce(getattr, path, model)
                setattr(parent, last, LoRALinear(getattr(parent, last), r=r, alpha=alpha))
            return names
    """),
    "batch: pad_sequence, masks from lengths": ("instruction_batch", """
        from torch.nn.utils.rnn import pad_sequence

        def instruction_batch(pairs, pad_id):
            seqs = [torch.tensor([*p, *r], dtype=torch.long) for p, r in pairs]
            inputs = pad_sequence([s[:-1] for s in seqs], batch_first=True, padding_value=pad_id)
            targets = pad_sequence([s[1:] for s in seqs], batch_first=True, padding_value=-100)
            j = torch.arange(targets.size(1))[None, :]  # (1, T)
            prompt_len = torch.tensor([len(p) for p, _ in pairs])[:, None]  # (B, 1)
            return inputs, targets.masked_fill(j + 1 < prompt_len, -100)
    """),
    "batch: the scored part counted from the end": ("instruction_batch", """
        def instruction_batch(pairs, pad_id):
            T = max(len(p) + len(r) for p, r in pairs) - 1
            inputs, targets = [], []
            for prompt, response in pairs:
                seq = list(prompt) + list(response)
                n_scored = min(len(response), len(seq) - 1)  # the response, less a first token with nothing before it
                y = [-100] * (len(seq) - 1 - n_scored) + seq[len(seq) - n_scored :]
                inputs.append(seq[:-1] + [pad_id] * (T - len(seq) + 1))
                targets.append(y + [-100] * (T - len(y)))
            return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
    """),
    "loss: log_softmax, gather and a mask": ("response_loss", """
        def response_loss(logits, targets):
            scored = targets != -100  # (B, T)
            log_p = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
            picked = log_p.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
            return -(picked * scored).sum() / scored.sum().clamp(min=1)
    """),
    "loss: nll_loss summed over the scored positions, in float64": ("response_loss", """
        def response_loss(logits, targets):
            flat_z, flat_y = logits.reshape(-1, logits.size(-1)).double(), targets.reshape(-1)
            keep = flat_y != -100
            total = F.nll_loss(torch.log_softmax(flat_z[keep], dim=-1), flat_y[keep], reduction="sum")
            return total / max(int(keep.sum()), 1)
    """),
}

# freeze and LoRALinear mistakes that the later cells would otherwise pay for twice
HELPER_BUGS = [
    "freeze: gradients left in p.grad (an optimizer step still moves them)",
    "freeze: model.eval() only",
    "freeze: weights only (biases and LayerNorm shifts train)",
    "freeze: new frozen parameters in place of the model's",
    "freeze: the package's freeze",
    "lora: base left trainable",
    "lora: scaled by alpha, not alpha / r",
    "lora: B random too (the layer does not start as the base)",
    "lora: A stored as (in, r) and B as (r, out)",
    "lora: merge never sets the flag (the update counted twice)",
    "lora: wraps a copy of the base layer",
    "lora: a subclass of the package's LoRALinear",
    "unfreeze: k = 0 unfreezes every block (blocks[-k:])",
    "pool: padding included (hidden.mean(dim=1))",
    "count: a tied parameter twice (remove_duplicate=False)",
    "batch: masked one too many (the first response token unscored)",
]

EXERCISE = Exercise(
    folder="08_finetuning", notebook="finetuning", answers=ANSWERS, points=(23, 23),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS, skip=SKIP,
)


def test_the_references_follow_the_notebook():
    """The package's versions, which the hidden tests compare with, follow the rules the notebook states."""
    import torch
    from torch import nn

    from llmcourse.finetune import LoRALinear, count_trainable, instruction_batch, mean_pool
    from llmcourse.models import GPT, GPTConfig

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
    assert mean_pool(hidden, torch.tensor([[0, 0, 0]])).tolist() == [[0.0, 0.0]]  # an empty row: zeros
    inputs, targets = instruction_batch([([11, 12, 13], [21, 22, 2]), ([14], [23, 2])], pad_id=0)
    assert inputs.tolist() == [[11, 12, 13, 21, 22], [14, 23, 0, 0, 0]]
    assert targets.tolist() == [[-100, -100, 21, 22, 2], [23, 2, -100, -100, -100]]
    _, targets = instruction_batch([([5, 6], [7, 2]), ([8, 9, 10], [11, 12, 13, 2])], pad_id=2)
    assert targets.tolist() == [[-100, 7, 2, -100, -100, -100], [-100, -100, 11, 12, 13, 2]]
    assert instruction_batch([([], [4, 5, 2])], pad_id=0)[1].tolist() == [[5, 2]]
    layer = LoRALinear(nn.Linear(5, 3), r=3, alpha=8)
    assert layer.scaling == 8 / 3 and tuple(layer.lora_A.shape) == (3, 5) and tuple(layer.lora_B.shape) == (3, 3)
    gpt = GPT(GPTConfig.tiny(vocab_size=50, block_size=16, n_layer=1, d_model=8, n_head=2))
    block = 4 * (8 * 8 + 8) + 2 * (2 * 8) + (8 * 32 + 32) + (32 * 8 + 8)
    assert count_trainable(gpt) == 50 * 8 + 16 * 8 + block + 2 * 8  # the notebook's visible count


def test_an_optimizer_steps_a_frozen_parameter_that_keeps_its_gradient():
    """Why freeze drops p.grad, as the notebook says: torch's optimizers skip a parameter only when its grad is None."""
    import torch
    from torch import nn

    layer = nn.Linear(3, 2)
    layer(torch.randn(4, 3)).sum().backward()
    layer.requires_grad_(False)
    before = layer.weight.detach().clone()
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    assert not torch.equal(layer.weight, before)  # requires_grad=False alone did not stop the step
    layer.weight.grad, layer.bias.grad = torch.zeros_like(layer.weight), None
    before = layer.weight.detach().clone()
    torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.5).step()
    assert not torch.equal(layer.weight, before)  # a zeroed gradient still lets weight decay move it
