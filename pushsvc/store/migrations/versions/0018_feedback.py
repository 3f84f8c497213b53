"""Was this useful? Ask a question: the public's ratings of a policy, and its questions with the
department's answers (contact kept only to send the answer).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"  # the chain: 0016 search, 0017 engage, 0018 feedback
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policy_ratings",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("useful", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_ratings_policy_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_ratings")),
    )
    op.create_index(op.f("ix_policy_ratings_policy_id_useful"), "policy_ratings", ["policy_id", "useful"])
    op.create_table(
        "policy_questions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("department_id", Id, nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("contact_kind", sa.String(length=8), nullable=True),
        sa.Column("contact", sa.String(length=254), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("answered_by", sa.String(length=80), nullable=True),
        sa.Column("answer_sent_at", sa.DateTime(), nullable=True),
        sa.Column("answer_error", sa.String(length=200), nullable=True),
        sa.Column("contact_erased_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_questions_policy_id")),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_policy_questions_department_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_questions")),
    )
    op.create_index(op.f("ix_policy_questions_department_id_id"), "policy_questions", ["department_id", "id"])
    op.create_index(op.f("ix_policy_questions_policy_id_public"), "policy_questions", ["policy_id", "public"])


def downgrade() -> None:
    op.drop_index(op.f("ix_policy_questions_policy_id_public"), table_name="policy_questions")
    op.drop_index(op.f("ix_policy_questions_department_id_id"), table_name="policy_questions")
    op.drop_table("policy_questions")
    op.drop_index(op.f("ix_policy_ratings_policy_id_useful"), table_name="policy_ratings")
    op.drop_table("policy_ratings")
