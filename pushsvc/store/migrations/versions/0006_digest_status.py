"""Ledger rows waiting for a digest get a status of their own, `digest`, so that they can carry a
retry time: `held` with a next_attempt_at stays quiet hours and pacing, which deliver jobs claim.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Until now a digest row was `held` with no next_attempt_at (quiet hours always set one).
    op.execute("UPDATE deliveries SET status = 'digest' WHERE status = 'held' AND next_attempt_at IS NULL")


def downgrade() -> None:
    # The old code would take a retry time for the end of quiet hours: drop it (due at the next run).
    op.execute("UPDATE deliveries SET status = 'held', next_attempt_at = NULL WHERE status = 'digest'")
