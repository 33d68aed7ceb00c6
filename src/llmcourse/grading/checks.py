"""Helpers that the exercises' graded test cells call from inside the student's kernel.

Two rules make a graded test fair:

* **A mistake costs points once.** A test of ``train_bpe`` should not fail
  because the student's ``merge``, tested and penalised in its own cell, is
  wrong. :func:`reference_helpers` runs a block with such helpers swapped for
  the course's own versions, and puts the student's back afterwards.
* **The student writes the code.** The course package holds reference
  implementations of everything the exercises ask for. :func:`assert_own_code`
  fails when a student's function reaches into the package instead.

Introduced in: the Tokenization exercise (``01_tokenization/bpe.ipynb``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
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


def package_uses(function: Callable, package: str = PACKAGE) -> list[str]:
    """Names through which ``function`` (or a helper of the same notebook it calls) uses ``package``."""
    found: list[str] = []
    seen: set[int] = set()
    todo = [function]
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if _from_package(fn, package):
            found.append(getattr(fn, "__qualname__", repr(fn)))
            continue
        code, names = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
        if code is None:
            continue
        for inner in _code_objects(code):
            for name in inner.co_names:
                if name == package or name.startswith(package + "."):
                    found.append(name)  # an import inside the function
                    continue
                value = names.get(name, _MISSING)
                if value is _MISSING:
                    continue
                if _from_package(value, package):
                    found.append(name)
                elif isinstance(value, types.FunctionType) and value.__globals__ is names:
                    todo.append(value)  # another function of the same notebook
    return sorted(set(found))


def assert_own_code(*functions: Callable, package: str = PACKAGE) -> None:
    """Fail if any of ``functions`` calls the course package instead of implementing the exercise."""
    for fn in functions:
        uses = package_uses(fn, package)
        if uses:
            raise AssertionError(
                f"{fn.__name__} uses the course package ({', '.join(uses)}): "
                "write this function yourself; calling the package's version earns no points"
            )
