"""What "traced" means in the benchmarks: production's observability, switched on per turn.

- A ``before_cursor_execute`` listener on the engine, the hook OpenTelemetry's SQLAlchemy
  instrumentation, Sentry and most APM agents use. It does what such a hook does first: read
  the statement and its parameters and count them.
- Our own OpenTelemetry spans, on an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` (the
  processor production uses: spans are queued and exported from a background thread) and an
  exporter that drops the batches, so no network I/O is timed.

The spans are created only during the traced implementation's own turns (:func:`activate` /
:func:`deactivate`), so the untraced implementation pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import telemetry

__all__ = ["StatementCounter", "activate", "deactivate", "instrument"]

_PROVIDER: Any = None


class StatementCounter:
    """The listener: statements and parameter sets seen."""

    def __init__(self) -> None:
        self.statements = 0
        self.characters = 0

    def __call__(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.statements += 1
        self.characters += len(statement)


def instrument(engine: AsyncEngine) -> StatementCounter:
    counter = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    return counter


def _provider() -> Any:
    global _PROVIDER
    if _PROVIDER is None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Discard(SpanExporter):
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        _PROVIDER = TracerProvider()
        _PROVIDER.add_span_processor(BatchSpanProcessor(Discard()))
    return _PROVIDER


def activate() -> None:
    telemetry.use_tracer_provider(_provider())


def deactivate() -> None:
    telemetry.use_tracer_provider(None)
