"""The change log the live reach index follows: which subscribers' audience data changed.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscriber_changes",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("subscriber_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_subscriber_changes")),
    )


def downgrade() -> None:
    op.drop_table("subscriber_changes")
