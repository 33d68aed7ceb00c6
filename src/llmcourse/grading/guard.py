"""Inside a student's kernel: run each graded test cell so that student code cannot forge its result.

nbgrader scores a test cell by its outputs (no error shown: full points), and runs
the tests in the same kernel, after the student's code. So student code could make
a wrong answer pass by changing what the tests rely on: replace ``torch.allclose``
or a builtin, return an object that compares equal to anything, hide the error
(``sys.excepthook``, IPython's ``showtraceback``, ``sys.stderr``) or rewrite the
test cell before it runs (IPython's input transformers). This module, installed
by the autograder (:mod:`llmcourse.grading.supervisor`) in each fresh kernel
*before any student cell runs*, closes those doors:

* :class:`Snapshot` records, before student code, every reference the tests may
  use: the functions and classes of the modules the notebook's instructor cells
  import (and of ``builtins``, ``math``, ``operator``, this package's checks...),
  the methods of the classes in them, the names the notebook binds to modules,
  ``sys.excepthook``/``stdout``/``stderr``, trace functions, and IPython's hooks.
  Right before and right after each test cell the judge compares them with the
  snapshot; a test cell that meets a change earns nothing, and the environment
  is put back as it was (so the change costs the cells it was in force for).
* The test cell's code is compiled by the judge, with every ``==``, ``!=``,
  ``in`` and ``not in`` routed through :func:`compare`, which fails the test when
  an operand claims to equal an object it has never seen (``__eq__`` that always
  says True), also inside lists, tuples, sets and dicts; and torch's
  ``__torch_function__`` overrides are off while it runs, so a tensor subclass
  cannot fake ``torch.allclose``.
* The judge, not the outputs, decides: it records each test cell's result
  (pass, fail with the error, or tampering with what changed) in the verdict
  file, each line signed (HMAC-SHA256) with a key it received before any student
  code ran, over a nonce that is new for every cell. The autograder reads the
  verdict outside the kernel: no valid verdict, or a failure the notebook does
  not show, is tampering, and the cell earns nothing.

What it cannot stop: code that targets this module itself (finds the judge's
key or code through ``gc``, frames or ``ctypes`` and rewrites them). The
autograded notebook keeps every line the student wrote, for anyone who wants to
look (README, "For instructors").

The kernel loads this file on its own, as the module :data:`STANDALONE` (see
:func:`setup_code`), not through the ``llmcourse`` package, whose import loads
torch; it imports only the standard library.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import hmac
import importlib
import inspect
import json
import linecache
import operator
import os
import sys
import threading
import types
import warnings
from typing import Any, Callable, Iterable

# This module's own copy of the builtins, taken when it is imported (before any student
# code): a builtin that student code replaces later is not the one the judge calls.
__builtins__ = dict(vars(builtins))

JUDGE = "__llmcourse_judge__"  # the name the judge has in the notebook's namespace
STANDALONE = "llmcourse_grading_guard"  # the name of this module in the kernel
VERDICT_STATUSES = ("pass", "fail", "tampering")

# Modules whose functions and classes every test may use, watched whenever they are loaded.
BASE_MODULES = (
    "builtins", "math", "cmath", "operator", "functools", "itertools", "collections", "copy", "random",
    "types", "inspect", "dis", "ast", "numbers", "statistics", "fractions", "decimal", "json", "hmac",
    "hashlib", "numpy", "numpy.testing", "numpy.linalg", "torch", "torch.nn", "torch.nn.functional",
    "torch.testing", "torch.linalg", "torch.autograd", "torch.autograd.functional",
    "llmcourse.grading.checks", STANDALONE,
)
SYS_HOOKS = ("excepthook", "displayhook", "breakpointhook", "stdout", "stderr", "stdin", "__excepthook__",
             "__displayhook__", "__stdout__", "__stderr__")
SHELL_HOOKS = ("run_cell", "run_cell_async", "should_run_async", "run_code", "run_ast_nodes", "transform_cell",
               "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror", "showindentationerror",
               "get_exception_only", "excepthook", "set_custom_exc", "CustomTB", "custom_exceptions",
               "InteractiveTB", "SyntaxTB", "displayhook", "display_pub", "user_ns", "compile",
               "input_transformer_manager")
SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
TB_HOOKS = ("structured_traceback", "stb2text", "text")
MAX_ITEMS = 10_000  # elements of one container that compare() looks into
_MISSING = object()
_HEAPTYPE = 1 << 9


class TamperingDetected(Exception):
    """A test cell ran in a grading environment that student code had changed."""


# ----------------------------------------------------------------------------
# the verdict file (written here, read by the autograder)
# ----------------------------------------------------------------------------
def sign(key: str, nonce: str, grade_id: str, status: str, detail: str) -> str:
    message = "\n".join([nonce, grade_id, status, detail]).encode("utf-8", "replace")
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def verdict_line(key: str, nonce: str, grade_id: str, status: str, detail: str) -> bytes:
    mac = sign(key, nonce, grade_id, status, detail)
    return (json.dumps({"nonce": nonce, "grade_id": grade_id, "status": status, "detail": detail,
                        "mac": mac}) + "\n").encode()


def read_verdict(text: str, key: str, nonce: str, grade_id: str) -> tuple[str, str] | None:
    """``(status, detail)`` of the signed verdict for ``nonce`` in ``text``; None if there is none."""
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            fields = [entry["nonce"], entry["grade_id"], entry["status"], entry["detail"]]
            mac = entry["mac"]
        except (ValueError, KeyError, TypeError):
            continue
        if not all(isinstance(f, str) for f in [*fields, mac]) or fields[:2] != [nonce, grade_id]:
            continue
        if fields[2] in VERDICT_STATUSES and hmac.compare_digest(mac, sign(key, *fields)):
            return fields[2], fields[3]
    return None


# ----------------------------------------------------------------------------
# what the tests rely on
# ----------------------------------------------------------------------------
def _public(name: str) -> bool:
    """Names a test may use: public ones and dunders (``__eq__``), not a module's private helpers,
    which a library may rebind as it runs (a plotting backend, a cache)."""
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _watched(value: Any) -> bool:
    """Values compared by identity: functions, classes, modules and other callables."""
    return callable(value) or isinstance(value, (types.ModuleType, staticmethod, classmethod, property))


def _members(namespace: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(namespace).items() if _public(k) and _watched(v)}


def _shadowing(cls: type, known: frozenset[str]) -> list[str]:
    """Members added to ``cls`` since the snapshot (whose names were ``known``) that hide one
    of its base classes' (``torch.Tensor.__eq__``, which ``torch.Tensor`` inherits from C code)."""
    return [k for k, v in list(vars(cls).items()) if k not in known and _public(k) and _watched(v)
            and any(k in vars(base) for base in cls.__mro__[1:])]


