"""Checkpoint tables (upstream checkpoint migrations 0-5).

Creates ``checkpoint_migrations``, ``checkpoints``, ``checkpoint_blobs`` and ``checkpoint_writes``
as upstream's first migrations left them, with ``checkpoint_blobs.blob`` nullable (upstream v4:
a channel can have a version but no value, stored as the "empty" marker).

Every step is conditional (IF NOT EXISTS, DROP NOT NULL is a no-op when already nullable), so
this also adopts a database upstream's ``setup()`` created at any version, with no data change.

Revision ID: 0001_checkpoint_tables
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

from langgraph_sqlalchemy.migrations.environment import target_schema
from langgraph_sqlalchemy.migrations.upstream_tracking import record_versions

revision = "0001_checkpoint_tables"
down_revision = None
branch_labels = ("langgraph_sqlalchemy",)
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "checkpoint_migrations",
        sa.Column("v", sa.Integer(), nullable=False, autoincrement=False),
        sa.PrimaryKeyConstraint("v", name="checkpoint_migrations_pkey"),
        schema=schema,
        if_not_exists=True,
    )
    op.create_table(
        "checkpoints",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("parent_checkpoint_id", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("checkpoint", JSONB(), nullable=False),
        sa.Column("metadata", JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint(
            "thread_id", "checkpoint_ns", "checkpoint_id", name="checkpoints_pkey"
        ),
        schema=schema,
        if_not_exists=True,
    )
    op.create_table(
        "checkpoint_blobs",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("blob", BYTEA(), nullable=True),
        sa.PrimaryKeyConstraint(
            "thread_id", "checkpoint_ns", "channel", "version", name="checkpoint_blobs_pkey"
        ),
        schema=schema,
        if_not_exists=True,
    )
    op.create_table(
        "checkpoint_writes",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("blob", BYTEA(), nullable=False),
        sa.PrimaryKeyConstraint(
            "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx",
            name="checkpoint_writes_pkey",
        ),
        schema=schema,
        if_not_exists=True,
    )
    # Upstream created this column NOT NULL before its migration 4; adopting such a database
    # must relax it too.
    op.alter_column(
        "checkpoint_blobs", "blob", existing_type=BYTEA(), nullable=True, schema=schema
    )
    record_versions("checkpoint_migrations", range(0, 6), schema)


def downgrade() -> None:
    schema = target_schema()
    for name in ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "checkpoint_migrations"):
        op.drop_table(name, schema=schema, if_exists=True)
