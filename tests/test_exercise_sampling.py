"""The sampling exercise, solutions/07_sampling/sampling.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below:
correct solutions in other styles (loops, float64, torch.sort instead of torch.topk,
top-p built on top-k) earn full marks, and a wrong top_k_filter costs points once, even
when top_p_filter calls it. The test here is this exercise's own: the package's filters,
which the hidden tests use, follow the notebook's rules.
"""

from __future__ import annotations

from exercise_support import Exercise, from_template

ANSWERS = ["apply_temperature", "top_k_filter", "top_p_filter"]
SKIP = ("plt.",)  # the plots: not graded, and slow to draw

# ----------------------------------------------------------------------------- temperature

WRONG = {
    "temperature: divides the probabilities after the softmax": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return torch.softmax(logits, dim=-1) / temperature
    """),
    "temperature: divides after the softmax, back to logits (T has no effect)": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return torch.log(torch.softmax(logits, dim=-1) / temperature)
    """),
    "temperature: multiplies instead of dividing": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return logits * temperature
    """),
    "temperature: returns probabilities instead of logits": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return torch.softmax(logits / temperature, dim=-1)
    """),
    "temperature: probabilities to the power 1/T (probabilities, not logits)": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            q = torch.softmax(logits, dim=-1) ** (1 / temperature)
            return q / q.sum(dim=-1, keepdim=True)
    """),
    "temperature: log-probabilities / T (not logits / T)": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return torch.log_softmax(logits, dim=-1) / temperature
    """),
    "temperature: divides in place": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            logits /= temperature
            return logits
    """),
    "temperature: floor division": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return logits // temperature
    """),
    "temperature: divides by T squared": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return logits / temperature**2
    """),
    "temperature: returns the input itself at T = 1": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            if temperature == 1:
                return logits  # the caller's tensor, not a new one
            return logits / temperature
    """),
    "temperature: the package's function": ("apply_temperature", """
        from llmcourse.generation import apply_temperature
    """),
    "temperature: calls the package inside": ("apply_temperature", """
        import llmcourse.generation as gen

        def apply_temperature(logits, temperature):
            return gen.apply_temperature(logits, temperature)
    """),
    "temperature: transformers' TemperatureLogitsWarper": ("apply_temperature", """
        from transformers import TemperatureLogitsWarper

        def apply_temperature(logits, temperature):
            return TemperatureLogitsWarper(temperature)(None, logits)
    """),
}

# ----------------------------------------------------------------------------- top-k

TOP_K = """
    def top_k_filter(logits, k):
        {guard}
        kth = torch.topk(logits, {k}, dim={dim}).values[..., -1:]  # (..., 1)
        return logits.masked_fill(logits {cmp} kth, {fill})
"""
TOP_K_RIGHT = dict(guard="if k >= logits.size(-1):\n            return logits", k="k", dim="-1", cmp="<",
                   fill='float("-inf")')
TOP_K_BUGS = {
    "top-k: keeps k + 1": dict(k="min(k + 1, logits.size(-1))"),
    "top-k: keeps k - 1": dict(k="max(k - 1, 1)"),
    "top-k: removes the k-th and its ties (<= instead of <)": dict(cmp="<="),
    "top-k: along the first axis": dict(dim="0"),
    "top-k: removed logits set to 0 instead of -inf": dict(fill="0.0"),
    "top-k: removed logits set to the smallest logit": dict(fill="logits.min().item()"),
    "top-k: no guard for k > V (torch.topk raises)": dict(guard="pass"),
}
WRONG.update(from_template("top_k_filter", TOP_K, TOP_K_RIGHT, TOP_K_BUGS))

