"""Providers' delivery receipts applied to the ledgers (policies' and cases' messages) in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.figures import error_code
from pushsvc.store.schema import case_notifications, deliveries

_LOOKUP_CHUNK = 900  # under SQLite's bound-parameter limit


class Receipt(Protocol):
    """What a provider says of one message it took."""

    @property
    def message_id(self) -> str: ...
    @property
    def delivered(self) -> bool: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def reported_at(self) -> datetime | None: ...


# Where a message id may be: a policy's messages (a digest's id is shared by all its rows), then cases'.
_LEDGERS = (deliveries, case_notifications)


async def _rows_by_ref(conn: AsyncConnection, ledger: sa.Table, channel: str, refs: list[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for start in range(0, len(refs), _LOOKUP_CHUNK):
        rows = await conn.execute(
            sa.select(ledger.c.provider_ref, ledger.c.id).where(
                ledger.c.provider_ref.in_(refs[start : start + _LOOKUP_CHUNK]), ledger.c.channel == channel
            )
        )
        for ref, row_id in rows:
            found.setdefault(ref, []).append(row_id)
    return found


async def apply_receipts(conn: AsyncConnection, channel: str, receipts: Sequence[Receipt], at: datetime) -> list[str]:
    """Rows are found by message id first, then one UPDATE per ledger and outcome runs for the
    whole batch by primary key. (Filtering on provider_ref and status in one statement lets SQLite
    pick the status index and scan every `sent` row per receipt.) Only `sent` rows move, so a
    receipt repeated, or arriving after another, changes nothing. Returns the message ids not
    found: a receipt can beat the worker's write of the outcome that holds its id."""
    unknown = sorted({r.message_id for r in receipts})
    for ledger in _LEDGERS:
        ids = await _rows_by_ref(conn, ledger, channel, unknown)
        unknown = [ref for ref in unknown if ref not in ids]
        for delivered in (True, False):
            rows = [
                {"did": row_id, "when": r.reported_at or at,
                 "why": None if delivered else error_code(f"not delivered: {r.error_code or 'unknown'}")}
                for r in receipts
                if r.delivered is delivered
                for row_id in ids.get(r.message_id, ())
            ]
            if not rows:
                continue
            values: dict[str, Any] = {"status": "delivered" if delivered else "failed", "updated_at": at}
            if delivered:
                values["delivered_at"] = sa.bindparam("when")
            else:
                values["error"] = sa.bindparam("why")
            await conn.execute(
                sa.update(ledger).where(ledger.c.id == sa.bindparam("did"), ledger.c.status == "sent").values(**values),
                rows,
            )
    return unknown
