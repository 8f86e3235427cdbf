"""Store tables (upstream store migrations 0-3) and the vector tracking table.

``store`` holds long-term memory items keyed by (prefix, key), where prefix is the namespace's
labels joined by ".". ``store_prefix_idx`` uses ``text_pattern_ops`` so that namespace-prefix
matches (``prefix LIKE 'a.b.%'``) can use the index under any collation; it is built
CONCURRENTLY because upstream builds it that way on tables that may already be large.
``idx_store_expires_at`` is partial: only items with a TTL are ever swept.

``vector_migrations`` is created empty: the vector layer itself (``store_vectors`` with its
configured dimensions and ANN index) is made by the store's ``setup()``, which records upstream's
vector migration numbers there. Upstream's ``setup()`` treats an empty table as "run them all".

Revision ID: 0004_store_tables
Revises: 0003_checkpoint_writes_task_path
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from langgraph_sqlalchemy.migrations.concurrent_index import create_index_concurrently
from langgraph_sqlalchemy.migrations.environment import target_schema
from langgraph_sqlalchemy.migrations.upstream_tracking import record_versions

revision = "0004_store_tables"
down_revision = "0003_checkpoint_writes_task_path"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    for name in ("store_migrations", "vector_migrations"):
        op.create_table(
            name,
            sa.Column("v", sa.Integer(), nullable=False, autoincrement=False),
            sa.PrimaryKeyConstraint("v", name=f"{name}_pkey"),
            schema=schema,
            if_not_exists=True,
        )
    op.create_table(
        "store",
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.current_timestamp()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ttl_minutes", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("prefix", "key", name="store_pkey"),
        schema=schema,
        if_not_exists=True,
    )
    # Upstream databases from before its store migration 2 lack the TTL columns.
    op.add_column(
        "store",
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
        if_not_exists=True,
    )
    op.add_column(
        "store",
        sa.Column("ttl_minutes", sa.Integer(), nullable=True),
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(
        "idx_store_expires_at",
        "store",
        ["expires_at"],
        schema=schema,
        if_not_exists=True,
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    with op.get_context().autocommit_block():
        create_index_concurrently(
            "store_prefix_idx",
            "store",
            ["prefix"],
            schema,
            postgresql_ops={"prefix": "text_pattern_ops"},
        )
    # After the index: the rows commit with our version bump, so upstream never sees its
    # migration 1 as done while the index is missing.
    record_versions("store_migrations", range(0, 4), schema)


def downgrade() -> None:
    schema = target_schema()
    # The run-time vector layer hangs off ``store`` by foreign key; it goes with it.
    for name in ("store_vectors", "store", "store_migrations", "vector_migrations"):
        op.drop_table(name, schema=schema, if_exists=True)
