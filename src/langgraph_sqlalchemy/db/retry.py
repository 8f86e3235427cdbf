"""How engine-bound calls ride out transient failures."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How engine-bound calls ride out transient failures (see :func:`~.errors.is_transient`).

    A call runs at most ``max_attempts`` times. Before attempt ``n + 1`` it sleeps
    ``min(max_backoff, initial_backoff * 2 ** (n - 1))`` seconds times a random factor in
    [0.5, 1): with the defaults 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2, 2, 2 s, so the tenth attempt
    starts 4.6 to 9.2 s after the first failure. That covers an immediate server restart (under
    a second of crash recovery here) and a connection reaper; a failover that takes longer needs
    a bigger budget. Set ``max_attempts=1`` to turn retries off.

    ``first_contact_seconds`` bounds the retries while the engine has never reached its server
    in this process: a wrong host, port or socket path, or a server that is not running, should
    fail fast with the address in the message, not after nine quiet retries. Once one call has
    succeeded, a refused connection means the server went away and gets the full budget.
    """

    max_attempts: int = 10
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    first_contact_seconds: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        for name in ("initial_backoff", "max_backoff", "first_contact_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"RetryPolicy.{name} must be a finite number >= 0, got {value!r}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``, with jitter so that many clients
        reconnecting after one restart do not arrive in lockstep."""
        base = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return float(base * (0.5 + random.random() / 2))