WRONG.update({
    "top-k: ties broken to exactly k tokens": ("top_k_filter", """
        def top_k_filter(logits, k):
            if k >= logits.size(-1):
                return logits
            idx = torch.topk(logits, k, dim=-1).indices
            keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
            return logits.masked_fill(~keep, float("-inf"))
    """),
    "top-k: the k smallest (sorted ascending)": ("top_k_filter", """
        def top_k_filter(logits, k):
            if k >= logits.size(-1):
                return logits
            kth = torch.sort(logits, dim=-1).values[..., k - 1 : k]
            return logits.masked_fill(logits < kth, float("-inf"))
    """),
    "top-k: the k-th largest of the whole batch": ("top_k_filter", """
        def top_k_filter(logits, k):
            if k >= logits.size(-1):
                return logits
            kth = torch.topk(logits.flatten(), k).values[-1]
            return logits.masked_fill(logits < kth, float("-inf"))
    """),
    "top-k: returns only the k largest values": ("top_k_filter", """
        def top_k_filter(logits, k):
            return torch.topk(logits, min(k, logits.size(-1)), dim=-1).values
    """),
    "top-k: returns probabilities instead of logits": ("top_k_filter", """
        def top_k_filter(logits, k):
            if k < logits.size(-1):
                kth = torch.topk(logits, k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            return torch.softmax(logits, dim=-1)
    """),
    "top-k: removes in place": ("top_k_filter", """
        def top_k_filter(logits, k):
            if k < logits.size(-1):
                kth = torch.topk(logits, k, dim=-1).values[..., -1:]
                logits[logits < kth] = float("-inf")
            return logits
    """),
    "top-k: rows flattened with view (fails on non-contiguous logits)": ("top_k_filter", """
        def top_k_filter(logits, k):
            V = logits.size(-1)
            if k >= V:
                return logits
            rows = logits.view(-1, V)  # (N, V)
            kth = torch.topk(rows, k, dim=-1).values[:, -1:]  # (N, 1)
            return rows.masked_fill(rows < kth, float("-inf")).view(logits.shape)
    """),
    "top-k: the package's function": ("top_k_filter", """
        from llmcourse.generation import top_k_filter
    """),
    "top-k: the package's function through a wrapper": ("top_k_filter", """
        from llmcourse import generation as _g

        def top_k_filter(logits, k):
            return _g.top_k_filter(logits, k)
    """),
    "top-k: transformers' TopKLogitsWarper": ("top_k_filter", """
        from transformers import TopKLogitsWarper

        def top_k_filter(logits, k):
            return TopKLogitsWarper(top_k=k)(None, logits)
    """),
    "top-k: transformers' TopKLogitsWarper through the module": ("top_k_filter", """
        import transformers

        def top_k_filter(logits, k):
            return transformers.TopKLogitsWarper(top_k=k)(None, logits)
    """),
})

# ----------------------------------------------------------------------------- top-p

TOP_P = """
    def top_p_filter(logits, p):
        {guard}
        sorted_logits, _ = torch.sort(logits, dim=-1, descending={descending})
        sorted_probs = {probs}
        cumulative = sorted_probs.cumsum(dim=-1)
        before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)
        n_keep = ({count}).sum(dim=-1, keepdim=True){adjust}
        threshold = sorted_logits.gather(-1, n_keep - 1)
        return logits.masked_fill(logits < threshold, float("-inf"))
"""
TOP_P_RIGHT = dict(guard="if p >= 1:\n            return logits", descending="True",
                   probs="torch.softmax(sorted_logits, dim=-1)", count="before < p", adjust="")
TOP_P_BUGS = {
    "top-p: excludes the token that crosses p": dict(count="cumulative < p", adjust=".clamp(min=1)"),
    "top-p: excludes the crossing token (<= on the running sum)": dict(count="cumulative <= p", adjust=".clamp(min=1)"),
    "top-p: one token too many": dict(adjust=".add(1).clamp(max=logits.size(-1))"),
    "top-p: running sum of the logits, not the probabilities": dict(probs="sorted_logits", adjust=".clamp(min=1)"),
    "top-p: running sum of exp(logits), not normalized": dict(probs="sorted_logits.exp()", adjust=".clamp(min=1)"),
    "top-p: sorted ascending": dict(descending="False"),
    "top-p: softmax over the first axis": dict(probs="torch.softmax(sorted_logits, dim=0)"),
    "top-p: p = 1 not special-cased (a tiny probability is dropped by round-off)": dict(guard="pass"),
    "top-p: p = 1 not special-cased, in float64": dict(guard="pass", probs="torch.softmax(sorted_logits.double(), dim=-1)"),
}
WRONG.update(from_template("top_p_filter", TOP_P, TOP_P_RIGHT, TOP_P_BUGS))

