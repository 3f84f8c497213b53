"""Following a policy, and its page's visitors counted per channel and day (issue 18).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_follows",
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("subscriber_id", Id, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_follows_policy_id")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], name=op.f("fk_policy_follows_subscriber_id"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("policy_id", "subscriber_id", name=op.f("pk_policy_follows")),
    )
    op.create_index(op.f("ix_policy_follows_subscriber_id"), "policy_follows", ["subscriber_id"])
    op.create_table(
        "policy_visits",
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("visitors", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_visits_policy_id")),
        sa.PrimaryKeyConstraint("policy_id", "channel", "day", name=op.f("pk_policy_visits")),
    )


def downgrade() -> None:
    op.drop_table("policy_visits")
    op.drop_index(op.f("ix_policy_follows_subscriber_id"), table_name="policy_follows")
    op.drop_table("policy_follows")
