"""A policy's life after publishing: revisions, repeal, lapse and the notices about them; digests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch_op:
        batch_op.add_column(sa.Column("notify_on_lapse", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("repealed_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("repeal_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("notice", sa.SmallInteger(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_deliveries_policy_id_subscriber_id_channel", type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_deliveries_policy_id_notice_subscriber_id_channel"),
            ["policy_id", "notice", "subscriber_id", "channel"],
        )
    op.create_table(
        "policy_revisions",
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changes", Json, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_revisions_policy_id")),
        sa.PrimaryKeyConstraint("policy_id", "revision", name=op.f("pk_policy_revisions")),
    )
    op.create_table(
        "policy_notices",
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("details", Json, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_notices_policy_id")),
        sa.PrimaryKeyConstraint("policy_id", "seq", name=op.f("pk_policy_notices")),
    )
    op.create_table(
        "digests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("policy_ids", Json, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digests")),
    )


def downgrade() -> None:
    op.drop_table("digests")
    op.drop_table("policy_notices")
    op.drop_table("policy_revisions")
    # Notices go with their rows: the old constraint cannot hold while they are there.
    op.execute("DELETE FROM deliveries WHERE notice <> 0")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint("uq_deliveries_policy_id_notice_subscriber_id_channel", type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_deliveries_policy_id_subscriber_id_channel"), ["policy_id", "subscriber_id", "channel"]
        )
        batch_op.drop_column("notice")
    with op.batch_alter_table("policies") as batch_op:
        batch_op.drop_column("repeal_reason")
        batch_op.drop_column("repealed_on")
        batch_op.drop_column("notify_on_lapse")