def _shell_hook(shell: Any, name: str) -> Any:
    """What ``shell.name`` is: the function itself for a method (a bound method is new on every
    access), the value for anything else."""
    static = inspect.getattr_static(shell, name, _MISSING)
    if static is _MISSING or isinstance(static, (types.FunctionType, staticmethod, classmethod)):
        return static
    return getattr(shell, name, _MISSING)


def _ids(items: Iterable[Any]) -> list[int]:
    return [id(item) for item in items]  # by identity: an item's own __eq__ could lie


def _library_roots() -> tuple[str, ...]:
    """The folders of the Python installation (read-only in the sandbox), as given and resolved."""
    given = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    roots = {*given, *(os.path.realpath(p) for p in given)}
    return tuple(sorted(root.rstrip(os.sep) + os.sep for root in roots if root.rstrip(os.sep)))


def _library_wrapper(value: Any, original: Any, roots: tuple[str, ...]) -> bool:
    """True if ``value`` is a function written in an installed library that wraps ``original``
    (``functools.wraps``), perhaps through other such wrappers: torch rebinds ``torch.manual_seed``
    so when ``torch._dynamo`` loads. A wrapper written in the notebook is never one.

    Uses no library function (student code may have broken the builtins they rely on)."""
    for _ in range(8):
        if type(value) is not types.FunctionType:
            return False
        filename = value.__code__.co_filename
        if type(filename) is not str or ".." in filename or not filename.startswith(roots):
            return False
        value = vars(value).get("__wrapped__", _MISSING)
        if _same(value, original):
            return True
    return False


