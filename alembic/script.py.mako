"""${message}

Explain the production reason for this revision here: what breaks without it, and how it
behaves on databases created by upstream's setup() at any of its versions. Released revisions
are never edited: fix forward with a new one.

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
from langgraph_sqlalchemy.migrations.environment import target_schema

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    schema = target_schema()
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    schema = target_schema()
    ${downgrades if downgrades else "pass"}
