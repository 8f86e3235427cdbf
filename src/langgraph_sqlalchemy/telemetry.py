"""OpenTelemetry spans for saver and store operations (optional: the ``otel`` extra).

With ``opentelemetry-api`` installed (``pip install "langgraph-sqlalchemy[otel]"``) every public
saver and store operation (``aput``, ``aget_tuple``, ``alist``, ``abatch``, ``aget``,
``asearch`` ...) is one CLIENT span named ``"<operation> <table>"`` with the attributes of
OpenTelemetry's database-client semantic conventions: ``db.system.name`` (``postgresql``),
``db.operation.name``, ``db.collection.name``, ``db.namespace`` (the database), and on failure
``error.type`` and ``db.response.status_code`` (the SQLSTATE). Retries and waits for a pooled
connection are span events. Without an SDK configured the API's no-op tracer makes all of this
nearly free; without the package nothing here runs at all.

Thread ids, checkpoint namespaces and store namespaces identify users' data, so they are
recorded only after :func:`record_identifiers` (``langgraph.thread_id``,
``langgraph.checkpoint_ns``, ``langgraph.store.namespace``).

The statements themselves are traced by whatever watches the host's engine (OpenTelemetry's
SQLAlchemy instrumentation, an APM agent): they run inside these spans, so they nest under them.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from typing import Any, TypeVar

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the optional extra is not installed
    _trace = None  # type: ignore[assignment]
    _context = None  # type: ignore[assignment]

__all__ = [
    "WaitingCallers",
    "operation_span",
    "record_event",
    "record_identifiers",
    "traced",
    "traced_iterator",
    "use_tracer_provider",
]

_SETTINGS: dict[str, Any] = {"identifiers": False, "provider": None, "tracer": None}
T = TypeVar("T")


def record_identifiers(enabled: bool = True) -> None:
    """Record thread ids and namespaces as span attributes (off by default: they can be
    personal data, and they make every span's attribute set unbounded)."""
    _SETTINGS["identifiers"] = bool(enabled)


def use_tracer_provider(provider: Any | None) -> None:
    """Create spans with ``provider`` (an OpenTelemetry ``TracerProvider``) instead of the
    global one; None goes back to the global provider."""
    _SETTINGS["provider"] = provider
    _SETTINGS["tracer"] = None


def _tracer() -> Any | None:
    """The tracer to use now, or None when no OpenTelemetry SDK is configured.

    Without an SDK the global provider is the API's proxy (or no-op) provider, whose spans
    record nothing; skipping them saves each call the span's context switching. Checked on
    every call, so an SDK configured later is picked up at once.
    """
    if _trace is None:
        return None
    provider = _SETTINGS["provider"]
    if provider is None:
        provider = _trace.get_tracer_provider()
        if isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)):
            return None
    # Kept per provider: getting a tracer costs more than a span.
    cached = _SETTINGS["tracer"]
    if cached is None or cached[0] is not provider:
        from . import __version__

        cached = _SETTINGS["tracer"] = (
            provider,
            provider.get_tracer("langgraph_sqlalchemy", __version__),
        )
    return cached[1]


def _base_attributes(owner: Any, operation: str, collection: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "db.system.name": "postgresql",
        "db.operation.name": operation,
        "db.collection.name": collection,
    }
    db = getattr(owner, "db", None)
    if db is not None:
        attributes.update(db.span_attributes)
        schema = getattr(owner, "schema", None)
        if isinstance(schema, str) and schema:
            # The conventions join namespace parts from the most general, with "|".
            attributes["db.namespace"] = f"{attributes.get('db.namespace', '')}|{schema}"
    return attributes


def _record_failure(span: Any, exc: BaseException) -> None:
    from .db.errors import sqlstate

    span.set_attribute("error.type", type(exc).__qualname__)
    code = sqlstate(exc)
    if code is not None:
        span.set_attribute("db.response.status_code", code)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


