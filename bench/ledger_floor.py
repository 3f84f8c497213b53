"""The least database work a per-recipient ledger needs for one fan-out, with no HTTP and none
of our code: per batch of 1,000, insert the rows, claim them (one UPDATE ... RETURNING) and
write their outcomes (status and message id), through the plain driver (sqlite3, or asyncpg
with one statement per batch reading arrays), one transaction each, one connection.

bench.fanout_sms runs it after its pipeline on the same database and prints it beside the raw
gateway rate: no pipeline that keeps a row per recipient, written before the send and updated
after it, can deliver faster than this on this machine.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone

import asyncpg
from sqlalchemy.engine import make_url

# A notice number no policy reaches: the floor's rows sit beside the pipeline's and are removed.
FLOOR_NOTICE = 999
_INSERT_SQLITE = (
    "INSERT INTO deliveries (policy_id, notice, subscriber_id, channel, status, attempts, created_at, updated_at)"
    " VALUES (?, ?, ?, 'sms', 'queued', 0, ?, ?) ON CONFLICT DO NOTHING"
)
_CLAIM = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = {at}"
    " WHERE policy_id = {policy} AND notice = {notice} AND channel = 'sms' AND subscriber_id BETWEEN {lo} AND {hi}"
    " AND status = 'queued' RETURNING id"
)
_OUTCOME_SQLITE = "UPDATE deliveries SET status = 'sent', provider_ref = ?, sent_at = ?, updated_at = ? WHERE id = ?"
_INSERT_PG = (
    "INSERT INTO deliveries (policy_id, notice, subscriber_id, channel, status, attempts, created_at, updated_at)"
    " SELECT $1, $2, s, 'sms', 'queued', 0, $4, $4 FROM unnest($3::bigint[]) AS s ON CONFLICT DO NOTHING"
)
_OUTCOME_PG = (
    "UPDATE deliveries SET status = 'sent', provider_ref = u.ref, sent_at = $3, updated_at = $3"
    " FROM unnest($1::bigint[], $2::text[]) AS u(id, ref) WHERE deliveries.id = u.id"
)


def _batches(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def sqlite_floor(path: str, policy_id: int, subscriber_ids: list[int], size: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "cache_size=-65536"):
        conn.execute(f"PRAGMA {pragma}")
    at = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(" ")
    started = time.perf_counter()
    for batch in _batches(subscriber_ids, size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_SQLITE, [(policy_id, FLOOR_NOTICE, sid, at, at) for sid in batch])
        conn.execute("COMMIT")
    for batch in _batches(subscriber_ids, size):
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(_CLAIM.format(at="?", policy="?", notice="?", lo="?", hi="?"),
                               (at, policy_id, FLOOR_NOTICE, batch[0], batch[-1])).fetchall()
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_OUTCOME_SQLITE, [(f"m{row_id:016x}", at, at, row_id) for (row_id,) in claimed])
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.execute("DELETE FROM deliveries WHERE notice = ?", (FLOOR_NOTICE,))
    conn.close()
    return seconds


async def postgres_floor(url: str, policy_id: int, subscriber_ids: list[int], size: int) -> float:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    at = datetime.now(timezone.utc).replace(tzinfo=None)
    claim = _CLAIM.format(at="$1", policy="$2", notice="$3", lo="$4", hi="$5")
    try:
        started = time.perf_counter()
        for batch in _batches(subscriber_ids, size):
            await conn.execute(_INSERT_PG, policy_id, FLOOR_NOTICE, batch, at)
        for batch in _batches(subscriber_ids, size):
            claimed = [r[0] for r in await conn.fetch(claim, at, policy_id, FLOOR_NOTICE, batch[0], batch[-1])]
            await conn.execute(_OUTCOME_PG, claimed, [f"m{i:016x}" for i in claimed], at)
        seconds = time.perf_counter() - started
        await conn.execute("DELETE FROM deliveries WHERE notice = $1", FLOOR_NOTICE)
    finally:
        await conn.close()
    return seconds


async def ledger_floor(url: str, policy_id: int, subscriber_ids: list[int], size: int) -> float:
    """Seconds for the floor's writes on the database at `url` (SQLite or PostgreSQL)."""
    if url.startswith("sqlite"):
        return sqlite_floor(str(make_url(url).database), policy_id, subscriber_ids, size)
    return await postgres_floor(url, policy_id, subscriber_ids, size)
