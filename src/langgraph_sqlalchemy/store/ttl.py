"""Store TTLs: checking them (the sweeper that deletes expired items is :mod:`..sweeper`).

Expired rows are invisible with ``omit_expired`` (and revived by a read refresh without it);
either way they take space until swept. One sweep is one ``DELETE ... WHERE expires_at <
now()`` served by the partial ``expires_at`` index.

A TTL is a number of minutes, ``0 <= ttl <= MAX_TTL_MINUTES``. The bound exists because the
expiry is ``now() + ttl`` computed by the server: an interval holds at most 2**63
microseconds and a ``timestamptz`` ends in the year 294276, both about 1.5e11 minutes away,
and beyond them the statement fails with a server error. A billion minutes (about 1,900
years) is far inside both, and still fits the integer ``ttl_minutes`` column of databases
upstream created.
"""

from __future__ import annotations

import decimal
import fractions
import math
from collections.abc import Mapping
from typing import cast

from langgraph.store.base import TTLConfig

from ..errors import InvalidInputError
from ..sweeper import TTLSweeper

__all__ = [
    "MAX_TTL_MINUTES",
    "TTL_CONFIG_KEYS",
    "TTLSweeper",
    "check_sweep_interval",
    "check_ttl",
    "check_ttl_config",
]


MAX_TTL_MINUTES = 1_000_000_000

TTL_CONFIG_KEYS = frozenset(
    {"default_ttl", "refresh_on_read", "sweep_interval_minutes", "omit_expired"}
)


def _minutes(value: object) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, decimal.Decimal, fractions.Fraction)):
        try:
            return float(value)
        except (OverflowError, ValueError):  # a huge int or a signalling Decimal NaN
            return math.inf
    return None


def check_ttl(ttl: object, *, what: str = "ttl") -> float | None:
    """A TTL in minutes (None: no expiry) as the float the statements bind."""
    if ttl is None:
        return None
    minutes = _minutes(ttl)
    if minutes is None or not 0 <= minutes <= MAX_TTL_MINUTES:
        raise InvalidInputError(
            f"{what} must be a number of minutes from 0 to {MAX_TTL_MINUTES:,} (about 1,900 "
            f"years) or None, got {ttl!r}"
        )
    return minutes


def check_sweep_interval(interval: object, *, what: str = "sweep_interval_minutes") -> float:
    """A sweep interval in minutes: positive and finite (NaN would make the sweeper's
    timeouts meaningless)."""
    minutes = _minutes(interval)
    if minutes is None or not 0 < minutes <= MAX_TTL_MINUTES:
        raise InvalidInputError(
            f"{what} must be a number of minutes above 0 and at most {MAX_TTL_MINUTES:,}, "
            f"got {interval!r}"
        )
    return minutes


def check_ttl_config(ttl: object) -> TTLConfig | None:
    """Upstream's ``TTLConfig`` checked; the same mapping object is returned, so that the
    store's ``ttl_config`` is the very dict the caller passed (and may change later)."""
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise InvalidInputError(f"ttl must be a TTLConfig dict, got {type(ttl).__name__}")
    unknown = set(ttl) - TTL_CONFIG_KEYS
    if unknown:
        raise InvalidInputError(
            f"unknown TTLConfig keys: {sorted(map(str, unknown))} "
            f"(known: {sorted(TTL_CONFIG_KEYS)})"
        )
    check_ttl(ttl.get("default_ttl"), what="TTLConfig default_ttl")
    interval = ttl.get("sweep_interval_minutes")
    if interval is not None:
        check_sweep_interval(interval, what="TTLConfig sweep_interval_minutes")
    return cast(TTLConfig, ttl)
