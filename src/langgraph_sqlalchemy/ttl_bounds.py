"""What a TTL or a sweep interval may be, for the store's items and the saver's threads alike.

A TTL is a number of minutes, ``0 <= ttl <= MAX_TTL_MINUTES``. The bound exists because the
server computes with it: an item expires at ``now() + ttl`` and a thread is due when its last
write is before ``now() - ttl``; an interval holds at most 2**63 microseconds and a
``timestamptz`` spans 4713 BC to 294276 AD, both about 1.5e11 minutes from today, and beyond
them the statement fails with a server error. A billion minutes (about 1,900 years) is far
inside both, and still fits the integer ``ttl_minutes`` column of store tables upstream created.
A sweep interval is above 0 (NaN or 0 would make a sweeper's timeouts meaningless) and at most
the same bound.
"""

from __future__ import annotations

import math
import numbers

from .errors import InvalidInputError
from .input_errors import InvalidInputTypeError

__all__ = ["MAX_TTL_MINUTES", "check_sweep_interval", "check_ttl"]

MAX_TTL_MINUTES = 1_000_000_000


def _minutes(value: object) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None.

    Any ``numbers.Real`` (``Decimal`` too, and NumPy's scalars, which register there) and any
    object with ``__float__``, as upstream computes with whatever multiplies like a number.
    """
    if isinstance(value, (bool, str, bytes, complex)):
        return None
    if isinstance(value, numbers.Real) or hasattr(type(value), "__float__"):
        try:
            return float(value)  # type: ignore[arg-type]
        except (OverflowError, ValueError):  # a huge int or a signalling Decimal NaN
            return math.inf
        except TypeError:
            return None
    return None


def _refuse(value: object, minutes: float | None, message: str) -> None:
    # Not a number at all: upstream fails with TypeError there, and the error is one too (and
    # a ValueError, as every refused TTL of ours); a number out of range is a ValueError.
    if minutes is None:
        raise InvalidInputTypeError(f"{message}, got {type(value).__name__} {value!r}")
    raise InvalidInputError(f"{message}, got {value!r}")


def check_ttl(ttl: object, *, what: str = "ttl") -> float | None:
    """A TTL in minutes (None: no expiry) as the float the statements bind."""
    if ttl is None:
        return None
    minutes = _minutes(ttl)
    if minutes is None or not 0 <= minutes <= MAX_TTL_MINUTES:
        _refuse(
            ttl,
            minutes,
            f"{what} must be a number of minutes from 0 to {MAX_TTL_MINUTES:,} (about 1,900 "
            "years) or None",
        )
    assert minutes is not None
    return minutes


def check_sweep_interval(interval: object, *, what: str = "sweep_interval_minutes") -> float:
    """A sweep interval in minutes."""
    minutes = _minutes(interval)
    if minutes is None or not 0 < minutes <= MAX_TTL_MINUTES:
        _refuse(
            interval,
            minutes,
            f"{what} must be a number of minutes above 0 and at most {MAX_TTL_MINUTES:,}",
        )
    assert minutes is not None
    return minutes
