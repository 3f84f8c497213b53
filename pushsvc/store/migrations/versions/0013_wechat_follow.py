"""WeChat followers: the parametric QR codes' scenes (a poster → a pending subscription), and an
index on subscribers' openids for the Official Account's events.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "wechat_scenes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("department_id", Id, nullable=False),
        sa.Column("domains", Json, nullable=False),
        sa.Column("audiences", Json, nullable=False),
        sa.Column("ticket", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=300), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"], name=op.f("fk_wechat_scenes_department_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_scenes")),
    )
    op.create_index("ix_subscribers_wechat_openid", "subscribers", ["wechat_openid"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_wechat_openid", table_name="subscribers")
    op.drop_table("wechat_scenes")