def _same(a: Any, b: Any) -> bool:
    """``a is b``, or both are the same method of the same object (IPython and ipykernel set
    ``sys.excepthook`` and ``builtins.input`` to a bound method, made anew, for every cell)."""
    if a is b:
        return True
    if type(a) is not type(b) or not isinstance(a, (types.MethodType, types.BuiltinMethodType)):
        return False
    if isinstance(a, types.MethodType):
        return a.__self__ is b.__self__ and a.__func__ is b.__func__
    return a.__self__ is b.__self__ and a.__name__ == b.__name__


class Snapshot:
    """The grading environment as it was before any student code (see the module docstring).

    :meth:`changes` lists what differs now, :meth:`restore` puts it back.
    """

    def __init__(self, shell: Any, user_ns: dict, modules: Iterable[str], bindings: dict[str, list]) -> None:
        self.shell, self.user_ns = shell, user_ns
        self._gettrace, self._getprofile = sys.gettrace, sys.getprofile
        self._frames, self._ident = sys._current_frames, threading.get_ident
        self._roots = _library_roots()
        names = [m for m in (*BASE_MODULES, *modules) if m in sys.modules]
        self.modules = {name: sys.modules[name] for name in dict.fromkeys(names)}
        self.module_dicts = {name: _members(mod) for name, mod in self.modules.items()}
        self.classes: dict[str, tuple[type, dict]] = {}
        self.class_keys: dict[str, frozenset[str]] = {}
        for name, mod in self.modules.items():
            for attr, value in self.module_dicts[name].items():
                if isinstance(value, type) and value.__flags__ & _HEAPTYPE and \
                        str(getattr(value, "__module__", "")).split(".")[0] == name.split(".")[0]:
                    label = f"{value.__module__}.{value.__qualname__}"
                    self.classes.setdefault(label, (value, _members(value)))
                    self.class_keys.setdefault(label, frozenset(vars(value)))
        self.sys_hooks = {name: getattr(sys, name, _MISSING) for name in SYS_HOOKS}
        self.trace = (sys.gettrace(), sys.getprofile())
        self.bindings = {}
        for alias, (module, attr) in bindings.items():
            value = sys.modules.get(module)
            if value is not None and attr:
                value = getattr(value, attr, None)
            if isinstance(value, types.ModuleType):
                self.bindings[alias] = value
        hooks = (SHELL_HOOKS, TB_HOOKS, SHELL_LISTS) if shell is not None else ((), (), ())
        self.shell_hooks = {name: _shell_hook(shell, name) for name in hooks[0]}
        self.tb = getattr(shell, "InteractiveTB", None)
        self.tb_hooks = {name: _shell_hook(self.tb, name) for name in hooks[1]}
        self.shell_lists = {name: list(getattr(shell, name, [])) for name in hooks[2]}

    def _kept(self, current: Any, original: Any) -> bool:
        """True if a watched reference still is what the tests rely on."""
        return _same(current, original) or _library_wrapper(current, original, self._roots)

    # -- what changed --------------------------------------------------------
    def changes(self) -> list[str]:
        """Everything that differs from the snapshot, as short descriptions."""
        found = []
        for name, mod in self.modules.items():
            if sys.modules.get(name) is not mod:
                found.append(f"the module {name} was replaced in sys.modules")
            current = vars(mod)
            found += [f"{name}.{k} was replaced" if k in current else f"{name}.{k} was deleted"
                      for k, v in self.module_dicts[name].items() if not self._kept(current.get(k, _MISSING), v)]
        for label, (cls, members) in self.classes.items():
            current = vars(cls)
            found += [f"{label}.{k} was replaced" for k, v in members.items()
                      if not self._kept(current.get(k, _MISSING), v)]
            found += [f"{label}.{k} was replaced" for k in _shadowing(cls, self.class_keys[label])]
        found += [f"sys.{k} was replaced" for k, v in self.sys_hooks.items() if not _same(getattr(sys, k, _MISSING), v)]
        if self._gettrace() is not self.trace[0] or self._getprofile() is not self.trace[1]:
            found.append("a trace or profile function was set (sys.settrace, sys.setprofile)")
        found += [f"the notebook's name {k} no longer refers to the module {v.__name__}"
                  for k, v in self.bindings.items() if self.user_ns.get(k, v) is not v]
        ns_builtins = self.user_ns.get("__builtins__")
        if ns_builtins is not builtins and ns_builtins is not vars(builtins):
            found.append("the notebook's __builtins__ was replaced")
        found += [f"IPython's {k} was replaced" for k, v in self.shell_hooks.items()
                  if not _same(_shell_hook(self.shell, k), v)]
        found += [f"IPython's InteractiveTB.{k} was replaced" for k, v in self.tb_hooks.items()
                  if not _same(_shell_hook(self.tb, k), v)]
        found += [f"IPython's {k} were changed" for k, v in self.shell_lists.items()
                  if _ids(getattr(self.shell, k, [])) != _ids(v)]
        return found + self._notebook_threads()

    def _notebook_threads(self) -> list[str]:
        """Student code running in another thread, which could change the environment while a
        test runs, between the two checks."""
        found, me = [], self._ident()
        for ident, frame in self._frames().items():
            while frame is not None and ident != me:
                if frame.f_globals is self.user_ns:
                    found.append("student code was running in another thread")
                    break
                frame = frame.f_back
        return found[:1]

    # -- putting it back -----------------------------------------------------
    def restore(self) -> None:
        for name, mod in self.modules.items():
            sys.modules[name] = mod
            for key, value in self.module_dicts[name].items():
                if not self._kept(vars(mod).get(key, _MISSING), value):
                    setattr(mod, key, value)
        for label, (cls, members) in self.classes.items():
            for key, value in members.items():
                if not self._kept(vars(cls).get(key, _MISSING), value):
                    setattr(cls, key, value)
            for key in _shadowing(cls, self.class_keys[label]):
                delattr(cls, key)
        for key, value in self.sys_hooks.items():
            if value is not _MISSING and not _same(getattr(sys, key, _MISSING), value):
                setattr(sys, key, value)
        sys.settrace(self.trace[0])
        sys.setprofile(self.trace[1])
        for key, value in self.bindings.items():
            if key in self.user_ns:
                self.user_ns[key] = value
        self.user_ns["__builtins__"] = builtins
        self._restore_shell()

    def _restore_shell(self) -> None:
        for obj, hooks in ((self.shell, self.shell_hooks), (self.tb, self.tb_hooks)):
            for key, value in hooks.items():
                if _same(_shell_hook(obj, key), value):
                    continue
                vars(obj).pop(key, None)  # an attribute of the object hiding its class's method
                if not _same(_shell_hook(obj, key), value) and value is not _MISSING:
                    owner = next((k for k in type(obj).__mro__ if key in vars(k)), None)
                    if isinstance(value, (types.FunctionType, staticmethod, classmethod)) and owner is not None:
                        setattr(owner, key, value)
                    else:
                        setattr(obj, key, value)
        for key, value in self.shell_lists.items():
            getattr(self.shell, key)[:] = value


