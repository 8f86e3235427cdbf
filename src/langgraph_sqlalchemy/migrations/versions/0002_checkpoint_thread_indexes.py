"""Thread-id indexes on the checkpoint tables (upstream checkpoint migrations 6-8).

Every saver query filters by ``thread_id``; the primary keys lead with it too, but these
single-column indexes are upstream's and a database shared with upstream must carry them.

They are built ``CONCURRENTLY`` so that adding them to a busy production table does not block
writers. Postgres refuses CONCURRENTLY inside a transaction block, hence ``autocommit_block()``;
the programmatic upgrade therefore runs on a connection with no open transaction. An INVALID
index left by an interrupted earlier build (ours or upstream's) is rebuilt, not kept.

Revision ID: 0002_checkpoint_thread_indexes
Revises: 0001_checkpoint_tables
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from langgraph_sqlalchemy.migrations.concurrent_index import (
    create_index_concurrently,
    drop_index_concurrently,
)
from langgraph_sqlalchemy.migrations.environment import target_schema
from langgraph_sqlalchemy.migrations.upstream_tracking import forget_versions, record_versions

revision = "0002_checkpoint_thread_indexes"
down_revision = "0001_checkpoint_tables"
branch_labels = None
depends_on = None

_INDEXES = (
    ("checkpoints_thread_id_idx", "checkpoints"),
    ("checkpoint_blobs_thread_id_idx", "checkpoint_blobs"),
    ("checkpoint_writes_thread_id_idx", "checkpoint_writes"),
)


def upgrade() -> None:
    schema = target_schema()
    with op.get_context().autocommit_block():
        for index_name, table_name in _INDEXES:
            create_index_concurrently(index_name, table_name, ["thread_id"], schema)
    record_versions("checkpoint_migrations", range(6, 9), schema)


def downgrade() -> None:
    schema = target_schema()
    with op.get_context().autocommit_block():
        for index_name, table_name in _INDEXES:
            drop_index_concurrently(index_name, table_name, schema)
    forget_versions("checkpoint_migrations", range(6, 9), schema)
