"""The database layer: how every statement of this library reaches PostgreSQL.

- :mod:`.database`: :class:`Database` (engine or host connection, transactions, savepoints,
  the retry loop) and the one driver shortcut it may take;
- :mod:`.statements`: Core statements compiled once and run with their values (the only place
  that touches compiled forms);
- :mod:`.errors`: the SQLSTATE reader, the transient-failure test and the error translator;
- :mod:`.retry`: the retry policy;
- :mod:`.locks`: the polled advisory lock that migrations and the vector layer share.

Nothing here imports the saver or the store.
"""

from __future__ import annotations

from .database import OBSERVABLE_OPTION, POOLER_OPTION, Database, unobserved
from .errors import is_transient, sqlstate, translate
from .retry import RetryPolicy
from .statements import BoundStatement, Rows, Statement

__all__ = [
    "OBSERVABLE_OPTION",
    "POOLER_OPTION",
    "BoundStatement",
    "Database",
    "RetryPolicy",
    "Rows",
    "Statement",
    "is_transient",
    "sqlstate",
    "translate",
    "unobserved",
]
