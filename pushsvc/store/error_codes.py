"""Rewriting a ledger's kept errors to their codes (`pushsvc.core.figures.error_code`): what erasure
does to the rows of the person erased, written before errors were kept as codes only."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.figures import error_code


async def keep_error_codes(conn: AsyncConnection, ledger: sa.Table, where: sa.ColumnElement[bool]) -> None:
    """`ledger` (deliveries or case_notifications): the rows matching `where` keep their errors' codes only."""
    rows = await conn.execute(sa.select(ledger.c.id, ledger.c.error).where(where, ledger.c.error.is_not(None)))
    updates: list[dict[str, Any]] = [{"rid": rid, "code": error_code(error)} for rid, error in rows
                                     if error_code(error) != error]
    if updates:
        await conn.execute(
            sa.update(ledger).where(ledger.c.id == sa.bindparam("rid")).values(error=sa.bindparam("code")), updates
        )
