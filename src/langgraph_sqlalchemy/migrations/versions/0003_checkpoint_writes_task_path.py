"""``checkpoint_writes.task_path`` (upstream checkpoint migration 9).

Pending writes are ordered by (task_path, task_id, idx) so that a superstep's writes replay in
the order the tasks were scheduled, not in task-id (random) order. Rows written before the
column existed get ``''``, which sorts them first, as upstream does.

Revision ID: 0003_checkpoint_writes_task_path
Revises: 0002_checkpoint_thread_indexes
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from langgraph_sqlalchemy.migrations.environment import target_schema
from langgraph_sqlalchemy.migrations.upstream_tracking import forget_versions, record_versions

revision = "0003_checkpoint_writes_task_path"
down_revision = "0002_checkpoint_thread_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.add_column(
        "checkpoint_writes",
        sa.Column("task_path", sa.Text(), nullable=False, server_default=sa.text("''")),
        schema=schema,
        if_not_exists=True,
    )
    record_versions("checkpoint_migrations", [9], schema)


def downgrade() -> None:
    schema = target_schema()
    op.drop_column("checkpoint_writes", "task_path", schema=schema, if_exists=True)
    forget_versions("checkpoint_migrations", [9], schema)
