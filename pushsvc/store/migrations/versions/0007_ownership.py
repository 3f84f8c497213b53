"""Every subscriber record says who supplied it: the person (self-service pages), a department
(its key or an import for it) or the admin. Until now a NULL department_id meant either the person
or the admin.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(sa.Column("supplied_by", sa.String(length=12), server_default="person", nullable=False))
    op.execute("UPDATE subscribers SET supplied_by = 'department' WHERE department_id IS NOT NULL")
    # Without a department, the first consent tells: the pages write `web:/...`; the admin's API
    # calls `api:admin`, imports on the command line `import:<file>`. Anything else stays `person`,
    # the reading that lets no department or admin write change the record.
    op.execute(
        "UPDATE subscribers SET supplied_by = 'admin' WHERE department_id IS NULL AND EXISTS ("
        "SELECT 1 FROM consents c WHERE c.id = (SELECT min(id) FROM consents WHERE subscriber_id = subscribers.id)"
        " AND (c.source = 'api:admin' OR c.source LIKE 'import:%'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("supplied_by")