@contextmanager
def operation_span(
    owner: Any,
    operation: str,
    collection: str,
    identifiers: Mapping[str, Any] | None = None,
    parents: Sequence[Any] = (),
) -> Iterator[Any]:
    """One CLIENT span around an operation of ``owner`` (a saver or store), as the current
    span; None inside when OpenTelemetry (its package or an SDK) is not there."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attributes = _base_attributes(owner, operation, collection)
    if identifiers and _SETTINGS["identifiers"]:
        attributes.update({k: v for k, v in identifiers.items() if v is not None})
    # ``parents``: the contexts of callers this operation serves (queued store operations):
    # the span goes under the first and links the others.
    links = [_trace.Link(_trace.get_current_span(p).get_span_context()) for p in parents[1:]]
    with tracer.start_as_current_span(
        f"{operation} {collection}",
        context=parents[0] if parents else None,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                _record_failure(span, exc)
            raise


def traced(
    operation: str,
    collection: str,
    identifiers: Callable[..., Mapping[str, Any]] | None = None,
    parents: Callable[..., Sequence[Any]] | None = None,
) -> Callable[
    [Callable[..., Coroutine[Any, Any, T]]], Callable[..., Coroutine[Any, Any, T]]
]:
    """Decorate an async method: one span per call (see :func:`operation_span`).

    ``identifiers(*args, **kwargs)`` gives the identifying attributes, asked for only when
    :func:`record_identifiers` is on. ``parents(self, *args, **kwargs)`` gives the contexts of
    the callers the call serves, when it runs on their behalf elsewhere (a store batch).
    """

    def decorate(
        method: Callable[..., Coroutine[Any, Any, T]],
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        if _trace is None:
            return method

        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
            if _tracer() is None:
                return await method(self, *args, **kwargs)
            ids = (
                _safe_identifiers(identifiers, args, kwargs)
                if identifiers is not None and _SETTINGS["identifiers"]
                else None
            )
            callers = parents(self, *args, **kwargs) if parents is not None else ()
            with operation_span(self, operation, collection, ids, callers):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate


def traced_iterator(
    operation: str,
    collection: str,
    identifiers: Callable[..., Mapping[str, Any]] | None = None,
) -> Callable[[Callable[..., AsyncIterator[T]]], Callable[..., AsyncIterator[T]]]:
    """Decorate an async-generator method: one span from the first item to exhaustion.

    The span is not made current across ``yield`` (the consumer's code runs there and its
    context must not change under it); it is current only while the generator itself runs.
    """

    def decorate(method: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
        if _trace is None:
            return method

        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[T]:
            assert _trace is not None
            inner = method(self, *args, **kwargs)
            tracer = _tracer()
            if tracer is None:
                try:
                    async for item in inner:
                        yield item
                finally:
                    aclose = getattr(inner, "aclose", None)
                    if aclose is not None:
                        await aclose()
                return
            attributes = _base_attributes(self, operation, collection)
            if identifiers is not None and _SETTINGS["identifiers"]:
                ids = _safe_identifiers(identifiers, args, kwargs) or {}
                attributes.update({k: v for k, v in ids.items() if v is not None})
            span = tracer.start_span(
                f"{operation} {collection}", kind=SpanKind.CLIENT, attributes=attributes
            )
            try:
                while True:
                    with _trace.use_span(
                        span,
                        end_on_exit=False,
                        record_exception=False,
                        set_status_on_exception=False,
                    ):
                        try:
                            item = await inner.__anext__()
                        except StopAsyncIteration:
                            return
                    yield item
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    _record_failure(span, exc)
                raise
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                span.end()

        return wrapper

    return decorate


def _safe_identifiers(
    identifiers: Callable[..., Mapping[str, Any]], args: Any, kwargs: Any
) -> Mapping[str, Any] | None:
    # Bad input is the operation's to refuse, with its own message; never the span's.
    try:
        found = identifiers(*args, **kwargs)
    except Exception:
        return None
    return {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in found.items()}


def record_event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span (a retry, a wait for a connection), if one records."""
    if _trace is None:
        return
    span = _trace.get_current_span()
    if span.is_recording():
        span.add_event(name, dict(attributes))


# How long a noted caller may wait for its batch before it is forgotten (its op was dropped:
# deduplicated into another caller's, or cancelled).
_WAIT_LIMIT_SECONDS = 60.0
_MAX_WAITING = 4096


class WaitingCallers:
    """The tracing contexts of callers whose operations wait in a store's batch queue.

    LangGraph's batched store runs queued operations in a task of its own, created with the
    context of the store's creation, not of its callers. Each public store call notes its
    context under a key describing its operation; the batch that runs those operations takes
    them back, so that its span goes under its (first) caller and links the others. Nothing
    is noted while no tracer records.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[tuple[Hashable, Any, float]] = deque()

    def note(self, key: Hashable) -> None:
        if _context is None or _tracer() is None:
            return
        self._entries.append((key, _context.get_current(), time.monotonic()))
        if len(self._entries) > _MAX_WAITING:
            self._entries.popleft()

    def take(self, keys: Sequence[Hashable]) -> list[Any]:
        """The noted contexts of these operations' callers (every caller of a key: identical
        operations are run once for all of them), in the order they were noted."""
        if not self._entries:
            return []
        wanted = set(keys)
        oldest = time.monotonic() - _WAIT_LIMIT_SECONDS
        found: list[Any] = []
        kept: deque[tuple[Hashable, Any, float]] = deque()
        for key, context, noted in self._entries:
            if noted < oldest:
                continue
            if key in wanted:
                found.append(context)
            else:
                kept.append((key, context, noted))
        self._entries = kept
        return found
