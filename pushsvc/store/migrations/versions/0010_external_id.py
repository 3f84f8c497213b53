"""A department's own reference for each subscriber record it supplies (`external_id`), unique
within the department.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("external_id", sa.String(length=100), nullable=True))
    # A unique index rather than a constraint: SQLite adds a constraint only by copying the table,
    # and dropping the old copy with foreign keys on deletes every subscriber's groups and channels.
    op.create_index(
        op.f("ix_subscribers_department_id_external_id"), "subscribers", ["department_id", "external_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_subscribers_department_id_external_id"), "subscribers")
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("external_id")
