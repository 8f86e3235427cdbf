"""``store.ttl_minutes`` as DOUBLE PRECISION: fractional TTLs survive a refresh.

Upstream declares the column INTEGER, so a TTL of 0.1 minutes is stored as 0 and the first
refresh (``expires_at = now() + ttl_minutes minutes``) expires the item on the spot. With a
double the stored TTL is exact. Upstream's statements keep working on it: it binds plain numbers
and refreshes with ``ttl_minutes || ' minutes'``, which Postgres reads for fractional values too.

Integer values convert exactly, so adopting an upstream database changes no data. The type change
rewrites the table once.

Revision ID: 0005_store_fractional_ttl
Revises: 0004_store_tables
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from langgraph_sqlalchemy.migrations.environment import target_schema

revision = "0005_store_fractional_ttl"
down_revision = "0004_store_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column(
        "store",
        "ttl_minutes",
        type_=sa.Double(),
        existing_type=sa.Integer(),
        existing_nullable=True,
        schema=target_schema(),
    )


def downgrade() -> None:
    # Rounds up, so a fractional TTL never becomes 0 (immediately expired) on the way down.
    op.alter_column(
        "store",
        "ttl_minutes",
        type_=sa.Integer(),
        existing_type=sa.Double(),
        existing_nullable=True,
        postgresql_using="ceil(ttl_minutes)::integer",
        schema=target_schema(),
    )
