"""Value rules reduced on the device and read back once, and what becomes of them under tracing.

The input rules of :mod:`probcon_ref._inputs` that depend on values (finite, non-zero rows,
the concentrations' range, finite weights) are collected in a :class:`ValueRules`, evaluated
on the arrays' device and read back together, as one integer, in one host synchronisation;
only when it reports a broken rule are the rules checked one by one to build the message.

Under tracing (``jax.jit``, ``jax.vmap``) the arrays have no values yet, so that read cannot
happen (:func:`probcon_ref._arrays.read_int`). Each rule is handed instead to the check
function of :func:`traced_rules`, when one is set (the JAX adapter's
``jax.experimental.checkify`` checks); without one they are skipped.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable

from . import _arrays

__all__ = ["ValueRules", "traced_rules", "traced_check"]

#: The check function of :func:`traced_rules`, or None.
_TRACED_CHECK: contextvars.ContextVar = contextvars.ContextVar("probcon_ref_traced_check", default=None)


@contextlib.contextmanager
def traced_rules(check: Callable[[Any, str], None] | None):
    """Within the block, value rules met under tracing go to ``check(holds, message)``.

    ``holds`` is the rule as a 0-d boolean array (true when it holds) and ``message`` the
    error it stands for; ``None`` restores the default, which skips them. The setting is
    read while a function is traced, so it belongs inside the function being transformed.
    """
    token = _TRACED_CHECK.set(check)
    try:
        yield
    finally:
        _TRACED_CHECK.reset(token)


def traced_check() -> Callable[[Any, str], None] | None:
    """The check function set by :func:`traced_rules`, or ``None``."""
    return _TRACED_CHECK.get()


class ValueRules:
    """The value rules of one call, reduced on the device and read back once.

    Each rule is a 0-d boolean array that is true when the rule holds, with the function
    that raises its message and that message in words; :meth:`read` combines them, with the
    batch's other device-side facts, into one integer and converts it to a Python int: one
    host synchronisation. Under tracing there is nothing to read: the rules go to the
    check function of :func:`traced_rules` (if any) and every fact is ``None``, unknown.
    """

    def __init__(self, xp):
        self.xp = xp
        self.rules: list[tuple[Any, Callable[[], None], str]] = []
        self.facts: list[Any] = []

    def require(self, holds, explain: Callable[[], None], message: str) -> None:
        self.rules.append((holds, explain, message))

    def fact(self, value) -> int:
        """Add a 0-d boolean to be read with the rules; returns its index in :meth:`read`."""
        self.facts.append(value)
        return len(self.facts) - 1

    def read(self) -> list[bool | None]:
        """Raise the first broken rule's error, else return the facts as Python booleans."""
        xp = self.xp
        flags = [~holds for holds, _, _ in self.rules] + list(self.facts)
        if not flags:
            return []
        packed = xp.int32 if len(flags) < 31 else xp.int64
        bits = xp.stack([xp.astype(f, packed) for f in flags])
        powers = xp.asarray([2**i for i in range(len(flags))], dtype=packed, device=_arrays.device_of(bits))
        code = _arrays.read_int(xp.sum(bits * powers))  # the one host synchronisation
        if code is None:  # traced: no values to read
            check = _TRACED_CHECK.get()
            for holds, _, message in self.rules if check is not None else ():
                check(holds, message)
            return [None] * len(self.facts)
        if code & ((1 << len(self.rules)) - 1):
            for _, explain, _ in self.rules:
                explain()
            raise AssertionError("a value rule failed on the device but not when checked alone")
        return [bool(code >> (len(self.rules) + i) & 1) for i in range(len(self.facts))]
