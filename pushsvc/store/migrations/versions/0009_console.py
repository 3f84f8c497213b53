"""The department console: staff accounts and their server-side sessions, policy drafts and their
review steps, and the two department settings the console keeps.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("departments") as batch_op:
        batch_op.add_column(sa.Column("require_totp", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(
            sa.Column("keys_publish_without_review", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    op.create_table(
        "staff",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("department_id", Id, nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("sso_issuer", sa.String(length=300), nullable=True),
        sa.Column("sso_subject", sa.String(length=200), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("wechat_openid", sa.String(length=64), nullable=True),
        sa.Column("failed_logins", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(), nullable=True),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_staff_department_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_username")),
        sa.UniqueConstraint("sso_issuer", "sso_subject", name=op.f("uq_staff_sso_issuer_sso_subject")),
    )
    op.create_index(op.f("ix_staff_department_id_id"), "staff", ["department_id", "id"])

    op.create_table(
        "staff_sessions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", Id, nullable=False),
        sa.Column("second_factor_due", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], name=op.f("fk_staff_sessions_staff_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    op.create_index(op.f("ix_staff_sessions_staff_id_id"), "staff_sessions", ["staff_id", "id"])

    op.create_table(
        "policy_drafts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("department_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("policy_id", Id, nullable=True),
        sa.Column("body", Json, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("submitted_by", sa.String(length=80), nullable=True),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("approved_by", sa.String(length=80), nullable=True),
        sa.Column("approved_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_policy_drafts_department_id")),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_drafts_policy_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_drafts")),
    )
    op.create_index(
        op.f("ix_policy_drafts_department_id_status_id"), "policy_drafts", ["department_id", "status", "id"]
    )

    op.create_table(
        "draft_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("draft_id", Id, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["draft_id"], ["policy_drafts.id"], name=op.f("fk_draft_events_draft_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft_events")),
    )
    op.create_index(op.f("ix_draft_events_draft_id_id"), "draft_events", ["draft_id", "id"])


def downgrade() -> None:
    op.drop_table("draft_events")
    op.drop_table("policy_drafts")
    op.drop_table("staff_sessions")
    op.drop_table("staff")
    with op.batch_alter_table("departments") as batch_op:
        batch_op.drop_column("keys_publish_without_review")
        batch_op.drop_column("require_totp")
