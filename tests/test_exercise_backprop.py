"""The backpropagation exercise, solutions/A_backprop/backprop.ipynb: its data for the shared harness.

tests/test_exercises.py runs every check of grading on the EXERCISE declared below. A
wrong topological_order costs points once: the tests of Value give backward() a correct
order in place of the student's. The tests here are this exercise's own: the references
the hidden tests use (torch.autograd) agree with finite differences and with the formulas
the notebook states, and the visible asserts alone already catch many wrong solutions.
"""

from __future__ import annotations

import copy

import pytest

from exercise_support import Exercise, from_template, run

ANSWERS = ["linear_backward", "softmax_cross_entropy_backward", "layernorm_backward", "topological_order", "Value"]

# ----------------------------------------------------------------------------- 1. linear_backward

LINEAR = """
    def linear_backward(x, w, b, grad_out):
        {body}
"""
LINEAR_BUGS = {
    "linear: bias gradient not summed (grad_out itself)": "return grad_out @ w, grad_out.T @ x, grad_out",
    "linear: bias gradient summed over the wrong axis": "return grad_out @ w, grad_out.T @ x, grad_out.sum(1)",
    "linear: bias gradient averaged over the batch": "return grad_out @ w, grad_out.T @ x, grad_out.mean(0)",
    "linear: bias gradient from the first row only": "return grad_out @ w, grad_out.T @ x, grad_out[0].clone()",
    "linear: weight gradient transposed, (d_in, d_out)": "return grad_out @ w, x.T @ grad_out, grad_out.sum(0)",
    "linear: weight gradient transposed, then reshaped to (d_out, d_in)": (
        "return grad_out @ w, (x.T @ grad_out).reshape(w.shape), grad_out.sum(0)"),
    "linear: weight gradient averaged over the batch": (
        "return grad_out @ w, grad_out.T @ x / len(x), grad_out.sum(0)"),
    "linear: weight gradient from the first row only": (
        "return grad_out @ w, torch.outer(grad_out[0], x[0]), grad_out.sum(0)"),
    "linear: input gradient through w.T (the (in, out) layout)": (
        "return grad_out @ w.T, grad_out.T @ x, grad_out.sum(0)"),
    "linear: input gradient as x @ w.T @ w (the output, not its gradient)": (
        "return (x @ w.T) @ w, grad_out.T @ x, grad_out.sum(0)"),
    "linear: float32 hard-coded": """x, w, grad_out = x.float(), w.float(), grad_out.float()
        return grad_out @ w, grad_out.T @ x, grad_out.sum(0)""",
    "linear: float64 hard-coded": """x, w, grad_out = x.double(), w.double(), grad_out.double()
        return grad_out @ w, grad_out.T @ x, grad_out.sum(0)""",
    "linear: transposes x in place (x.t_())": """grad_w = (x.t_() @ grad_out).T
        return grad_out @ w, grad_w, grad_out.sum(0)""",
    "linear: bias gradient a view of grad_out for a batch of one": """grad_b = grad_out.sum(0) if len(grad_out) > 1 else grad_out[0]
        return grad_out @ w, grad_out.T @ x, grad_b""",
    "linear: torch.autograd through .backward()": """xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
        (xr @ wr.T + br).backward(grad_out)
        return xr.grad, wr.grad, br.grad""",
}
WRONG = from_template("linear_backward", LINEAR, {}, LINEAR_BUGS)
WRONG["linear: torch.autograd.grad, imported under another name"] = ("linear_backward", """
    from torch.autograd import grad as vector_jacobian

    def linear_backward(x, w, b, grad_out):
        xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
        return vector_jacobian(xr @ wr.T + br, (xr, wr, br), grad_out)
""")

# ----------------------------------------------------------------------------- 2. softmax_cross_entropy_backward