WRONG.update({
    "top-p: drops the tokens tied with the last one kept": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = torch.softmax(sorted_logits, dim=-1)
            keep_sorted = probs.cumsum(dim=-1) - probs < p  # position by position, ties cut anywhere
            keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
            return logits.masked_fill(~keep, float("-inf"))
    """),
    "top-p: forgets to put the tokens back in their order": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
            probs = torch.softmax(sorted_logits, dim=-1)
            return sorted_logits.masked_fill(probs.cumsum(dim=-1) - probs >= p, float("-inf"))
    """),
    "top-p: keeps the tokens whose own probability is >= p": ("top_p_filter", """
        def top_p_filter(logits, p):
            probs = torch.softmax(logits, dim=-1)
            keep = (probs >= p) | (probs == probs.max(dim=-1, keepdim=True).values)
            return logits.masked_fill(~keep, float("-inf"))
    """),
    "top-p: returns the renormalized probabilities instead of logits": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p < 1:
                sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
                probs = torch.softmax(sorted_logits, dim=-1)
                n_keep = (probs.cumsum(dim=-1) - probs < p).sum(dim=-1, keepdim=True)
                logits = logits.masked_fill(logits < sorted_logits.gather(-1, n_keep - 1), float("-inf"))
            return torch.softmax(logits, dim=-1)
    """),
    "top-p: removed probabilities set to 0, returned as probabilities": ("top_p_filter", """
        def top_p_filter(logits, p):
            probs = torch.softmax(logits, dim=-1)
            if p >= 1:
                return probs
            sorted_probs = torch.sort(probs, dim=-1, descending=True).values
            n_keep = (sorted_probs.cumsum(dim=-1) - sorted_probs < p).sum(dim=-1, keepdim=True)
            return probs.masked_fill(probs < sorted_probs.gather(-1, n_keep - 1), 0.0)
    """),
    "top-p: removes in place": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
            probs = torch.softmax(sorted_logits, dim=-1)
            n_keep = (probs.cumsum(dim=-1) - probs < p).sum(dim=-1, keepdim=True)
            logits[logits < sorted_logits.gather(-1, n_keep - 1)] = float("-inf")
            return logits
    """),
    "top-p: rows flattened with view (fails on non-contiguous logits)": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            rows = logits.view(-1, logits.size(-1))  # (N, V)
            sorted_rows, _ = torch.sort(rows, dim=-1, descending=True)
            probs = torch.softmax(sorted_rows, dim=-1)
            n_keep = (probs.cumsum(dim=-1) - probs < p).sum(dim=-1, keepdim=True)
            out = rows.masked_fill(rows < sorted_rows.gather(-1, n_keep - 1), float("-inf"))
            return out.view(logits.shape)
    """),
    "top-p: the package's function": ("top_p_filter", """
        from llmcourse.generation import top_p_filter
    """),
    "top-p: the package's top-k for the last step": ("top_p_filter", """
        from llmcourse.generation import top_k_filter as _course_top_k

        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            probs = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values
            n = (probs.cumsum(dim=-1) - probs < p).sum(dim=-1).reshape(-1)
            rows = logits.reshape(-1, logits.size(-1))
            return torch.stack([_course_top_k(r, int(k)) for r, k in zip(rows, n)]).reshape(logits.shape)
    """),
    "top-p: transformers' TopPLogitsWarper": ("top_p_filter", """
        from transformers import TopPLogitsWarper

        def top_p_filter(logits, p):
            return TopPLogitsWarper(top_p=p)(None, logits)
    """),
})

# ----------------------------------------------------------------------------- right, in other styles

TOP_P_VIA_TOP_K = """
def top_p_filter(logits, p):
    if p >= 1:
        return logits
    probs = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values
    n = (probs.cumsum(dim=-1) - probs < p).sum(dim=-1).reshape(-1)  # tokens to keep, per row
    rows = logits.reshape(-1, logits.size(-1))
    return torch.stack([top_k_filter(r, int(k)) for r, k in zip(rows, n)]).reshape(logits.shape)
