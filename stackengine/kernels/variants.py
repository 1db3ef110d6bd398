"""Kernels compiled for one choice at a time: a run compiles only what it uses.

numba types and compiles every branch of a function, taken or not. A kernel that
picks its interpolation or its rejection stages from an argument therefore
compiles all of them the first time it runs (with an empty cache, the resampling
kernel spent 5.8 of its 7.8 s compiling the three interpolations a run did not
use). numba does drop, before typing, a branch whose condition tests constants
(module globals, literals). So such a kernel is written here as a plain Python
function whose choice is a module-level name (``METHOD``, say), and
:func:`variant` makes, for one value of it, a copy of the function whose globals
hold that value, and compiles the copy with ``cache=True``: only the chosen
branch is compiled, once per choice, and cached.

A plain function marked with :func:`per_choice` that such a kernel calls is made
a variant with the same choice too (a helper that dispatches on the choice).

Each copy gets a name of its own (``<name>_<choice>``, e.g.
``_resample_kernel_method_3``). numba names a kernel's cache files after the
function, so every choice has files of its own; and numba names the compiled
code after the function and a per-process counter, so two choices compiled in
two processes can never share a symbol when both are loaded into a third. (Two
processes compiling new signatures of the *same* kernel at once, e.g. workers of
a cluster sharing a cache folder, still race in numba's cache index, as for any
cached numba function.)

Nothing here is numba's public API beyond ``njit``: the copy is an ordinary
Python function (same code object, other globals), which numba compiles and
caches as any other.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

from numba import njit

from .._numba_cache import check_kernel

__all__ = ["per_choice", "variant"]

_VARIANTS: dict[tuple, Any] = {}
_LOCK = threading.RLock()


def per_choice(**options: Any) -> Callable[[Callable], Callable]:
    """Mark a plain function as a kernel compiled per choice by :func:`variant`, with
    these ``njit`` options (besides ``cache=True``); the function stays as it is."""

    def mark(func: Callable) -> Callable:
        func._variant_options = dict(options)  # type: ignore[attr-defined]
        return func

    return mark


def _suffix(value: Any) -> str:
    """A file-name-safe text for a choice, one-to-one: ``true``/``false``, ``3``,
    ``t1-4`` (a flat tuple)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "t" + "-".join(_suffix(v) for v in value)
    raise TypeError(
        f"variant: a choice must be a bool, an int or a flat tuple of them, not {value!r}"
    )


def _names(func: Callable, seen: set | None = None) -> set[str]:
    """The module-level names ``func`` and the per-choice helpers it calls can read."""
    seen = set() if seen is None else seen
    seen.add(func)
    names = set(func.__globals__)
    for name in func.__code__.co_names:
        helper = func.__globals__.get(name)
        if hasattr(helper, "_variant_options") and helper not in seen:
            names |= _names(helper, seen)
    return names


def variant(func: Callable, **choice: Any) -> Any:
    """The compiled (cached) copy of ``func`` with the module globals ``choice`` set.

    Parameters
    ----------
    func : callable
        A plain function of a kernels module marked with :func:`per_choice`, whose
        branches test the names in ``choice``.
    **choice
        Values (bools, ints, tuples of them) for module-level names that ``func``
        (or a :func:`per_choice` function it calls) reads, each defined in the
        module that reads it (as a default value).

    Returns
    -------
    numba dispatcher
        The same object for the same ``func`` and ``choice`` in a process.
    """
    options = getattr(func, "_variant_options", None)
    if options is None:
        raise TypeError(f"variant: {func.__name__} is not marked with per_choice")
    tags = "_".join(f"{name.lower()}_{_suffix(value)}" for name, value in sorted(choice.items()))
    key = (func, tuple(sorted(choice.items())))
    with _LOCK:
        found = _VARIANTS.get(key)
        if found is not None:
            return found
        unknown = sorted(set(choice) - _names(func))
        if unknown:  # a typo would compile the module's default under the choice's name
            raise NameError(f"variant: {func.__name__} reads no module-level {unknown}")
        scope = dict(func.__globals__)
        scope.update(choice)
        for name in func.__code__.co_names:  # helpers compiled per choice: the same choice
            helper = scope.get(name)
            if helper is not func and hasattr(helper, "_variant_options"):
                known = _names(helper)
                scope[name] = variant(helper, **{k: v for k, v in choice.items() if k in known})
        copy = types.FunctionType(
            func.__code__, scope, func.__name__, func.__defaults__, func.__closure__
        )
        copy.__kwdefaults__ = func.__kwdefaults__
        copy.__doc__ = func.__doc__
        copy.__module__ = func.__module__
        copy.__qualname__ = f"{func.__qualname__}_{tags}"
        try:
            found = check_kernel(njit(cache=True, **options)(copy))
        except RuntimeError:  # no folder numba can cache in at all: compiled every process
            found = njit(**options)(copy)
        _VARIANTS[key] = found
        return found
