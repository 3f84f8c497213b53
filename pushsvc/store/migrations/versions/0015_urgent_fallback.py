"""The urgent lane and the fallback channel: a policy's priority (normal | urgent) and fallback
({channel: next channel}); a ledger row's `fallback_of` (the row whose failure it falls back from);
the department's right to publish urgent policies.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # add_column, not a batch: SQLite adds a nullable column, or one with a constant default, in place.
    op.add_column("departments", sa.Column("may_send_urgent", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("policies", sa.Column("priority", sa.String(length=8), server_default="normal", nullable=False))
    op.add_column("policies", sa.Column("fallback", Json, nullable=True))
    op.add_column("deliveries", sa.Column("fallback_of", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("fallback_of")
    with op.batch_alter_table("policies") as batch_op:
        batch_op.drop_column("fallback")
        batch_op.drop_column("priority")
    with op.batch_alter_table("departments") as batch_op:
        batch_op.drop_column("may_send_urgent")
