"""Store TTLs: checking them (the sweeper that deletes expired items is :mod:`..sweeper`).

Expired rows are invisible with ``omit_expired`` (and revived by a read refresh without it);
either way they take space until swept. One sweep is one ``DELETE ... WHERE expires_at <
now()`` served by the partial ``expires_at`` index.

What a TTL may be is :mod:`..ttl_bounds`'s, shared with the saver's thread retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from langgraph.store.base import TTLConfig

from ..errors import InvalidInputError
from ..sweeper import TTLSweeper
from ..ttl_bounds import MAX_TTL_MINUTES, check_sweep_interval, check_ttl

__all__ = [
    "MAX_TTL_MINUTES",
    "TTL_CONFIG_KEYS",
    "TTLSweeper",
    "check_sweep_interval",
    "check_ttl",
    "check_ttl_config",
]


TTL_CONFIG_KEYS = frozenset(
    {"default_ttl", "refresh_on_read", "sweep_interval_minutes", "omit_expired"}
)


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
