"""Comparing the public surface of an upstream class with ours, mechanically.

A *surface* is every public member of a class (methods, sync and async, properties, class and
instance attributes, plus the dunders a user calls: ``__init__``, context-manager methods) with,
for callables, every parameter's name, kind (positional / keyword-only), default and
annotation, and the return annotation. :func:`compare` turns two surfaces into a set of
one-line differences, each a stable string such as::

    AsyncSQLAlchemyStore.__init__(pipe): upstream only
    AsyncSQLAlchemyStore.start_ttl_sweeper(sweep_interval_minutes): annotation 'float | None',
        upstream 'int | None'

so that a test can hold the differences we keep on purpose in a table and fail on any other,
in either direction. Annotations are resolved and rendered canonically (union members sorted,
``typing.X`` and ``collections.abc.X`` alike, upstream's class names replaced by ours), so only
real type changes show.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ClassPair",
    "Member",
    "Surface",
    "collect_surface",
    "compare",
    "load",
    "render_annotation",
]

# Dunders that are part of what users call.
_PUBLIC_DUNDERS = ("__init__", "__aenter__", "__aexit__", "__enter__", "__exit__")


@dataclass(frozen=True)
class ClassPair:
    """An upstream class and ours, as ``"module:Name"`` paths (one line per pair)."""

    upstream: str
    ours: str

    @property
    def upstream_name(self) -> str:
        return self.upstream.rsplit(":", 1)[1]

    @property
    def ours_name(self) -> str:
        return self.ours.rsplit(":", 1)[1]


def load(path: str) -> Any | None:
    """The object at ``"module:Name"``, or None when the module or the name does not exist."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    try:
        return getattr(module, name)
    except AttributeError:
        return None


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str
    default: str | None  # repr of the default; None: no default
    annotation: str


@dataclass(frozen=True)
class Member:
    kind: str  # method, async method, async iterator method, classmethod, property, attribute
    parameters: tuple[Parameter, ...] = ()
    returns: str | None = None


@dataclass
class Surface:
    name: str
    members: dict[str, Member] = field(default_factory=dict)


# --- annotations ---------------------------------------------------------------------------------


def _qualname(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or obj)


def render_annotation(annotation: Any, renames: Mapping[str, str]) -> str:
    """A canonical text for a (resolved) annotation."""
    if annotation is inspect.Parameter.empty:
        return ""
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, str):
        # Unresolvable: compare the text, unions in a canonical order.
        parts = sorted(part.strip() for part in annotation.split("|"))
        return " | ".join(renames.get(part, part) for part in parts)
    if isinstance(annotation, typing.ForwardRef):
        return render_annotation(annotation.__forward_arg__, renames)
    if isinstance(annotation, typing.TypeVar):
        return annotation.__name__
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, list):
        return "[" + ", ".join(render_annotation(a, renames) for a in annotation) + "]"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(sorted(render_annotation(a, renames) for a in args))
    if origin is typing.Literal:
        return "Literal[" + ", ".join(sorted(repr(a) for a in args)) + "]"
    if origin is not None:
        name = renames.get(_qualname(origin), _qualname(origin))
        if not args:
            return name
        return f"{name}[{', '.join(render_annotation(a, renames) for a in args)}]"
    name = _qualname(annotation)
    return renames.get(name, name)


def _resolved_hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        # Some names exist only under TYPE_CHECKING: resolve what can be, one by one.
        hints: dict[str, Any] = {}
        namespace = getattr(inspect.unwrap(function), "__globals__", {})
        for name, text in getattr(inspect.unwrap(function), "__annotations__", {}).items():
            try:
                hints[name] = eval(text, namespace) if isinstance(text, str) else text
            except Exception:
                hints[name] = text
        return hints


