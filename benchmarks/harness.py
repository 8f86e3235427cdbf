"""Timing machinery shared by every workload: interleaved rounds, medians, the table, the JSON.

A workload measures one *round* on one implementation and returns raw numbers (seconds per
operation, bytes, recall). The runner prepares every implementation once (untimed), runs one
warm-up round each (discarded), then ``rounds`` measured rounds in which the implementations take
turns: round r runs them in the order rotated by r (A,B,C / B,C,A / C,A,B ...), so a slow spell
of the machine (another process, a checkpoint, autovacuum) lands on all of them alike and no one
always goes first. Each number reported is the median of its rounds.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

OURS = "ours"
# Ours as production runs it: a before_cursor_execute listener on the engine (what OpenTelemetry's
# SQLAlchemy instrumentation, Sentry and most APMs attach) and our own OpenTelemetry spans on.
OURS_TRACED = "ours_traced"
UPSTREAM = "upstream"
MEMORY = "memory"
PLAIN_SQL = "sql"

IMPL_LABELS = {
    OURS: "langgraph-sqlalchemy",
    OURS_TRACED: "langgraph-sqlalchemy, traced",
    UPSTREAM: "upstream",
    MEMORY: "in-memory",
    PLAIN_SQL: "plain SQL",
}
TABLE_COLUMNS = (OURS, OURS_TRACED, UPSTREAM, MEMORY, PLAIN_SQL)


@dataclass(frozen=True)
class Metric:
    """One row of the table.

    ``raw`` values are what ``measure`` returns; ``show`` turns one into the unit displayed.
    ``compare`` says how the ratio column reads: ``"lower"`` (time, memory: upstream / ours, so
    > 1 means we are faster or smaller) or ``None`` (recall: no ratio, the values speak).
    """

    key: str
    label: str
    unit: str
    show: Callable[[float], float] = lambda raw: raw
    digits: int = 2
    compare: str | None = "lower"


def per_second(raw_seconds_per_op: float) -> float:
    return 1.0 / raw_seconds_per_op if raw_seconds_per_op > 0 else float("inf")


def milliseconds(raw_seconds: float) -> float:
    return raw_seconds * 1e3


def mebibytes(raw_bytes: float) -> float:
    return raw_bytes / (1024 * 1024)


@dataclass(frozen=True)
class Target:
    """A goal from the issue, checked against the medians of one workload.

    ``metric`` names the table row it is shown on; ``check`` returns None when it cannot be
    judged (an implementation did not run).
    """

    text: str
    metric: str
    check: Callable[[WorkloadResult], bool | None]


class Backend(Protocol):
    name: str
    # Called around each measured turn (the traced implementation turns its spans on there).
    activate: Callable[[], None] | None
    deactivate: Callable[[], None] | None


class Workload(Protocol):
    name: str
    needs: str  # "saver" or "store": the backend attribute the workload drives
    description: str
    impls: Sequence[str]
    metrics: Sequence[Metric]
    targets: Sequence[Target]

    async def prepare(self, backend: Any) -> None: ...

    async def measure(self, backend: Any) -> dict[str, float]: ...


@dataclass
class WorkloadResult:
    name: str
    description: str
    metrics: Sequence[Metric]
    samples: dict[str, dict[str, list[float]]] = field(
        default_factory=dict
    )  # metric -> impl -> raw
    targets: list[tuple[Target, bool | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def median(self, metric: str, impl: str) -> float | None:
        values = self.samples.get(metric, {}).get(impl)
        return statistics.median(values) if values else None

    def ratio(
        self, metric: str, numerator: str = UPSTREAM, denominator: str = OURS
    ) -> float | None:
        """``numerator / denominator`` on raw medians (for time: > 1 = denominator faster)."""
        top, bottom = self.median(metric, numerator), self.median(metric, denominator)
        if top is None or bottom is None or bottom == 0:
            return None
        return top / bottom

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description,
            "seconds": round(self.seconds, 2),
            "metrics": {},
            "targets": [
                {"target": t.text, "metric": t.metric, "met": met} for t, met in self.targets
            ],
            "notes": self.notes,
        }
        for metric in self.metrics:
            per_impl: dict[str, Any] = {}
            for impl, values in self.samples.get(metric.key, {}).items():
                med = statistics.median(values)
                per_impl[impl] = {
                    "median": metric.show(med),
                    "raw_median": med,
                    "raw_samples": values,
                }
            out["metrics"][metric.key] = {
                "label": metric.label,
                "unit": metric.unit,
                "ratio_upstream_over_ours": (
                    self.ratio(metric.key) if metric.compare == "lower" else None
                ),
                "ratio_upstream_over_ours_traced": (
                    self.ratio(metric.key, UPSTREAM, OURS_TRACED)
                    if metric.compare == "lower"
                    else None
                ),
                "by_impl": per_impl,
            }
        return out


async def run_workload(
    workload: Workload,
    backends: dict[str, Any],
    *,
    rounds: int,
    warmup: int = 1,
    log: Callable[[str], None] = print,
) -> WorkloadResult:
    started = time.perf_counter()
    active = [
        backends[name]
        for name in workload.impls
        if name in backends
        and (name == PLAIN_SQL or getattr(backends[name], workload.needs, None) is not None)
    ]
    result = WorkloadResult(workload.name, workload.description, workload.metrics)
    for backend in active:
        t0 = time.perf_counter()
        await workload.prepare(backend)
        log(f"  prepared {backend.name} in {time.perf_counter() - t0:.1f}s")
    for round_no in range(-warmup, rounds):
        shift = round_no % len(active)
        order = active[shift:] + active[:shift]
        for backend in order:
            # Garbage left by the previous implementation should not be collected on the next
            # one's clock.
            gc.collect()
            if backend.activate is not None:
                backend.activate()
            try:
                values = await workload.measure(backend)
            finally:
                if backend.deactivate is not None:
                    backend.deactivate()
            if round_no < 0:
                continue
            for key, value in values.items():
                result.samples.setdefault(key, {}).setdefault(backend.name, []).append(value)
        if round_no >= 0:
            log(f"  round {round_no + 1}/{rounds}: " + _round_summary(result, workload.metrics))
    result.targets = [(t, t.check(result)) for t in workload.targets]
    result.seconds = time.perf_counter() - started
    return result


def _round_summary(result: WorkloadResult, metrics: Sequence[Metric]) -> str:
    parts = []
    for metric in metrics:
        last = {
            impl: metric.show(values[-1])
            for impl, values in result.samples.get(metric.key, {}).items()
        }
        shown = ", ".join(f"{impl}={_fmt(v, metric.digits)}" for impl, v in last.items())
        parts.append(f"{metric.key}[{shown}]")
    return "; ".join(parts)


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown_table(results: Sequence[WorkloadResult]) -> str:
    header = (
        "| workload | metric | "
        + " | ".join(IMPL_LABELS[c] for c in TABLE_COLUMNS)
        + " | ours vs upstream | traced vs upstream | target | met |"
    )
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 6)]
    for res in results:
        for index, metric in enumerate(res.metrics):
            cells = []
            for impl in TABLE_COLUMNS:
                med = res.median(metric.key, impl)
                cells.append(_fmt(metric.show(med), metric.digits) if med is not None else "")
            ratio = res.ratio(metric.key) if metric.compare == "lower" else None
            ratio_cell = f"{ratio:.2f}x" if ratio is not None else ""
            traced = (
                res.ratio(metric.key, UPSTREAM, OURS_TRACED) if metric.compare == "lower" else None
            )
            traced_cell = f"{traced:.2f}x" if traced is not None else ""
            target_text, met = _target_for_row(res, index)
            lines.append(
                f"| {res.name if index == 0 else ''} | {metric.label} ({metric.unit}) | "
                + " | ".join(cells)
                + f" | {ratio_cell} | {traced_cell} | {target_text} | {_met_cell(met)} |"
            )
    return "\n".join(lines)


def _target_for_row(res: WorkloadResult, row: int) -> tuple[str, bool | str | None]:
    key = res.metrics[row].key
    mine = [(t.text, met) for t, met in res.targets if t.metric == key]
    if not mine:
        return "", ""
    mets = [met for _, met in mine]
    met: bool | None = None if None in mets else all(mets)
    return "; ".join(text for text, _ in mine), met


def _met_cell(met: bool | str | None) -> str:
    if met == "":
        return ""
    if met is None:
        return "n/a"
    return "yes" if met else "**no**"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    versions = {}
    for package in (
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-postgres",
        "langgraph-sqlalchemy",
        "opentelemetry-sdk",
        "psycopg",
        "psycopg-pool",
        "asyncpg",
        "sqlalchemy",
        "pgvector",
    ):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = None
    info["packages"] = versions
    return info


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, default=str)
        fh.write("\n")


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start
