"""Helpers that the exercises' graded test cells call from inside the student's kernel.

Two rules make a graded test fair:

* **A mistake costs points once.** A test of ``train_bpe`` should not fail
  because the student's ``merge``, tested and penalised in its own cell, is
  wrong. :func:`reference_helpers` runs a block with such helpers swapped for
  the course's own versions, and puts the student's back afterwards.
* **The student writes the code.** The course package holds reference
  implementations of everything the exercises ask for. :func:`assert_own_code`
  fails when a student's function (or class) reaches into the package instead,
  and :func:`assert_not_calling` when it calls a ready-made library function that
  does the exercise's job, such as ``torch.nn.functional.scaled_dot_product_attention``
  in an exercise that asks for attention.

Both follow the student's own helpers: functions and classes defined in the same
notebook that the checked code uses.

Introduced in: the Tokenization exercise (``02_tokenization/bpe.ipynb``); classes
and :func:`assert_not_calling` in the Attention exercise (``04_attention``).
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

PACKAGE = "llmcourse"
_MISSING = object()


@contextmanager
def reference_helpers(namespace: dict[str, Any], **helpers: Callable) -> Iterator[None]:
    """Within the block, ``namespace[name]`` is ``helpers[name]``; afterwards the old value is back.

    ``namespace`` is the notebook's ``globals()``, which is where the student's
    functions look their helpers up when they are called.
    """
    saved = {name: namespace.get(name, _MISSING) for name in helpers}
    namespace.update(helpers)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _from_package(obj: Any, package: str) -> bool:
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    else:
        name = getattr(obj, "__module__", None) or ""
    return name == package or name.startswith(package + ".")


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every function, lambda or comprehension nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _same_notebook(value: Any, names: dict[str, Any]) -> bool:
    """A function or class written in the notebook whose globals are ``names``."""
    if isinstance(value, types.FunctionType):
        return value.__globals__ is names
    if isinstance(value, type):
        return value.__module__ == names.get("__name__")
    return False


def _class_functions(cls: type) -> list[types.FunctionType]:
    """The plain functions behind a class's methods, properties, static and class methods."""
    found = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            found.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
        elif isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _walk(function: Callable | type) -> Iterator[tuple[types.CodeType | None, dict[str, Any], Any]]:
    """Yield (code object, its globals, None) for ``function`` and the notebook helpers it uses,
    and (None, globals, value) for every other global value those read.

    Classes count as their methods; a class's base classes are yielded as values.
    """
    seen: set[int] = set()
    todo: list[Any] = [function]
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if isinstance(fn, type):
            for base in fn.__mro__[1:]:
                yield None, {}, base
            todo.extend(_class_functions(fn))
            continue
        code, names = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
        if code is None:
            yield None, {}, fn
            continue
        for inner in _code_objects(code):
            yield inner, names, None
            for name in inner.co_names:
                value = names.get(name, _MISSING)
                if value is _MISSING:
                    continue
                if _same_notebook(value, names):
                    todo.append(value)  # another function or class of the same notebook
                else:
                    yield None, names, value


def package_uses(function: Callable | type, package: str = PACKAGE) -> list[str]:
    """Names through which ``function`` (or a helper of the same notebook it uses) uses ``package``.

    ``function`` may be a class: its methods and base classes are checked.
    """
    if _from_package(function, package):
        return [getattr(function, "__qualname__", repr(function))]
    found: list[str] = []
    for code, _, value in _walk(function):
        if code is not None:
            # an import inside the function
            found.extend(n for n in code.co_names if n == package or n.startswith(package + "."))
        elif _from_package(value, package):
            found.append(getattr(value, "__qualname__", None) or getattr(value, "__name__", repr(value)))
    return sorted(set(found))


_ATTRIBUTE_OPS = {"LOAD_ATTR", "LOAD_METHOD", "IMPORT_FROM", "STORE_ATTR", "LOAD_SUPER_ATTR"}


def _is_forbidden_object(value: Any, objects: list[Any]) -> bool:
    for obj in objects:
        if value is obj:
            return True
        try:
            if isinstance(obj, type) and isinstance(value, type) and issubclass(value, obj):
                return True
        except TypeError:  # a class-like object that issubclass cannot judge
            continue
    return False


def forbidden_uses(function: Callable | type, forbidden: Iterable[Any]) -> list[str]:
    """What ``function`` (or a helper of the same notebook it uses) reaches of ``forbidden``.

    ``forbidden`` holds objects and names. An object (a function, a class) is found
    when the code reads a global bound to it, or, for a class, to a subclass; a
    name (a string) is found when the code reads an attribute of that name, as in
    ``F.scaled_dot_product_attention`` or ``p.numel()``, or imports it (a module
    name such as ``"torch"`` also forbids importing its submodules inside the function).
    """
    forbidden = list(forbidden)
    names = {f for f in forbidden if isinstance(f, str)}
    objects = [f for f in forbidden if not isinstance(f, str)]
    found: list[str] = []
    if _is_forbidden_object(function, objects):
        found.append(getattr(function, "__qualname__", repr(function)))
    for code, _, value in _walk(function):
        if code is not None:
            for ins in dis.get_instructions(code):
                if ins.opname in _ATTRIBUTE_OPS and ins.argval in names:
                    found.append(ins.argval)
                elif ins.opname == "IMPORT_NAME" and any(ins.argval == n or ins.argval.startswith(n + ".") for n in names):
                    found.append(ins.argval)  # an import inside the function
        elif _is_forbidden_object(value, objects):
            found.append(getattr(value, "__qualname__", None) or getattr(value, "__name__", repr(value)))
    return sorted(set(found))


def assert_not_calling(*functions: Callable | type, forbidden: Iterable[Any], why: str = "") -> None:
    """Fail if any of ``functions`` uses one of ``forbidden`` (see :func:`forbidden_uses`)."""
    forbidden = list(forbidden)
    for fn in functions:
        uses = forbidden_uses(fn, forbidden)
        if uses:
            raise AssertionError(
                f"{fn.__name__} uses {', '.join(uses)}: {why or 'write this part yourself'}; "
                "code that calls a ready-made version earns no points"
            )


def assert_own_code(*functions: Callable | type, package: str = PACKAGE) -> None:
    """Fail if any of ``functions`` (or classes) calls the course package instead of implementing the exercise."""
    for fn in functions:
        uses = package_uses(fn, package)
        if uses:
            raise AssertionError(
                f"{fn.__name__} uses the course package ({', '.join(uses)}): "
                "write this function yourself; calling the package's version earns no points"
            )