def _default(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    return repr(value)


def _callable_member(kind: str, function: Any, renames: Mapping[str, str]) -> Member:
    signature = inspect.signature(function)
    hints = _resolved_hints(function)
    parameters = tuple(
        Parameter(
            name=p.name,
            kind=p.kind.name,
            default=_default(p.default),
            annotation=render_annotation(hints.get(p.name, p.annotation), renames),
        )
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
    )
    returns = render_annotation(hints.get("return", signature.return_annotation), renames)
    return Member(kind=kind, parameters=parameters, returns=returns)


def _member(cls: type, name: str, renames: Mapping[str, str]) -> Member:
    static = inspect.getattr_static(cls, name)
    if isinstance(static, property):
        return Member(kind="property")
    if isinstance(static, classmethod):
        return _callable_member("classmethod", getattr(cls, name), renames)
    if isinstance(static, staticmethod):
        return _callable_member("staticmethod", getattr(cls, name), renames)
    if inspect.isfunction(static):
        function = inspect.unwrap(static)
        if inspect.isasyncgenfunction(function):
            kind = "async iterator method"
        elif inspect.iscoroutinefunction(function):
            kind = "async method"
        else:
            kind = "method"
        return _callable_member(kind, static, renames)
    # Slots, class-level values, descriptors: data.
    return Member(kind="attribute")


def _public(name: str) -> bool:
    return not name.startswith("_") or name in _PUBLIC_DUNDERS


def collect_surface(
    cls: type, instance_attributes: Iterable[str] = (), renames: Mapping[str, str] | None = None
) -> Surface:
    """The public surface of ``cls``; ``instance_attributes``: public names an instance has
    beyond its class's (set in ``__init__``)."""
    renames = renames or {}
    surface = Surface(name=cls.__name__)
    for name in dir(cls):
        if _public(name):
            surface.members[name] = _member(cls, name, renames)
    for name in instance_attributes:
        if _public(name) and name not in surface.members:
            surface.members[name] = Member(kind="attribute")
    return surface


async def instance_attributes(cls: type, url: str) -> set[str]:
    """The public attribute names of an instance of ``cls`` made by ``cls.from_conn_string(url)``
    (a sync context manager is entered in a worker thread)."""

    def names(instance: Any) -> set[str]:
        return {n for n in dir(instance) if not n.startswith("_")}

    manager = cls.from_conn_string(url)
    if hasattr(manager, "__aenter__"):
        async with manager as instance:
            return names(instance)

    def enter_sync() -> set[str]:
        with contextlib.ExitStack() as stack:
            return names(stack.enter_context(manager))

    return await asyncio.to_thread(enter_sync)


# --- comparison ----------------------------------------------------------------------------------


def _compare_parameters(
    prefix: str, upstream: tuple[Parameter, ...], ours: tuple[Parameter, ...]
) -> set[str]:
    found: set[str] = set()
    theirs_by_name = {p.name: p for p in upstream}
    ours_by_name = {p.name: p for p in ours}
    for name in theirs_by_name.keys() - ours_by_name.keys():
        found.add(f"{prefix}({name}): upstream only")
    for name in ours_by_name.keys() - theirs_by_name.keys():
        found.add(f"{prefix}({name}): ours only")
    for name in theirs_by_name.keys() & ours_by_name.keys():
        a, b = theirs_by_name[name], ours_by_name[name]
        if a.kind != b.kind:
            found.add(f"{prefix}({name}): kind {b.kind}, upstream {a.kind}")
        if a.default != b.default:
            found.add(f"{prefix}({name}): default {b.default}, upstream {a.default}")
        if a.annotation != b.annotation:
            found.add(f"{prefix}({name}): annotation '{b.annotation}', upstream '{a.annotation}'")
    positional = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
    upstream_order = [p.name for p in upstream if p.kind in positional]
    our_order = [p.name for p in ours if p.kind in positional]
    shared = [n for n in upstream_order if n in our_order]
    if shared != [n for n in our_order if n in upstream_order]:
        found.add(f"{prefix}: positional order {our_order}, upstream {upstream_order}")
    return found


def compare(upstream: Surface, ours: Surface) -> set[str]:
    """Every difference between two surfaces, as stable one-line strings."""
    found: set[str] = set()
    for name in upstream.members.keys() - ours.members.keys():
        found.add(f"{ours.name}.{name}: upstream only")
    for name in ours.members.keys() - upstream.members.keys():
        found.add(f"{ours.name}.{name}: ours only")
    for name in sorted(upstream.members.keys() & ours.members.keys()):
        a, b = upstream.members[name], ours.members[name]
        prefix = f"{ours.name}.{name}"
        if a.kind != b.kind:
            found.add(f"{prefix}: {b.kind}, upstream {a.kind}")
            continue
        found |= _compare_parameters(prefix, a.parameters, b.parameters)
        if a.returns != b.returns:
            found.add(f"{prefix}: returns '{b.returns}', upstream '{a.returns}'")
    return found


def renames_for(pairs: Iterable[ClassPair]) -> dict[str, str]:
    """Upstream class names -> ours, so that ``-> AsyncPostgresStore`` equals ours."""
    return {pair.upstream_name: pair.ours_name for pair in pairs}


def describe(differences: Iterable[str]) -> str:
    return "\n".join(f"  {d}" for d in sorted(differences)) or "  (none)"
