"""``python -m langgraph_sqlalchemy``: the same command as ``langgraph-sqlalchemy``."""

from langgraph_sqlalchemy.cli import main

raise SystemExit(main())