# ----------------------------------------------------------------------------
# comparisons a student's object cannot fool
# ----------------------------------------------------------------------------
class _Stranger:
    """An object no student code has seen: nothing honest compares equal to it."""

    __slots__ = ()
    __hash__ = object.__hash__


_TRUSTED = {int, float, complex, str, bytes, bool, type(None), range, type(Ellipsis)}
_CONTAINERS = (list, tuple, set, frozenset)
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge, "is": operator.is_, "is not": operator.is_not,
        "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}
_AST_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


def _trusted_types() -> set[type]:
    """Types whose ``==`` is the library's own: the builtin scalars, plain tensors and arrays."""
    found = set(_TRUSTED)
    torch, numpy = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None:
        found |= {torch.Tensor, torch.dtype, torch.device}
    if numpy is not None:
        found |= {numpy.ndarray, numpy.dtype}
        found |= {t for t in vars(numpy).values() if isinstance(t, type) and issubclass(t, numpy.generic)}
    return found


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:  # an array of several booleans, say: no claim of equality
        return False


def equal_to_anything(value: Any, trusted: set[type], depth: int = 0) -> str | None:
    """The type name of ``value``, or of an item inside it, that claims to equal an object it has
    never seen (``==`` true, or ``!=`` false, against a fresh object); None if nothing does."""
    kind = type(value)
    if kind in trusted or depth > 20:
        return None
    if kind not in _CONTAINERS and kind is not dict:
        stranger = _Stranger()
        try:
            claims = _truthy(value == stranger) or not _truthy(value != stranger)
        except Exception:
            claims = False
        if claims:
            return kind.__qualname__
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)[:MAX_ITEMS]
    elif isinstance(value, dict):
        items = [*list(value)[:MAX_ITEMS], *list(value.values())[:MAX_ITEMS]]
    else:
        return None
    for item in items:
        found = equal_to_anything(item, trusted, depth + 1)
        if found:
            return found
    return None


