"""Providers' delivery receipts applied to the ledgers (policies' and cases' messages) in bulk, and
the rows left `unknown` (a provider that may have taken them did not say) found and settled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable

from pushsvc.core.figures import error_code
from pushsvc.store.bulk import insert_rows
from pushsvc.store.callbacks import ledger_events
from pushsvc.store.schema import UTCDateTime, case_notifications, cases, deliveries, subscribers

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

# A batch as a table that one UPDATE joins by provider id. On PostgreSQL the rows come from one
# array per column (`unnest`): the whole batch is one statement's parameters. SQLite has no arrays
# and no column names on a VALUES alias: a temporary table, filled by executemany, stands in.
_SCRATCH = sa.MetaData()
_TOLD = sa.Table(
    "receipts_told", _SCRATCH, sa.Column("ref", sa.String(), primary_key=True), sa.Column("ok", sa.Boolean()),
    sa.Column("reported_at", UTCDateTime()), sa.Column("why", sa.Text()), prefixes=["TEMPORARY"],
)
_ADOPTED = sa.Table("receipts_adopted", _SCRATCH, sa.Column("ref", sa.String(), primary_key=True),
                    sa.Column("mid", sa.String()), prefixes=["TEMPORARY"])


async def _as_table(conn: AsyncConnection, shape: sa.Table, rows: Sequence[Mapping[str, Any]]) -> sa.FromClause:
    """`rows` (dicts keyed by the columns of `shape`) as something an UPDATE ... FROM can join."""
    if conn.dialect.name == "postgresql":
        arrays = [sa.bindparam(f"{shape.name}_{c.name}", [row[c.name] for row in rows], type_=sa.ARRAY(c.type))
                  for c in shape.c]
        return sa.func.unnest(*arrays).table_valued(*(sa.column(c.name, c.type) for c in shape.c)).render_derived(
            name=shape.name)
    await conn.exec_driver_sql(str(CreateTable(shape, if_not_exists=True).compile(dialect=conn.dialect)))
    await conn.execute(sa.delete(shape))  # a temporary table outlives the transaction on its connection
    await insert_rows(conn, shape, rows)
    return shape


def _unindexed(ledger: sa.Table) -> sa.ColumnElement[str]:
    """The row's status in a form no index serves: left a plain column, SQLite walks the (status,
    updated_at) index through every `sent` row of the ledger and probes the batch for each, where
    the batch's rows should each find theirs by provider id."""
    return ledger.c.status.concat(sa.literal_column("''"))


async def _adopt(conn: AsyncConnection, channel: str, pending: Mapping[str, str], at: datetime) -> None:
    """Rows left `unknown` whose ref a receipt names (`pending`: row ref -> message id) become
    `sent` under the message id, so the receipt then moves them like any other. (Such rows are
    few: found by status, each then looks its ref up in the batch.)"""
    named = await _as_table(conn, _ADOPTED, [{"ref": ref, "mid": mid} for ref, mid in pending.items()])
    for ledger in _LEDGERS:
        await conn.execute(
            sa.update(ledger)
            .where(ledger.c.provider_ref == named.c.ref, ledger.c.channel == channel, ledger.c.status == "unknown")
            .values(status="sent", provider_ref=named.c.mid, sent_at=at, error=None, updated_at=at)
        )


def _one_each(receipts: Sequence[Receipt]) -> dict[str, Receipt]:
    """One receipt per message id: the first saying delivered, else the first. (A message is
    delivered or not once; a provider repeating itself, or contradicting itself in one push, is
    taken at its best word, as receipts applied one by one with `delivered` first used to be.)"""
    chosen: dict[str, Receipt] = {}
    for r in receipts:
        held = chosen.get(r.message_id)
        if held is None or (r.delivered and not held.delivered):
            chosen[r.message_id] = r
    return chosen


def _moved(ledger: sa.Table, channel: str, told: sa.FromClause, at: datetime) -> sa.Update:
    """The ledger's `sent` rows whose provider id a receipt names, moved to what it says: one
    statement for the batch. Only `sent` rows move, so a receipt repeated, late or out of order
    changes nothing (a `delivered` row is never failed by a receipt; a bounce may, pushsvc.delivery.bounces)."""
    ok = told.c.ok
    return (
        sa.update(ledger)
        .where(ledger.c.provider_ref == told.c.ref, ledger.c.channel == channel, _unindexed(ledger) == "sent")
        .values(status=sa.case((ok, "delivered"), else_="failed"),
                delivered_at=sa.case((ok, told.c.reported_at), else_=ledger.c.delivered_at),
                error=sa.case((ok, ledger.c.error), else_=told.c.why), updated_at=at)
        .returning(ledger.c.id, ledger.c.provider_ref, ledger.c.status)
    )


