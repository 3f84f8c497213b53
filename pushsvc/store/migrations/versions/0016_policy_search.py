"""The public index of policies: `policy_search` (a row per proactively disclosed policy not sent with
a test key) and its full-text index, which each database makes its own way: on SQLite an FTS5 table
over `terms` kept by triggers, on PostgreSQL `terms` is a tsvector with a GIN index. The policies
stored so far are indexed here.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FTS = "policy_search_fts"
GIN = "ix_policy_search_terms"
# unicode61 keeps `_` and `-` inside the filters' terms (_domain_social-insurance). detail=none and
# columnsize=0: no positions, no per-row sizes, which only phrases and ranking by relevance would read
# (a search is terms ANDed, newest first).
SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(terms, content='policy_search', content_rowid='sort_key', "
    "detail=none, columnsize=0, tokenize=\"unicode61 remove_diacritics 0 tokenchars '_-'\")",
    f"CREATE TRIGGER policy_search_insert AFTER INSERT ON policy_search BEGIN "
    f"INSERT INTO {FTS}(rowid, terms) VALUES (new.sort_key, new.terms); END",
    f"CREATE TRIGGER policy_search_delete AFTER DELETE ON policy_search BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, terms) VALUES ('delete', old.sort_key, old.terms); END",
    f"CREATE TRIGGER policy_search_update AFTER UPDATE ON policy_search BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, terms) VALUES ('delete', old.sort_key, old.terms); "
    f"INSERT INTO {FTS}(rowid, terms) VALUES (new.sort_key, new.terms); END",
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "policy_search",
        sa.Column("sort_key", Id, autoincrement=False, nullable=False),
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("terms", sa.Text().with_variant(postgresql.TSVECTOR(), "postgresql"), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policies.id"], name=op.f("fk_policy_search_policy_id")),
        sa.PrimaryKeyConstraint("sort_key", name=op.f("pk_policy_search")),
        sa.UniqueConstraint("policy_id", name=op.f("uq_policy_search_policy_id")),
    )
    if sqlite:
        for statement in SQLITE_DDL:
            op.execute(statement)
    else:
        op.create_index(GIN, "policy_search", ["terms"], postgresql_using="gin")
    _index_stored_policies()


def _index_stored_policies() -> None:
    """The index rows of the policies already published, as the service writes them (the terms are
    the code's: pushsvc.core.search_terms), changed when each went public or last changed."""
    from pushsvc.core.catalogue import load_catalogue
    from pushsvc.core.search_terms import indexed
    from pushsvc.settings import REPO_ROOT
    from pushsvc.store.schema import policies, policy_search
    from pushsvc.store.search import search_row

    bind = op.get_bind()
    districts = list(load_catalogue(Path(os.environ.get("PUSHSVC_AUDIENCES_DIR") or REPO_ROOT / "audiences")).districts)
    P = policies.c
    # The columns as of this revision (later ones may add more to the table).
    stored = sa.select(P.id, P.department_id, P.title, P.doc_number, P.summary, P.domain, P.targeting, P.status,
                       P.revision, P.disclosure, P.test, P.publish_at, P.created_at, P.updated_at)
    rows = [search_row(bind.dialect.name, p, districts, p["updated_at"])
            for p in bind.execute(stored).mappings() if indexed(p)]
    if rows:
        bind.execute(sa.insert(policy_search), rows)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER policy_search_{trigger}")
        op.execute(f"DROP TABLE {FTS}")
    else:
        op.drop_index(GIN, table_name="policy_search")
    op.drop_table("policy_search")
