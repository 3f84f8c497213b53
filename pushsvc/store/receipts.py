"""Providers' delivery receipts applied to the ledgers (policies' and cases' messages) in bulk, and
the rows left `unknown` (a provider that may have taken them did not say) found and settled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    @property
    def out_id(self) -> str | None:
        """Our id of the request the message came in, when the provider reports it."""
    @property
    def phone_number(self) -> str | None: ...


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


async def _adopt(conn: AsyncConnection, channel: str, pending: Mapping[str, str], at: datetime) -> None:
    """Rows left `unknown` whose ref a receipt names (`pending`: row ref -> message id) become
    `sent` under the message id, so the receipt then moves them like any other."""
    rows = [{"ref": ref, "mid": mid} for ref, mid in pending.items()]
    for ledger in _LEDGERS:
        await conn.execute(
            sa.update(ledger)
            .where(ledger.c.provider_ref == sa.bindparam("ref"), ledger.c.channel == channel,
                   ledger.c.status == "unknown")
            .values(status="sent", provider_ref=sa.bindparam("mid"), sent_at=at, error=None, updated_at=at),
            rows,
        )


async def apply_receipts(conn: AsyncConnection, channel: str, receipts: Sequence[Receipt], at: datetime,
                         pending: Mapping[str, str] | None = None) -> list[str]:
    """`pending` (row ref -> message id) first settles rows left `unknown` that the receipts name
    by their request and number. Rows are found by message id first, then one UPDATE per ledger and outcome runs for the
    whole batch by primary key. (Filtering on provider_ref and status in one statement lets SQLite
    pick the status index and scan every `sent` row per receipt.) Only `sent` rows move, so a
    receipt repeated, or arriving after another, changes nothing. Returns the message ids not
    found: a receipt can beat the worker's write of the outcome that holds its id."""
    if pending:
        await _adopt(conn, channel, pending, at)
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


# -- rows left `unknown` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unknown:
    """A row whose provider may have taken it: `ref` is "<request>#<recipient>"."""

    ledger: str
    id: int
    channel: str
    attempts: int
    ref: str


async def unknown_rows(conn: AsyncConnection, before: datetime, limit: int) -> list[Unknown]:
    """Up to `limit` rows of each ledger `unknown` since before `before`, oldest first."""
    found: list[Unknown] = []
    for ledger in _LEDGERS:
        rows = await conn.execute(
            sa.select(ledger.c.id, ledger.c.channel, ledger.c.attempts, ledger.c.provider_ref)
            .where(ledger.c.status == "unknown", ledger.c.updated_at < before, ledger.c.provider_ref.is_not(None))
            .order_by(ledger.c.updated_at)
            .limit(limit)
        )
        found += [Unknown(ledger.name, *row) for row in rows]
    return found


async def settle_unknown(conn: AsyncConnection, ledger_name: str, updates: Sequence[dict[str, Any]]) -> None:
    """Updates made by core.retry.ledger_update, applied only to rows still `unknown` (a receipt
    may have settled one meanwhile)."""
    if not updates:
        return
    ledger = next(t for t in _LEDGERS if t.name == ledger_name)
    await conn.execute(
        sa.update(ledger).where(ledger.c.id == sa.bindparam("did"), ledger.c.status == "unknown").values(
            status=sa.bindparam("new_status"), error=sa.bindparam("new_error"), provider_ref=sa.bindparam("new_ref"),
            next_attempt_at=sa.bindparam("new_next"), sent_at=sa.bindparam("new_sent"),
            updated_at=sa.bindparam("new_updated"),
        ),
        list(updates),
    )
