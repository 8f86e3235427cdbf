# The repository's Alembic environment: the same one the installed package runs (see
# langgraph_sqlalchemy/migrations/environment.py), so `alembic upgrade head` from a checkout and
# `await saver.setup()` build identical schemas.
from logging.config import fileConfig

from alembic import context

from langgraph_sqlalchemy.migrations.environment import run

if context.config.config_file_name is not None and context.config.attributes.get(
    "configure_logger", True
):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

run()
