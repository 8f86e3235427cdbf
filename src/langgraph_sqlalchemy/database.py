"""Where the database layer's public names lived before :mod:`langgraph_sqlalchemy.db`.

``from langgraph_sqlalchemy.database import RetryPolicy`` keeps working.
"""

from __future__ import annotations

from .db import POOLER_OPTION, Database, RetryPolicy, Rows, is_transient

__all__ = ["POOLER_OPTION", "Database", "RetryPolicy", "Rows", "is_transient"]