CE = """
    def softmax_cross_entropy_backward(logits, targets):
        N, C = logits.shape
        rows = torch.arange(N)
        {probs}
        {loss}
        {grad}
        return {result}
"""
CE_RIGHT = dict(
    probs="""shifted = logits - logits.amax(-1, keepdim=True)
        log_p = shifted - torch.logsumexp(shifted, -1, keepdim=True)
        p = log_p.exp()""",
    loss="loss = -log_p[rows, targets].mean()",
    grad="""y = F.one_hot(targets, C).to(logits.dtype)
        grad = (p - y) / N""",
    result="loss, grad",
)
CE_BUGS = {
    "ce: gradient without the 1/N (of the summed loss)": dict(grad="""y = F.one_hot(targets, C).to(logits.dtype)
        grad = p - y"""),
    "ce: gradient divided by C instead of N": dict(grad="""y = F.one_hot(targets, C).to(logits.dtype)
        grad = (p - y) / C"""),
    "ce: loss summed, not averaged": dict(loss="loss = -log_p[rows, targets].sum()"),
    "ce: gradient y - p (sign flipped)": dict(grad="""y = F.one_hot(targets, C).to(logits.dtype)
        grad = (y - p) / N"""),
    "ce: one-hot not subtracted (p / N)": dict(grad="grad = p / N"),
    "ce: softmax over the batch (dim=0)": dict(probs="""log_p = torch.log_softmax(logits, dim=0)
        p = log_p.exp()"""),
    "ce: no max subtracted (exp overflows)": dict(probs="""e = logits.exp()
        p = e / e.sum(-1, keepdim=True)
        log_p = p.log()"""),
    "ce: log of the softmax (underflows to -inf)": dict(probs="""p = torch.softmax(logits, dim=-1)
        log_p = p.log()"""),
    "ce: max subtracted in place (changes the logits)": dict(probs="""logits -= logits.amax(-1, keepdim=True)
        log_p = logits - torch.logsumexp(logits, -1, keepdim=True)
        p = log_p.exp()"""),
    "ce: F.one_hot without num_classes (too few columns)": dict(grad="""y = F.one_hot(targets).to(logits.dtype)
        grad = (p - y) / N"""),
    "ce: loss as a Python float": dict(result="loss.item(), grad"),
    "ce: returns (grad, loss)": dict(result="grad, loss"),
    "ce: float32 hard-coded": dict(result="loss.float(), grad.float()"),
    "ce: target logits read through view (fails on non-contiguous logits)": dict(
        loss="loss = (torch.logsumexp(logits, -1) - logits.view(-1)[rows * C + targets]).mean()"),
}
WRONG.update(from_template("softmax_cross_entropy_backward", CE, CE_RIGHT, CE_BUGS))
WRONG.update({
    "ce: float64 work in place (changes float64 logits, returns them)": ("softmax_cross_entropy_backward", """
        def softmax_cross_entropy_backward(logits, targets):
            N = logits.size(0)
            z = logits.double()  # the logits themselves when they are float64 already
            z -= z.amax(-1, keepdim=True)
            loss = (torch.logsumexp(z, -1) - z[torch.arange(N), targets]).mean()
            z.exp_()
            z /= z.sum(-1, keepdim=True)
            z[torch.arange(N), targets] -= 1
            z /= N
            return loss.to(logits.dtype), z.to(logits.dtype)
    """),
    "ce: torch.autograd on F.cross_entropy": ("softmax_cross_entropy_backward", """
        def softmax_cross_entropy_backward(logits, targets):
            z = logits.detach().clone().requires_grad_()
            loss = F.cross_entropy(z, targets)
            loss.backward()
            return loss.detach(), z.grad
    """),
})

# ----------------------------------------------------------------------------- 3. layernorm_backward

