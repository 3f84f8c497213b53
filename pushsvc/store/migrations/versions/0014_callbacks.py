"""Delivery-status callbacks: each department's receiver (URL, encrypted bearer token, last error)
and the outbox of status changes to post to it; policies published with a test key.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BACKLOG = "sent_at IS NULL AND given_up_at IS NULL"


def upgrade() -> None:
    # add_column, not a batch: SQLite adds a column with a constant default in place.
    op.add_column("policies", sa.Column("test", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "callbacks",
        sa.Column("department_id", Id, nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("bearer_token", sa.String(length=400), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_callbacks_department_id")),
        sa.PrimaryKeyConstraint("department_id", name=op.f("pk_callbacks")),
    )
    op.create_table(
        "callback_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("department_id", Id, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("given_up_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_events")),
    )
    op.create_index("ix_callback_events_backlog", "callback_events", ["department_id", "id"],
                    sqlite_where=sa.text(_BACKLOG), postgresql_where=sa.text(_BACKLOG))
    op.create_index(op.f("ix_callback_events_created_at"), "callback_events", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_events_created_at"), table_name="callback_events")
    op.drop_index("ix_callback_events_backlog", table_name="callback_events")
    op.drop_table("callback_events")
    op.drop_table("callbacks")
    with op.batch_alter_table("policies") as batch_op:
        batch_op.drop_column("test")