async def apply_receipts(conn: AsyncConnection, channel: str, receipts: Sequence[Receipt], at: datetime,
                         pending: Mapping[str, str] | None = None) -> list[str]:
    """`pending` (row ref -> message id) first settles rows left `unknown` that the receipts name
    by their request and number. Then one UPDATE per ledger moves the batch's `sent` rows (the
    cases' only when the policies' left some message ids unmoved), and the callbacks' events are
    written for the rows moved. Returns the message ids not found in any ledger, whatever their rows'
    status: a receipt can beat the worker's write of the outcome that holds its id."""
    if pending:
        await _adopt(conn, channel, pending, at)
    told = _one_each(receipts)
    table = await _as_table(conn, _TOLD, [
        {"ref": ref, "ok": r.delivered, "reported_at": r.reported_at or at,
         "why": None if r.delivered else error_code(f"not delivered: {r.error_code or 'unknown'}")}
        for ref, r in told.items()
    ])
    left = set(told)
    for ledger in _LEDGERS:
        if not left:
            break
        moved = (await conn.execute(_moved(ledger, channel, table, at))).all()
        left -= {ref for _, ref, _ in moved}
        await ledger_events(conn, ledger.name, [{"did": row_id, "new_status": status, "new_updated": at}
                                                for row_id, _, status in moved])  # told to callbacks
    # What no row moved for: rows already settled (known), or no row at all (yet).
    for ledger in _LEDGERS:
        if left:
            left -= await _known(conn, ledger, channel, sorted(left))
    return sorted(left)


async def _known(conn: AsyncConnection, ledger: sa.Table, channel: str, refs: list[str]) -> set[str]:
    """Those of `refs` that some row of the ledger holds, whatever its status."""
    found: set[str] = set()
    for start in range(0, len(refs), _LOOKUP_CHUNK):
        found.update((await conn.execute(sa.select(ledger.c.provider_ref).where(
            ledger.c.provider_ref.in_(refs[start : start + _LOOKUP_CHUNK]), ledger.c.channel == channel))).scalars())
    return found


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
    await ledger_events(conn, ledger_name, updates)  # told to callbacks, same transaction


async def unknown_numbers(conn: AsyncConnection, ledger_name: str, row_ids: Sequence[int]) -> dict[int, str]:
    """Row id -> the phone number its message went to (the subscriber's, the applicant's), for
    asking an SMS provider that looks requests up by number."""
    ledger = next(t for t in _LEDGERS if t.name == ledger_name)
    owner, phone = ((subscribers, subscribers.c.phone) if ledger is deliveries else (cases, cases.c.phone))
    link = ledger.c.subscriber_id == owner.c.id if ledger is deliveries else ledger.c.case_id == owner.c.id
    found: dict[int, str] = {}
    for start in range(0, len(row_ids), _LOOKUP_CHUNK):
        rows = await conn.execute(sa.select(ledger.c.id, phone).select_from(ledger.join(owner, link)).where(
            ledger.c.id.in_(row_ids[start : start + _LOOKUP_CHUNK]), phone.is_not(None)))
        found.update({row_id: number for row_id, number in rows})
    return found


# -- SMS rows whose receipt never came -------------------------------------------------------------

@dataclass(frozen=True)
class Silent:
    id: int
    provider: str
    ref: str
    phone: str
    sent_at: datetime


async def silent_rows(conn: AsyncConnection, providers: Sequence[str], before: datetime, not_before: datetime,
                      limit: int) -> list[Silent]:
    """Up to `limit` SMS deliveries still `sent` by one of `providers`, untouched since before
    `before` and sent since `not_before`, oldest first."""
    rows = await conn.execute(
        sa.select(deliveries.c.id, deliveries.c.provider, deliveries.c.provider_ref, subscribers.c.phone,
                  deliveries.c.sent_at)
        .select_from(deliveries.join(subscribers, deliveries.c.subscriber_id == subscribers.c.id))
        # updated_at >= not_before too (a row is updated when sent, or later): the (status,
        # updated_at) index then bounds the scan to the last days' sent rows.
        .where(deliveries.c.status == "sent", deliveries.c.updated_at < before,
               deliveries.c.updated_at >= not_before, deliveries.c.channel == "sms",
               deliveries.c.provider.in_(list(providers)), deliveries.c.sent_at >= not_before,
               deliveries.c.provider_ref.is_not(None), subscribers.c.phone.is_not(None))
        .order_by(deliveries.c.updated_at)
        .limit(limit)
    )
    return [Silent(*row) for row in rows]


async def asked_about(conn: AsyncConnection, row_ids: Sequence[int], at: datetime) -> None:
    """Rows still `sent` after their provider was asked: not asked again before another wait."""
    for start in range(0, len(row_ids), _LOOKUP_CHUNK):
        await conn.execute(sa.update(deliveries).where(deliveries.c.id.in_(row_ids[start : start + _LOOKUP_CHUNK]),
                                                       deliveries.c.status == "sent").values(updated_at=at))
