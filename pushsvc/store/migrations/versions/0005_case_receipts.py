"""SMS receipts for case notifications: when one was delivered, and an index to find it by message id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case_notifications") as batch_op:
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_case_notifications_provider_ref", ["provider_ref"])


def downgrade() -> None:
    with op.batch_alter_table("case_notifications") as batch_op:
        batch_op.drop_index("ix_case_notifications_provider_ref")
        batch_op.drop_column("delivered_at")
