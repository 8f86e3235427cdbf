"""``checkpoint_thread_activity``: when each thread was last written, for thread retention.

Upstream's schema has no per-thread timestamp: the only clock in the checkpoint tables is the
``ts`` inside each checkpoint's JSON, and finding a thread's newest one means reading all of
them. Retention (``AsyncSQLAlchemySaver(ttl=...)``) needs "idle since" for every thread at once,
so the saver's put and put-writes statements now touch one row per thread here, in the same
statement (no extra round trip). The row also carries the thread's own TTL (the run config's
``checkpoint_ttl``) and when a ``keep_latest`` sweep last pruned it.

The table is ours only: upstream never writes it, and its writes never depend on it. Threads
that only upstream wrote have no row; the sweep finds them from the checkpoints and falls back to
their ``ts``. Nothing needs backfilling, so the revision is a plain ``CREATE TABLE`` (instant on
a database of any size) and adopting an upstream database stays a no-data-change operation.

Revision ID: 0007_checkpoint_thread_activity
Revises: 0006_store_value_index
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from langgraph_sqlalchemy.migrations.environment import target_schema

revision = "0007_checkpoint_thread_activity"
down_revision = "0006_store_value_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_thread_activity",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column(
            "last_activity",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
        sa.Column("ttl_minutes", sa.Double(), nullable=True),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("thread_id", name="checkpoint_thread_activity_pkey"),
        schema=target_schema(),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("checkpoint_thread_activity", schema=target_schema(), if_exists=True)