def _container_lies(container: Any) -> bool:
    """True if ``container`` says it holds an object it has never seen."""
    try:
        return _truthy(_Stranger() in container)
    except Exception:
        return False


class _Comparisons(ast.NodeTransformer):
    """Rewrites ``a == b`` (and ``!=``, ``in``, ``not in``, chained or not) into a call of the
    placeholder constant, which :func:`_bind` replaces with the judge's compare function."""

    def __init__(self, placeholder: str) -> None:
        self.placeholder = placeholder

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        ops = [_AST_OPS[type(op)] for op in node.ops]
        if not set(ops) & {"==", "!=", "in", "not in"}:
            return node
        call = ast.Call(
            func=ast.Constant(self.placeholder),
            args=[ast.Tuple([ast.Constant(op) for op in ops], ast.Load()),
                  ast.Tuple([node.left, *node.comparators], ast.Load())],
            keywords=[],
        )
        return ast.copy_location(call, node)


def _bind(code: types.CodeType, placeholder: str, value: Any) -> types.CodeType:
    """``code`` with the constant ``placeholder`` replaced by ``value``, in nested code too.

    A constant cannot be rebound by student code, as a name in the notebook could."""
    consts = tuple(value if c == placeholder and isinstance(c, str) else
                   _bind(c, placeholder, value) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_consts=consts)


# ----------------------------------------------------------------------------
# the judge
# ----------------------------------------------------------------------------
class _NoTorchFunction:
    """Within it, tensor subclasses behave as plain tensors (their ``__torch_function__`` is off)."""

    def __enter__(self):
        torch = sys.modules.get("torch")
        self.inner = getattr(getattr(torch, "_C", None), "DisableTorchFunctionSubclass", None)
        self.inner = self.inner() if self.inner is not None else None
        if self.inner is not None:
            self.inner.__enter__()

    def __exit__(self, *exc):
        if self.inner is not None:
            self.inner.__exit__(*exc)