LN = """
    def layernorm_backward(x, gamma, grad_out, eps=1e-5):
        D = x.size(-1)
        {center}
        var = {var}
        r = 1 / {std}
        x_hat = centered * r
        g = {g}
        grad_x = {grad_x}
        return grad_x, {grad_gamma}, {grad_beta}
"""
LN_RIGHT = dict(
    center="centered = x - x.mean(dim=-1, keepdim=True)",
    var="(centered ** 2).mean(dim=-1, keepdim=True)",
    std="torch.sqrt(var + eps)",
    g="grad_out * gamma",
    grad_x="r * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True))",
    grad_gamma="(grad_out * x_hat).reshape(-1, D).sum(0)",
    grad_beta="grad_out.reshape(-1, D).sum(0)",
)
LN_BUGS = {
    "ln: the mean term missing": dict(grad_x="r * (g - x_hat * (g * x_hat).mean(-1, keepdim=True))"),
    "ln: the variance term missing": dict(grad_x="r * (g - g.mean(-1, keepdim=True))"),
    "ln: both mean terms missing (a fixed scaling)": dict(grad_x="r * g"),
    "ln: the variance term without its x_hat": dict(
        grad_x="r * (g - g.mean(-1, keepdim=True) - (g * x_hat).mean(-1, keepdim=True))"),
    "ln: the variance term with its sums over the batch": dict(
        grad_x="r * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean())"),
    "ln: unbiased variance (divides by D - 1)": dict(var="x.var(dim=-1, keepdim=True)"),
    "ln: eps outside the square root": dict(std="(torch.sqrt(var) + eps)"),
    "ln: eps ignored": dict(std="torch.sqrt(var)"),
    "ln: gamma left out of the input gradient": dict(g="grad_out"),
    "ln: grad_gamma from x, not x_hat": dict(grad_gamma="(grad_out * x).reshape(-1, D).sum(0)"),
    "ln: grad_gamma and grad_beta summed over the first dimension only": dict(
        grad_gamma="(grad_out * x_hat).sum(0)", grad_beta="grad_out.sum(0)"),
    "ln: grad_gamma not summed over the batch": dict(grad_gamma="grad_out * x_hat"),
    "ln: grad_beta summed over the last dimension": dict(grad_beta="grad_out.sum(-1)"),
    "ln: sum(dim=()) for a single vector (sums everything)": dict(
        grad_gamma="(grad_out * x_hat).sum(dim=tuple(range(x.dim() - 1)))",
        grad_beta="grad_out.sum(dim=tuple(range(x.dim() - 1)))"),
    "ln: grad_beta is grad_out itself for a single vector": dict(
        grad_beta="grad_out.reshape(-1, D).sum(0) if x.dim() > 1 else grad_out"),
    "ln: mean and variance over the whole tensor": dict(
        center="centered = x - x.mean()", var="(centered ** 2).mean()"),
    "ln: centred in place (changes x)": dict(center="centered = x.sub_(x.mean(dim=-1, keepdim=True))"),
    "ln: view (fails on non-contiguous inputs)": dict(grad_beta="grad_out.view(-1, D).sum(0)"),
    "ln: float32 hard-coded": dict(
        center="x, gamma, grad_out = x.float(), gamma.float(), grad_out.float()\n        centered = x - x.mean(-1, keepdim=True)"),
}
WRONG.update(from_template("layernorm_backward", LN, LN_RIGHT, LN_BUGS))
WRONG.update({
    "ln: normalised over the first dimension": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            mean = x.mean(0, keepdim=True)
            r = 1 / torch.sqrt(((x - mean) ** 2).mean(0, keepdim=True) + eps)
            x_hat = (x - mean) * r
            g = grad_out * gamma
            grad_x = r * (g - g.mean(0, keepdim=True) - x_hat * (g * x_hat).mean(0, keepdim=True))
            D = x.size(-1)
            return grad_x, (grad_out * x_hat).reshape(-1, D).sum(0), grad_out.reshape(-1, D).sum(0)
    """),
    "ln: float64 work in place (changes float64 inputs)": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            D = x.size(-1)
            z = x.double()  # x itself when it is float64 already
            z -= z.mean(-1, keepdim=True)
            z /= torch.sqrt((z ** 2).mean(-1, keepdim=True) + eps)  # now x_hat
            g = grad_out.double() * gamma.double()
            grad_x = (g - g.mean(-1, keepdim=True) - z * (g * z).mean(-1, keepdim=True))
            grad_x = grad_x / torch.sqrt(((x.double() - x.double().mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True) + eps)
            grad_gamma = (grad_out.double() * z).reshape(-1, D).sum(0)
            grad_beta = grad_out.double().reshape(-1, D).sum(0)
            return grad_x.to(x.dtype), grad_gamma.to(x.dtype), grad_beta.to(x.dtype)
    """),
    "ln: torch.autograd on F.layer_norm": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            xr, gr = x.detach().clone().requires_grad_(), gamma.detach().clone().requires_grad_()
            br = torch.zeros_like(gr, requires_grad=True)
            F.layer_norm(xr, (x.size(-1),), gr, br, eps).backward(grad_out)
            return xr.grad, gr.grad, br.grad
    """),
})

# ----------------------------------------------------------------------------- 4. topological_order

TOPO_BUGS = {
    "topo: each node before its inputs (pre-order)": """
        def topological_order(root):
            order, seen = [], set()

            def visit(node):
                if id(node) in seen:
                    return
                seen.add(id(node))
                order.append(node)
                for parent in node._inputs:
                    visit(parent)

            visit(root)
            return order
    """,
    "topo: no visited set (shared nodes listed twice)": """
        def topological_order(root):
            order = []

            def visit(node):
                for parent in node._inputs:
                    visit(parent)
                order.append(node)

            visit(root)
            return order
    """,
    "topo: breadth-first from the root, reversed (insertion order)": """
        def topological_order(root):
            order, seen, queue = [], {id(root)}, [root]
            while queue:
                node = queue.pop(0)
                order.append(node)
                for parent in node._inputs:
                    if id(parent) not in seen:
                        seen.add(id(parent))
                        queue.append(parent)
            return order[::-1]
    """,
    "topo: reversed (root first)": """
        def topological_order(root):
            order, seen = [], set()

            def visit(node):
                if id(node) not in seen:
                    seen.add(id(node))
                    for parent in node._inputs:
                        visit(parent)
                    order.append(node)

            visit(root)
            return order[::-1]
    """,
    "topo: leaves left out": """
        def topological_order(root):
            order, seen = [], set()

            def visit(node):
                if id(node) not in seen and node._inputs:
                    seen.add(id(node))
                    for parent in node._inputs:
                        visit(parent)
                    order.append(node)

            visit(root)
            return order
    """,
    "topo: only the root's direct inputs": """
        def topological_order(root):
            order = []
            for parent in root._inputs:
                if all(parent is not n for n in order):
                    order.append(parent)
            return order + [root]
    """,
    "topo: visited by number (equal data merged)": """
        def topological_order(root):
            order, seen = [], set()

            def visit(node):
                if node.data not in seen:
                    seen.add(node.data)
                    for parent in node._inputs:
                        visit(parent)
                    order.append(node)

            visit(root)
            return order
    """,
    "topo: marks written on the nodes (a second call differs)": """
        def topological_order(root):
            order = []

            def visit(node):
                if not getattr(node, "_visited", False):
                    node._visited = True
                    for parent in node._inputs:
                        visit(parent)
                    order.append(node)

            visit(root)
            return order
    """,
    "topo: a mutable default argument (visited kept across calls)": """
        def topological_order(root, order=[], seen=set()):
            if id(root) not in seen:
                seen.add(id(root))
                for parent in root._inputs:
                    topological_order(parent, order, seen)
                order.append(root)
            return order
    """,
    "topo: graphlib's TopologicalSorter": """
        import graphlib

        def topological_order(root):
            graph, stack = {}, [root]
            while stack:
                node = stack.pop()
                if node not in graph:
                    graph[node] = set(node._inputs)
                    stack.extend(node._inputs)
            return list(graphlib.TopologicalSorter(graph).static_order())
    """,
}
WRONG.update({name: ("topological_order", code) for name, code in TOPO_BUGS.items()})

# ----------------------------------------------------------------------------- 5. Value

VALUE = """
    class Value:
        def __init__(self, data, _inputs=()):
            self.data = float(data)
            self.grad = 0.0
            self._inputs = tuple(_inputs)
            self._backward = lambda: None

        def __add__(self, other):
            other = other if isinstance(other, Value) else Value(other)
            out = Value(self.data + other.data, {add_inputs})

            def _backward():
                {add}
            out._backward = _backward
            return out

        def __mul__(self, other):
            other = other if isinstance(other, Value) else Value(other)
            out = Value(self.data * other.data, (self, other))

            def _backward():
                {mul}
            out._backward = _backward
            return out

        def tanh(self):
            out = Value(math.tanh(self.data), (self,))

            def _backward():
                {tanh}
            out._backward = _backward
            return out

        def exp(self):
            out = Value(math.exp(self.data), (self,))

            def _backward():
                {exp}
            out._backward = _backward
            return out

        def backward(self):
            {backward}

        def __radd__(self, other):
            return self + other

        def __rmul__(self, other):
            return self * other
"""
VALUE_RIGHT = dict(
    add_inputs="(self, other)",
    add="""self.grad += out.grad
                other.grad += out.grad""",
    mul="""self.grad += other.data * out.grad
                other.grad += self.data * out.grad""",
    tanh="self.grad += (1 - out.data ** 2) * out.grad",
    exp="self.grad += out.data * out.grad",
    backward="""order = topological_order(self)
            for node in order:
                node.grad = 0.0
            self.grad = 1.0
            for node in reversed(order):
                node._backward()""",
)
VALUE_BUGS = {
    "value: = instead of += in __add__ (a + a)": dict(add="""self.grad = out.grad
                other.grad = out.grad"""),
    "value: = instead of += in __mul__ (a * a)": dict(mul="""self.grad = other.data * out.grad
                other.grad = self.data * out.grad"""),
    "value: = instead of += everywhere": dict(
        add="""self.grad = out.grad
                other.grad = out.grad""",
        mul="""self.grad = other.data * out.grad
                other.grad = self.data * out.grad""",
        tanh="self.grad = (1 - out.data ** 2) * out.grad", exp="self.grad = out.data * out.grad"),
    "value: the local derivatives of * swapped": dict(mul="""self.grad += self.data * out.grad
                other.grad += other.data * out.grad"""),
    "value: * forgets out.grad": dict(mul="""self.grad += other.data
                other.grad += self.data"""),
    "value: tanh' = 1 - tanh, not squared": dict(tanh="self.grad += (1 - out.data) * out.grad"),
    "value: tanh' from the input, 1 - a ** 2": dict(tanh="self.grad += (1 - self.data ** 2) * out.grad"),
    "value: exp' from the input, a instead of e ** a": dict(exp="self.grad += self.data * out.grad"),
    "value: + records no inputs": dict(add_inputs="()"),
    "value: backward visits the order unreversed (inputs first)": dict(backward="""order = topological_order(self)
            for node in order:
                node.grad = 0.0
            self.grad = 1.0
            for node in order:
                node._backward()"""),
    "value: backward never zeroes (a second call adds)": dict(backward="""self.grad = 1.0
            for node in reversed(topological_order(self)):
                node._backward()"""),
    "value: backward zeroes after seeding (every grad 0)": dict(backward="""order = topological_order(self)
            self.grad = 1.0
            for node in order:
                node.grad = 0.0
            for node in reversed(order):
                node._backward()"""),
    "value: backward never seeds self.grad = 1": dict(backward="""order = topological_order(self)
            for node in order:
                node.grad = 0.0
            for node in reversed(order):
                node._backward()"""),
    "value: backward breadth-first from self (its own insertion order)": dict(backward="""order, queue = [], [self]
            while queue:
                node = queue.pop(0)
                if all(node is not n for n in order):
                    order.append(node)
                    queue.extend(node._inputs)
            for node in order:
                node.grad = 0.0
            self.grad = 1.0
            for node in order:
                node._backward()"""),
    "value: backward pushes recursively (once per path)": dict(backward="""for node in topological_order(self):
                node.grad = 0.0
            self.grad = 1.0

            def push(node):
                node._backward()
                for parent in node._inputs:
                    push(parent)

            push(self)"""),
}
WRONG.update(from_template("Value", VALUE, VALUE_RIGHT, VALUE_BUGS))
WRONG["value: torch autograd inside"] = ("Value", """
    class Value:
        def __init__(self, data, _inputs=()):
            self.t = data if isinstance(data, torch.Tensor) else torch.tensor(float(data), dtype=torch.float64,
                                                                             requires_grad=True)
            self._inputs = tuple(_inputs)
            if self.t.requires_grad and not self.t.is_leaf:
                self.t.retain_grad()

        data = property(lambda self: self.t.item())
        grad = property(lambda self: 0.0 if self.t.grad is None else self.t.grad.item())

        @grad.setter
        def grad(self, value):
            self.t.grad = None

        @staticmethod
        def _wrap(other):
            return other if isinstance(other, Value) else Value(other)

        def __add__(self, other):
            other = self._wrap(other)
            return Value(self.t + other.t, (self, other))

        def __mul__(self, other):
            other = self._wrap(other)
            return Value(self.t * other.t, (self, other))

        def tanh(self):
            return Value(self.t.tanh(), (self,))

        def exp(self):
            return Value(self.t.exp(), (self,))

        def backward(self):
            for node in topological_order(self):
                node.t.grad = None
            self.t.backward(retain_graph=True)

        __radd__ = __add__
        __rmul__ = __mul__
""")

# A wrong topological_order costs the points of its own cell and no more: the tests of Value give
# backward() a correct order. Every one of them, since each could break a later cell differently.
TOPO_COSTS_ONCE = list(TOPO_BUGS)

# ----------------------------------------------------------------------------- correct alternatives

ALTERNATIVES = {
    "linear: einsum": ("linear_backward", """
        def linear_backward(x, w, b, grad_out):
            grad_x = torch.einsum("no,oi->ni", grad_out, w)
            grad_w = torch.einsum("no,ni->oi", grad_out, x)
            grad_b = torch.einsum("no->o", grad_out)
            return grad_x, grad_w, grad_b
    """),
    "linear: a loop over the rows, one outer product each": ("linear_backward", """
        def linear_backward(x, w, b, grad_out):
            grad_w = torch.zeros_like(w)
            grad_b = torch.zeros_like(b)
            rows = []
            for n in range(x.shape[0]):
                grad_w += torch.outer(grad_out[n], x[n])
                grad_b += grad_out[n]
                rows.append(w.T @ grad_out[n])
            return torch.stack(rows), grad_w, grad_b
    """),
    "linear: explicit Jacobians (Kronecker products)": ("linear_backward", """
        def linear_backward(x, w, b, grad_out):
            N, d_in = x.shape
            d_out = w.shape[0]
            eye_n = torch.eye(N, dtype=x.dtype)
            eye_o = torch.eye(d_out, dtype=x.dtype)
            g = grad_out.reshape(-1)  # (N*d_out,), y flattened row by row
            x, w = x.contiguous(), w.contiguous()  # torch.kron views its inputs: it refuses transposed ones
            jac_x = torch.kron(eye_n, w)  # (N*d_out, N*d_in): dy[n, o] / dx[m, i] = [n == m] w[o, i]
            jac_w = torch.kron(x, eye_o).reshape(N, d_out, d_in, d_out).permute(0, 1, 3, 2)  # (n, o, p, i)
            jac_w = jac_w.reshape(N * d_out, d_out * d_in)  # dy[n, o] / dw[p, i] = [o == p] x[n, i]
            jac_b = eye_o.repeat(N, 1)  # (N*d_out, d_out): dy[n, o] / db[p] = [o == p]
            return (g @ jac_x).reshape(N, d_in), (g @ jac_w).reshape(d_out, d_in), g @ jac_b
    """),
    "linear: float64 throughout, cast back": ("linear_backward", """
        def linear_backward(x, w, b, grad_out):
            x64, w64, g64 = x.to(torch.float64), w.to(torch.float64), grad_out.to(torch.float64)
            grads = g64 @ w64, g64.T @ x64, g64.sum(dim=0)
            return tuple(t.to(x.dtype) for t in grads)
    """),
    "linear: transposed products (views of new tensors)": ("linear_backward", """
        def linear_backward(x, w, b, grad_out):
            return (w.T @ grad_out.T).T, (x.T @ grad_out).T, torch.ones(len(x), dtype=x.dtype) @ grad_out
    """),
    "ce: one-hot, logsumexp, float64 throughout, cast back": ("softmax_cross_entropy_backward", """
        def softmax_cross_entropy_backward(logits, targets):
            z = logits.to(torch.float64)
            N, C = z.shape
            y = torch.zeros(N, C, dtype=torch.float64)
            y[torch.arange(N), targets] = 1.0
            lse = torch.logsumexp(z, dim=1)  # (N,), stable on its own
            loss = (lse - (z * y).sum(1)).mean()
            p = torch.exp(z - lse[:, None])
            return loss.to(logits.dtype), ((p - y) / N).to(logits.dtype)
    """),
    "ce: F.cross_entropy for the loss, softmax and scatter for the gradient": ("softmax_cross_entropy_backward", """
        def softmax_cross_entropy_backward(logits, targets):
            loss = F.cross_entropy(logits, targets)
            p = torch.softmax(logits, dim=-1)
            y = torch.zeros_like(p).scatter_(1, targets[:, None], 1.0)
            return loss, (p - y) / logits.shape[0]
    """),
    "ce: a loop over the rows with math": ("softmax_cross_entropy_backward", """
        def softmax_cross_entropy_backward(logits, targets):
            rows, total = [], 0.0
            N = len(logits)
            for z, t in zip(logits.tolist(), targets.tolist()):
                top = max(z)
                exps = [math.exp(v - top) for v in z]
                s = sum(exps)
                total += math.log(s) + top - z[t]
                rows.append([(e / s - (1.0 if c == t else 0.0)) / N for c, e in enumerate(exps)])
            return torch.tensor(total / N, dtype=logits.dtype), torch.tensor(rows, dtype=logits.dtype)
    """),
    "ln: explicit Jacobian of each vector": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            D = x.shape[-1]
            xs, gs = x.reshape(-1, D), grad_out.reshape(-1, D)  # (M, D)
            mu = xs.mean(1, keepdim=True)
            r = 1 / torch.sqrt(((xs - mu) ** 2).mean(1, keepdim=True) + eps)  # (M, 1)
            x_hat = (xs - mu) * r  # (M, D)
            eye = torch.eye(D, dtype=x.dtype)
            # J[m, k, j] = d x_hat[m, k] / d x[m, j] = r (delta_kj - 1/D - x_hat_k x_hat_j / D)
            jac = r[:, :, None] * (eye - 1 / D - x_hat[:, :, None] * x_hat[:, None, :] / D)  # (M, D, D)
            grad_x = torch.einsum("mk,mkj->mj", gs * gamma, jac)
            return grad_x.reshape(x.shape), (gs * x_hat).sum(0), gs.sum(0)
    """),
    "ln: step by step through the variance and the mean": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            D = x.shape[-1]
            mu = x.mean(-1, keepdim=True)
            xc = x - mu
            var = (xc * xc).sum(-1, keepdim=True) / D
            std = (var + eps) ** 0.5
            x_hat = xc / std
            dx_hat = grad_out * gamma
            dvar = (dx_hat * xc).sum(-1, keepdim=True) * -0.5 * std ** -3
            dmu = -(dx_hat / std).sum(-1, keepdim=True) + dvar * (-2 * xc).mean(-1, keepdim=True)
            grad_x = dx_hat / std + dvar * 2 * xc / D + dmu / D
            lead = list(range(x.dim() - 1))
            grad_gamma = (grad_out * x_hat).sum(lead) if lead else grad_out * x_hat
            grad_beta = grad_out.sum(lead) if lead else grad_out + 0
            return grad_x, grad_gamma, grad_beta
    """),
    "ln: float64 throughout, var(unbiased=False), flatten": ("layernorm_backward", """
        def layernorm_backward(x, gamma, grad_out, eps=1e-5):
            x64, g64 = x.double().flatten(0, -2) if x.dim() > 1 else x.double()[None], grad_out.double().reshape(-1, x.shape[-1])
            r = torch.rsqrt(x64.var(-1, unbiased=False, keepdim=True) + eps)
            x_hat = (x64 - x64.mean(-1, keepdim=True)) * r
            g = g64 * gamma.double()
            grad_x = r * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True))
            return (grad_x.reshape(x.shape).to(x.dtype), (g64 * x_hat).sum(0).to(x.dtype), g64.sum(0).to(x.dtype))
    """),
    "topo: iterative depth-first search with an explicit stack": ("topological_order", """
        def topological_order(root):
            order, done, stack = [], set(), [(root, iter(root._inputs))]
            done.add(id(root))
            while stack:
                node, parents = stack[-1]
                for parent in parents:
                    if id(parent) not in done:
                        done.add(id(parent))
                        stack.append((parent, iter(parent._inputs)))
                        break
                else:
                    stack.pop()
                    order.append(node)
            return order
    """),
    "topo: Kahn's algorithm from the root, reversed": ("topological_order", """
        def topological_order(root):
            users, nodes, stack = {}, {id(root): root}, [root]
            while stack:  # count, for every node, the uses the root's graph makes of it
                node = stack.pop()
                for parent in node._inputs:
                    users[id(parent)] = users.get(id(parent), 0) + 1
                    if id(parent) not in nodes:
                        nodes[id(parent)] = parent
                        stack.append(parent)
            ready, backwards = [root], []
            while ready:  # a node is ready once every node that uses it is placed
                node = ready.pop()
                backwards.append(node)
                for parent in node._inputs:
                    users[id(parent)] -= 1
                    if users[id(parent)] == 0:
                        ready.append(parent)
            return backwards[::-1]
    """),
    "topo: recursive, visited list compared by identity": ("topological_order", """
        def topological_order(root):
            order = []

            def visit(node):
                if any(node is seen for seen in order):
                    return
                for parent in node._inputs:
                    visit(parent)
                if not any(node is seen for seen in order):
                    order.append(node)

            visit(root)
            return order
    """),
    "value: local derivatives stored beside the inputs, tanh from exp": ("Value", """
        class Value:
            def __init__(self, data, _inputs=(), _local=()):
                self.data = float(data)
                self.grad = 0.0
                self._inputs = tuple(_inputs)
                self._local = tuple(_local)  # d self / d input, one per input
                self._backward = self._push

            def _push(self):
                for parent, local in zip(self._inputs, self._local):
                    parent.grad += local * self.grad

            def __add__(self, other):
                other = other if isinstance(other, Value) else Value(other)
                return Value(self.data + other.data, (self, other), (1.0, 1.0))

            def __mul__(self, other):
                other = other if isinstance(other, Value) else Value(other)
                return Value(self.data * other.data, (self, other), (other.data, self.data))

            def tanh(self):
                e = math.exp(-2 * abs(self.data))
                t = math.copysign((1 - e) / (1 + e), self.data)
                return Value(t, (self,), (1 - t * t,))

            def exp(self):
                e = math.exp(self.data)
                return Value(e, (self,), (e,))

            def backward(self):
                order = topological_order(self)
                for node in order:
                    node.grad = 0.0
                self.grad = 1.0
                for node in order[::-1]:
                    node._backward()

            def __radd__(self, other):
                return self + other

            def __rmul__(self, other):
                return self * other
    """),
    "value: backward with its own iterative order": ("Value", VALUE.format(**{**VALUE_RIGHT, "backward": """order, done, stack = [], set(), [(self, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    order.append(node)
                elif id(node) not in done:
                    done.add(id(node))
                    stack.append((node, True))
                    stack.extend((parent, False) for parent in node._inputs)
            for node in order:
                node.grad = 0
            self.grad = 1
            while order:
                order.pop()._backward()"""})),
}

EXERCISE = Exercise(
    folder="A_backprop", notebook="backprop", answers=ANSWERS, points=(18, 18),
    wrong=WRONG, alternatives=ALTERNATIVES, costs_once=TOPO_COSTS_ONCE,
)

# Wrong solutions the visible asserts alone already catch (66 of the 80): the visible tests are a real
# signal. The others (views of inputs, non-contiguous layouts, a single vector, autograd, graphlib, an
# insertion order the small examples cannot tell from a topological one) only the hidden tests catch.
VISIBLE_CATCHES = [
    "linear: bias gradient not summed (grad_out itself)",
    "linear: bias gradient summed over the wrong axis",
    "linear: bias gradient averaged over the batch",
    "linear: bias gradient from the first row only",
    "linear: weight gradient transposed, (d_in, d_out)",
    "linear: weight gradient transposed, then reshaped to (d_out, d_in)",
    "linear: weight gradient averaged over the batch",
    "linear: weight gradient from the first row only",
    "linear: input gradient through w.T (the (in, out) layout)",
    "linear: input gradient as x @ w.T @ w (the output, not its gradient)",
    "linear: float32 hard-coded",
    "linear: float64 hard-coded",
    "linear: transposes x in place (x.t_())",
    "ce: gradient without the 1/N (of the summed loss)",
    "ce: gradient divided by C instead of N",
    "ce: loss summed, not averaged",
    "ce: gradient y - p (sign flipped)",
    "ce: one-hot not subtracted (p / N)",
    "ce: softmax over the batch (dim=0)",
    "ce: no max subtracted (exp overflows)",
    "ce: log of the softmax (underflows to -inf)",
    "ce: max subtracted in place (changes the logits)",
    "ce: loss as a Python float",
    "ce: returns (grad, loss)",
    "ce: float32 hard-coded",
    "ce: float64 work in place (changes float64 logits, returns them)",
    "ln: the mean term missing",
    "ln: the variance term missing",
    "ln: both mean terms missing (a fixed scaling)",
    "ln: the variance term without its x_hat",
    "ln: the variance term with its sums over the batch",
    "ln: unbiased variance (divides by D - 1)",
    "ln: eps outside the square root",
    "ln: eps ignored",
    "ln: gamma left out of the input gradient",
    "ln: grad_gamma from x, not x_hat",
    "ln: grad_gamma and grad_beta summed over the first dimension only",
    "ln: grad_gamma not summed over the batch",
    "ln: grad_beta summed over the last dimension",
    "ln: mean and variance over the whole tensor",
    "ln: centred in place (changes x)",
    "ln: float32 hard-coded",
    "ln: normalised over the first dimension",
    "ln: float64 work in place (changes float64 inputs)",
    "topo: each node before its inputs (pre-order)",
    "topo: no visited set (shared nodes listed twice)",
    "topo: breadth-first from the root, reversed (insertion order)",
    "topo: reversed (root first)",
    "topo: leaves left out",
    "topo: only the root's direct inputs",
    "topo: visited by number (equal data merged)",
    "topo: marks written on the nodes (a second call differs)",
    "topo: a mutable default argument (visited kept across calls)",
    "value: = instead of += in __add__ (a + a)",
    "value: = instead of += in __mul__ (a * a)",
    "value: = instead of += everywhere",
    "value: the local derivatives of * swapped",
    "value: * forgets out.grad",
    "value: tanh' = 1 - tanh, not squared",
    "value: tanh' from the input, 1 - a ** 2",
    "value: exp' from the input, a instead of e ** a",
    "value: backward visits the order unreversed (inputs first)",
    "value: backward never zeroes (a second call adds)",
    "value: backward zeroes after seeding (every grad 0)",
    "value: backward never seeds self.grad = 1",
    "value: backward pushes recursively (once per path)",
]


def _visible_only(nb):
    """The notebook as a student sees it, solutions kept: the hidden tests removed."""
    from nbgrader.preprocessors import ClearHiddenTests

    nb, _ = ClearHiddenTests().preprocess(copy.deepcopy(nb), {})
    return nb


@pytest.mark.parametrize("name", VISIBLE_CATCHES)
def test_visible_asserts_catch_wrong_solution(name):
    answer_id, code = EXERCISE.wrong[name]
    results = run(_visible_only(EXERCISE.load()), replace={answer_id: code}, stop_after=f"test_{answer_id}")
    assert results[answer_id] is None, results[answer_id]
    assert results[f"test_{answer_id}"] is not None, f"the visible asserts let '{name}' pass"


def test_the_references_agree_with_finite_differences():
    """torch.autograd, the hidden tests' reference, agrees with finite differences on the three layers."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in [(4, 3), (5, 3), (5,)])
    assert torch.autograd.gradcheck(lambda x, w, b: x @ w.T + b, (x, w, b))
    z, t = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True), torch.tensor([0, 3, 1, 1, 2, 0])
    assert torch.autograd.gradcheck(lambda z: F.cross_entropy(z, t), (z,))
    x3 = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    gamma, beta = (torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda x, gm, bt: F.layer_norm(x, (5,), gm, bt, eps=0.3), (x3, gamma, beta))


def test_the_notebook_formulas_agree_with_autograd():
    """The closed forms the notebook states, (p - y)/N and LayerNorm's Jacobian, are torch.autograd's."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randint(7, (5,), generator=g)
    want = torch.autograd.functional.jacobian(lambda z: F.cross_entropy(z, t), z)
    assert torch.allclose((torch.softmax(z, -1) - F.one_hot(t, 7)) / 5, want, atol=1e-12)
    D, eps = 6, 0.2
    x = torch.randn(D, generator=g, dtype=torch.float64)
    r = 1 / torch.sqrt(x.var(unbiased=False) + eps)
    x_hat = (x - x.mean()) * r
    jac = r * (torch.eye(D, dtype=torch.float64) - 1 / D - torch.outer(x_hat, x_hat) / D)
    want = torch.autograd.functional.jacobian(lambda x: F.layer_norm(x, (D,), eps=eps), x)
    assert torch.allclose(jac, want, atol=1e-12)
