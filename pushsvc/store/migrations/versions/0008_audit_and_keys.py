"""Several named API keys per department (the key each department was created with moves into
`api_keys` as "default"), and the audit log of who read or changed whose personal data.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("department_id", Id, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_api_keys_department_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_department_id_id"), "api_keys", ["department_id", "id"])
    # Every department keeps working with the key it has: the same digest, now one of its keys.
    op.execute(
        "INSERT INTO api_keys (department_id, name, kind, key_hash, prefix, created_at) "
        "SELECT id, 'default', 'live', api_key_hash, key_prefix, created_at FROM departments ORDER BY id"
    )

    op.create_table(
        "audit_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("department_id", Id, nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("subscriber_id", Id, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_department_id_id"), "audit_log", ["department_id", "id"])
    op.create_index(op.f("ix_audit_log_subscriber_id_id"), "audit_log", ["subscriber_id", "id"])
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])


def downgrade() -> None:
    # departments.api_key_hash still holds each department's first key; keys issued later are lost.
    op.drop_table("audit_log")
    op.drop_table("api_keys")