def make_judge(key: str, verdict_fd: int, snapshot: Snapshot, user_ns: dict,
               transform: Callable[[str], str]) -> types.SimpleNamespace:
    """The judge: ``load(nonce, grade_id, source)`` then ``run(grade_id, nonce)`` runs one test cell.

    Everything it uses is bound here, before any student code, so that replacing a
    builtin, a module attribute or a name in the notebook does not change it.
    """
    pending: dict[str, tuple[str, str]] = {}
    placeholder = f"<compare {os.urandom(8).hex()}>"
    _compile, _exec, _eval, _write, _parse = builtins.compile, builtins.exec, builtins.eval, os.write, ast.parse
    _verdict, _changes, _restore = verdict_line, snapshot.changes, snapshot.restore
    _no_torch_function, _equal_to_anything, _lies = _NoTorchFunction, equal_to_anything, _container_lies
    _str, _type, _list, _len = str, type, list, len
    found_in_test: list[str] = []
    trusted_now = [_trusted_types()]

    def check_operands(op: str, left: Any, right: Any) -> None:
        __tracebackhide__ = True  # noqa: F841  (IPython leaves this frame out of tracebacks)
        if op not in ("==", "!=", "in", "not in"):
            return
        trusted = trusted_now[0]
        who = _equal_to_anything(left, trusted) or (op in ("==", "!=") and _equal_to_anything(right, trusted))
        if not who and op in ("in", "not in") and _type(right) not in trusted and _lies(right):
            who = _type(right).__qualname__
        if who:
            what = f"an object that compares equal to anything ({who})"
            found_in_test.append(what)
            raise TamperingDetected(what)

    def compare(ops: tuple, operands: tuple) -> Any:
        """``operands[0] ops[0] operands[1] ...`` as Python evaluates it (the result of the first
        comparison that is false, or of the last), each operand checked first."""
        __tracebackhide__ = True  # noqa: F841
        result = True
        for index, op in enumerate(ops):
            left, right = operands[index], operands[index + 1]
            check_operands(op, left, right)
            result = _OPS[op](left, right)
            if index + 1 < _len(ops) and not result:
                return result
        return result

    def compile_test(grade_id: str, source: str) -> tuple[types.CodeType, types.CodeType | None]:
        filename = f"<test cell {grade_id}>"
        source = transform(source)
        linecache.cache[filename] = (_len(source), None, source.splitlines(True), filename)
        tree = _Comparisons(placeholder).visit(_parse(source, filename))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):  # shown, like a cell's last expression
            last = ast.Expression(tree.body.pop().value)
        ast.fix_missing_locations(tree)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "'str' object is not callable": the placeholder
            body = _bind(_compile(tree, filename, "exec"), placeholder, compare)
            tail = None if last is None else _bind(_compile(ast.fix_missing_locations(last), filename, "eval"),
                                                   placeholder, compare)
        return body, tail

    def check() -> list[str]:
        """What changed (and is now put back); a check that fails is a finding too."""
        try:
            found = _changes()
        except Exception as exc:  # noqa: BLE001  (student code made the environment uncheckable)
            found = [f"the grading environment could not be checked ({_type(exc).__name__})"]
        if found:
            try:
                _restore()
            except Exception:  # noqa: BLE001  (the finding stands; the cell earns nothing)
                pass
        return found

    def report(nonce: str, grade_id: str, status: str, detail: str) -> None:
        try:
            _write(verdict_fd, _verdict(key, nonce, grade_id, status, detail[:2000]))
        except OSError:
            pass  # no verdict: the autograder counts the cell as failed

    def load(nonce: str, grade_id: str, source: str) -> None:
        pending[nonce] = (grade_id, source)

    def run(grade_id: str, nonce: str) -> Any:
        __tracebackhide__ = True  # noqa: F841
        if pending.get(nonce, (None,))[0] != grade_id:
            raise TamperingDetected("the test cell did not reach the grader")
        _, source = pending.pop(nonce)
        found = check()
        del found_in_test[:]
        trusted_now[0] = _trusted_types()
        error, value = None, None
        try:
            body, tail = compile_test(grade_id, source)
            with _no_torch_function():
                _exec(body, user_ns)
                if tail is not None:
                    value = _eval(tail, user_ns)
        except BaseException as exc:  # noqa: BLE001  (everything a test raises is its result)
            error = exc
        found = _list(dict.fromkeys([*found, *found_in_test, *check()]))
        if found:
            detail = "; ".join(found)
            report(nonce, grade_id, "tampering", detail)
            raise TamperingDetected(detail) from None
        if error is not None:
            report(nonce, grade_id, "fail", f"{_type(error).__name__}: {_str(error)[:500]}")
            raise error
        report(nonce, grade_id, "pass", "")
        return value

    return types.SimpleNamespace(load=load, run=run)


def setup_code(key: str, verdict_path: str, modules: Iterable[str], bindings: dict) -> str:
    """The code that loads this file in a fresh kernel and runs :func:`install` (leaving no name behind)."""
    return (
        "def _llmcourse_setup():\n"
        "    import importlib.util, sys\n"
        f"    spec = importlib.util.spec_from_file_location({STANDALONE!r}, {os.path.abspath(__file__)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    sys.modules[spec.name] = module\n"
        "    spec.loader.exec_module(module)\n"
        f"    module.install({key!r}, {verdict_path!r}, {list(modules)!r}, {dict(bindings)!r})\n"
        "_llmcourse_setup()\n"
        "del _llmcourse_setup\n"
    )


def install(key: str, verdict_path: str, modules: Iterable[str] = (), bindings: dict | None = None,
            user_ns: dict | None = None) -> Snapshot:
    """Set the judge up in the running IPython kernel (called before any student cell).

    Imports ``modules`` (those the notebook's test cells import), takes the
    :class:`Snapshot`, opens the verdict file for appending and puts the judge in
    the notebook's namespace under :data:`JUDGE`. Outside IPython (tests that run
    cells in-process), pass the namespace the cells run in as ``user_ns``.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a test that needs it fails by itself
            pass
    shell, transform = None, (lambda source: source)
    if user_ns is None:
        from IPython import get_ipython

        shell = get_ipython()
        user_ns = shell.user_ns
        manager = shell.input_transformer_manager
        transform = type(manager).transform_cell.__get__(manager)  # bound now: later patches do not reach it
    snapshot = Snapshot(shell, user_ns, modules, bindings or {})
    fd = os.open(verdict_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    user_ns[JUDGE] = make_judge(key, fd, snapshot, user_ns, transform)
    return snapshot
