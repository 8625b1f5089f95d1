"""Bounds on rendering one template: how much it may produce and how much work it may do.

Templates are written by DAG authors and rendered inside the scheduler's wake-up, so one
``{% for %}`` nested in another, or ``'x' * 10**9``, must not stall scheduling for minutes or
take gigabytes. The sandbox already forbids unsafe attributes and calls; this adds a *budget*:

* an operation count (each loop iteration, call, filter, attribute or item lookup and operator
  costs one, plus one per KiB it produces, so copying big strings is paid for too);
* a size cap on every value an operation produces and on the rendered output of the field.

It is a count, not a clock (the domain reads no time): the default of a million operations is
well under a second of Jinja on a slow core, and far above what any real template needs.
Operations that could allocate a huge value in one step (repetition, ``replace``, ``join``,
padding filters, format widths) are checked *before* they run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, TemplateRuntimeError, nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer


@dataclass(frozen=True)
class RenderLimits:
    max_field_bytes: int = 256 * 1024  # rendered output of one field (one argv item, one env value)
    max_operations: int = 1_000_000


DEFAULT_LIMITS = RenderLimits()


class RenderLimitExceeded(TemplateRuntimeError):
    """The template went over its budget; the message says which limit."""


class Budget:
    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.left = limits.max_operations

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise RenderLimitExceeded(f"template does too much work: over {self.limits.max_operations} "
                                      "operations (loop iterations, calls, lookups, KiB produced)")

    def allow_size(self, size: int, what: str) -> None:
        if size > self.limits.max_field_bytes:
            raise RenderLimitExceeded(f"{what} would be {size} long, over the limit of "
                                      f"{self.limits.max_field_bytes} ({self.limits.max_field_bytes // 1024} KiB)")

    def produced(self, value: Any, what: str) -> Any:
        """Charge for a value just made and refuse it if it is too big to keep."""
        if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
            self.allow_size(len(value), what)
            self.spend(1 + len(value) // 1024)
        elif isinstance(value, int) and not isinstance(value, bool):
            self.allow_size(value.bit_length() // 8, what)
        return value


_current: ContextVar[Budget | None] = ContextVar("leoflow_render_budget", default=None)


def budget() -> Budget:
    """The budget of the render under way (a fresh default one outside ``bounded``)."""
    found = _current.get()
    return found if found is not None else Budget(DEFAULT_LIMITS)


def render_bounded(template: Any, context: dict[str, Any], limits: RenderLimits) -> str:
    """Render with a budget of its own, stopping as soon as the output passes the cap."""
    spent = Budget(limits)
    token = _current.set(spent)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            spent.allow_size(size, "the rendered text")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _current.reset(token)


# -- pre-checks of operations that can allocate a lot in one step -------------------------------

_WIDE_SPEC = re.compile(r"\d{7,}")  # a width or precision of a million or more
_NESTED_SPEC = re.compile(r":[^{}]*\{")  # "{:{w}}": the width comes from an argument
_PASSED = (Context, nodes.EvalContext, Environment)
_NUMERIC_FILTERS = frozenset({"default", "d", "int", "float", "round", "abs", "string", "tojson", "filesizeformat"})


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _check_ints(b: Budget, args: Iterable[Any], what: str) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > b.limits.max_field_bytes:
            b.allow_size(arg, what)


def _check_format(b: Budget, fmt: str, args: Iterable[Any], what: str) -> None:
    if _WIDE_SPEC.search(fmt):
        raise RenderLimitExceeded(f"{what}: a width or precision of a million or more is not allowed")
    if _NESTED_SPEC.search(fmt) or "*" in fmt:
        _check_ints(b, args, what)


def _check_replace(b: Budget, text: Any, args: tuple[Any, ...], what: str) -> None:
    if isinstance(text, str) and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        grows = max(0, len(args[1]) - len(args[0]))
        count = text.count(args[0]) if args[0] else len(text) + 1
        b.allow_size(len(text) + count * grows, what)


def _check_join(b: Budget, sep: str, items: list[Any], what: str) -> None:
    total = len(sep) * max(0, len(items) - 1)
    for item in items:
        b.spend()
        total += len(item) if isinstance(item, str) else len(str(item))
        b.allow_size(total, what)


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps ``jinja_pass_arg`` (pass_context & co.)
    def run(*args: Any, **kwargs: Any) -> Any:
        b = budget()
        b.spend()
        what = f"the result of filter {name!r}"
        values = list(args[1:] if args and isinstance(args[0], _PASSED) else args)  # drop pass_context & co.
        value, rest = (values[0], values[1:]) if values else (None, [])
        if name not in _NUMERIC_FILTERS:
            _check_ints(b, [*rest, *kwargs.values()], what)
        if name == "replace":
            _check_replace(b, str(value) if value is not None else value, tuple(rest), what)
        elif name == "format" and isinstance(value, str):
            _check_format(b, value, [*rest, *kwargs.values()], what)
        elif name == "join" and isinstance(value, Iterable) and not isinstance(value, str | bytes):
            value = list(value)
            _check_join(b, str(rest[0]) if rest else str(kwargs.get("d", "")), value, what)
            args = tuple(value if a is values[0] else a for a in args) if values else args
        return b.produced(func(*args, **kwargs), what)

    return run


class _Budgeted(NodeTransformer):
    """Route every loop and every ``~`` through the environment, where they are charged."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("leoflow_iter"), [node.iter], [], None, None,
                               lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("leoflow_concat"), list(node.nodes), [], None, None,
                          lineno=node.lineno)


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with every operation charged to the budget of the render under way."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        tree = _Budgeted().visit(source)
        tree.set_environment(self)
        return super()._generate(tree, name, filename, defer_init)

    # -- hooks the compiled template calls -------------------------------------------------------
    def leoflow_iter(self, iterable: Any) -> Iterator[Any]:
        b = budget()
        for item in iterable:
            b.spend()
            yield item

    def leoflow_concat(self, *parts: Any) -> str:
        b = budget()
        texts = [str(p) for p in parts]
        b.allow_size(sum(len(t) for t in texts), "a ~ concatenation")
        return b.produced("".join(texts), "a ~ concatenation")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        b = budget()
        b.spend()
        what = f"the result of {operator!r}"
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                n = _sized(seq)
                if n is not None and isinstance(times, int):
                    b.allow_size(n * max(times, 0), what)
            if isinstance(left, int) and isinstance(right, int):
                b.allow_size((left.bit_length() + right.bit_length()) // 8, what)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                b.allow_size(abs(left).bit_length() * right // 8, what)
        elif operator == "+":
            a, c = _sized(left), _sized(right)
            if a is not None and c is not None:
                b.allow_size(a + c, what)
        elif operator == "%" and isinstance(left, str):
            _check_format(b, left, right if isinstance(right, tuple) else (right,), what)
        return b.produced(super().call_binop(context, operator, left, right), what)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        b = budget()
        b.spend()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "call")
        what = f"the result of {name}()"
        if isinstance(owner, str | bytes | list | tuple):
            _check_ints(b, [*args, *kwargs.values()], what)
            if name == "replace":
                _check_replace(b, owner, args, what)
            elif name == "join" and isinstance(owner, str) and args:
                items = list(args[0])
                _check_join(b, owner, items, what)
                args = (items, *args[1:])
        if name in ("format", "format_map") and getattr(__obj, "__wrapped__", None) is not None:
            fmt = getattr(__obj.__wrapped__, "__self__", "")
            if isinstance(fmt, str):
                _check_format(b, fmt, [*args, *kwargs.values()], what)
        return b.produced(super().call(__context, __obj, *args, **kwargs), what)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget().spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget().spend()
        return super().getitem(obj, argument)
