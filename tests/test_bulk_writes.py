"""The ledger's bulk writes (store.bulk) on both backends, and SQLite writers of several
processes queueing on the lock file (store.db.FileTurn)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from pushsvc.store.bulk import insert_rows, update_rows
from pushsvc.store.db import Database
from pushsvc.store.migrate import upgrade
from pushsvc.store.schema import departments

AT = datetime(2026, 11, 28, 8, 30, 0, 123456, tzinfo=timezone.utc)


def department(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "domains": ["employment", "tax"], "api_key_hash": f"hash-{name}",
            "key_prefix": name[:8], "contact_email": None, "created_at": AT, **extra}


async def test_rows_are_written_converted_and_duplicates_skipped(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.write() as conn:
            await insert_rows(conn, departments, [department("人社局"), department("税务局")])
        async with db.write() as conn:
            # A name taken: skipped, the other row is written.
            await insert_rows(conn, departments, [department("人社局", api_key_hash="other"), department("民政局")],
                              ignore_duplicates=True)
        async with db.read() as conn:
            rows = {r.name: r for r in await conn.execute(sa.select(departments))}
        assert sorted(rows) == sorted(["人社局", "税务局", "民政局"])
        assert rows["人社局"].api_key_hash == "hash-人社局"
        assert rows["税务局"].domains == ["employment", "tax"]
        assert rows["税务局"].created_at == AT  # time zone and microseconds kept

        later = AT + timedelta(hours=1)
        async with db.write() as conn:
            await update_rows(
                conn, departments,
                [{"key": rows["人社局"].id, "mail": "a@gov.cn", "when": later},
                 {"key": rows["税务局"].id, "mail": None, "when": AT}],
                key=("id", "key"), values={"contact_email": "mail", "created_at": "when"},
            )
        async with db.read() as conn:
            after = {r.name: r for r in await conn.execute(sa.select(departments))}
        assert (after["人社局"].contact_email, after["人社局"].created_at) == ("a@gov.cn", later)
        assert (after["税务局"].contact_email, after["税务局"].created_at) == (None, AT)
        assert after["民政局"] == rows["民政局"]
    finally:
        await db.close()


async def test_nothing_to_write_is_no_statement(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.write() as conn:
            await insert_rows(conn, departments, [])
            await update_rows(conn, departments, [], key=("id", "id"), values={"name": "name"})
    finally:
        await db.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"
    upgrade(url)
    return url


async def test_writers_of_two_processes_take_turns_on_the_lock_file(sqlite_file: str) -> None:
    # Two Database objects open the lock file separately, as two processes do.
    first, second = Database(sqlite_file), Database(sqlite_file)
    try:
        order: list[str] = []

        async def write(db: Database, name: str) -> None:
            async with db.write() as conn:
                await insert_rows(conn, departments, [department(name)])
                order.append(name)

        async with first.write() as conn:
            waiting = asyncio.create_task(write(second, "second"))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # queued on the file, not failing and not sleeping in SQLite
            await insert_rows(conn, departments, [department("first")])
            order.append("first")
        await asyncio.wait_for(waiting, 5)
        assert order == ["first", "second"]
    finally:
        await first.close()
        await second.close()


async def test_a_writer_cancelled_while_waiting_does_not_keep_the_lock(sqlite_file: str) -> None:
    first, second = Database(sqlite_file), Database(sqlite_file)
    try:
        async with first.write():
            waiting = asyncio.create_task(second.write().__aenter__())
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        await asyncio.sleep(0.2)  # the waiting thread takes the lock, then gives it back
        async with first.write() as conn:
            await insert_rows(conn, departments, [department("after")])
        async with asyncio.timeout(5), second.write() as conn:
            await insert_rows(conn, departments, [department("after too")])
    finally:
        await first.close()
        await second.close()