"""

ALTERNATIVES = {
    "temperature: float64": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return logits.double() / temperature
    """),
    "temperature: times the inverse": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            return logits * (1.0 / temperature)
    """),
    "temperature: torch.div on a copy": ("apply_temperature", """
        def apply_temperature(logits, temperature):
            out = logits.clone()
            out.div_(temperature)
            return out
    """),
    "top-k: a loop over rows with sorted()": ("top_k_filter", """
        def top_k_filter(logits, k):
            out = logits.clone()
            for row in out.reshape(-1, out.size(-1)):  # views into out
                values = sorted(row.tolist(), reverse=True)
                if k < len(values):
                    row[row < values[k - 1]] = float("-inf")
            return out
    """),
    "top-k: torch.sort instead of torch.topk": ("top_k_filter", """
        def top_k_filter(logits, k):
            k = min(k, logits.size(-1))
            kth = torch.sort(logits, dim=-1, descending=True).values[..., k - 1 : k]
            return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))
    """),
    "top-k: torch.kthvalue, in float64": ("top_k_filter", """
        def top_k_filter(logits, k):
            V = logits.size(-1)
            x = logits.double()
            if k >= V:
                return x
            kth = torch.kthvalue(x, V - k + 1, dim=-1, keepdim=True).values  # the (V-k+1)-th smallest
            return x.masked_fill(x < kth, -math.inf)
    """),
    "top-p: a loop over rows in Python floats": ("top_p_filter", """
        def top_p_filter(logits, p):
            out = logits.clone()
            if p >= 1:
                return out
            for row in out.reshape(-1, out.size(-1)):
                probs = torch.softmax(row.double(), dim=-1).tolist()
                total, smallest = 0.0, None
                for q in sorted(probs, reverse=True):
                    if total >= p:
                        break
                    smallest, total = q, total + q
                row[torch.tensor([q < smallest for q in probs])] = float("-inf")
            return out
    """),
    "top-p: the definition, mass strictly above, vectorized": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p >= 1:
                return logits
            probs = torch.softmax(logits.double(), dim=-1)
            above = (probs[..., None, :] * (probs[..., None, :] > probs[..., :, None])).sum(-1)
            return logits.masked_fill(above >= p, float("-inf"))
    """),
    "top-p: torch.topk(V), thresholds on probabilities": ("top_p_filter", """
        def top_p_filter(logits, p):
            if p == 1:
                return logits
            probs = torch.softmax(logits, dim=-1)
            top = torch.topk(probs, probs.size(-1), dim=-1).values
            before = top.cumsum(dim=-1) - top
            last = torch.where(before < p, top, torch.ones_like(top)).min(dim=-1, keepdim=True).values
            return torch.where(probs >= last, logits, torch.tensor(float("-inf")))
    """),
    "top-p: calls top_k_filter with the number of tokens to keep": ("top_p_filter", TOP_P_VIA_TOP_K),
}
# top_k_filter mistakes that a top_p_filter built on it would otherwise pay for twice
HELPER_BUGS = ["top-k: keeps k + 1", "top-k: removed logits set to 0 instead of -inf", "top-k: ties broken to exactly k tokens",
               "top-k: removes in place", "top-k: the package's function", "top-k: transformers' TopKLogitsWarper"]

EXERCISE = Exercise(
    folder="07_sampling", notebook="sampling", answers=ANSWERS, points=(9, 11),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=HELPER_BUGS, skip=SKIP,
    costs_once_base={"top_p_filter": TOP_P_VIA_TOP_K},  # top_p_filter calls top_k_filter
)


def test_the_references_agree():
    """The package's filters, which the hidden tests also use, follow the rules the notebook states."""
    import torch

    from llmcourse.generation import top_k_filter, top_p_filter

    z = torch.tensor([2.0, 1.0, 1.0, 0.0, -1.0])
    assert torch.isfinite(top_k_filter(z, 2)).tolist() == [True, True, True, False, False]
    P = torch.tensor([0.1, 0.4, 0.2, 0.1, 0.2])
    assert torch.isfinite(top_p_filter(P.log(), 0.5)).tolist() == [False, True, True, False, True]
    assert torch.isfinite(top_p_filter(P.log(), 0.3)).tolist() == [False, True, False, False, False]
