# Alembic loads this file by path; the logic lives in an importable module so the packaged
# script directory and the repo's alembic/ directory run exactly the same environment.
from langgraph_sqlalchemy.migrations.environment import run

run()
