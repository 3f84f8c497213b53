"""Engine set-up for both backends, and the two kinds of transaction the code uses."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class Database:
    """Owns the engine. `read()` for queries, `write()` for changes.

    On SQLite a write transaction starts with BEGIN IMMEDIATE so that concurrent
    read-then-write transactions queue for the lock instead of failing with SQLITE_BUSY. Before
    that, writers queue for their turn: on an asyncio lock within a process, then on a lock file
    beside the database across processes (the API and each worker), because SQLite's busy handler
    sleeps in growing steps (up to 100 ms) instead of waking when the lock is free: under many
    concurrent writers that sleeping, not the writing, set the pace (measured: two workers sending
    100,000 SMS were each idle half the time). PostgreSQL needs neither.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._file_turn: FileTurn | None = None
        if self.is_sqlite:
            db_path = make_url(url).database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
                self._file_turn = FileTurn(Path(f"{db_path}-writer.lock"))
            engine_kwargs.setdefault("connect_args", {"timeout": WRITE_WAIT_SECONDS})
        else:
            engine_kwargs.setdefault("pool_size", 10)
            engine_kwargs.setdefault("max_overflow", 10)
            engine_kwargs.setdefault("connect_args", {"server_settings": {
                # asyncpg reuses prepared statements; after a few runs PostgreSQL may switch them to a
                # generic plan made while a table was small (a sequential scan), which an import that
                # grows the table then pays for on every chunk. Plan each execution for its values.
                "plan_cache_mode": "force_custom_plan",
                # Streamed reads (the fan-out) are always read to the end: plan cursors for all rows.
                "cursor_tuple_fraction": "1.0",
                # Our queries are short or index-driven; compiling them costs more than it saves.
                "jit": "off",
            }})
        self.engine: AsyncEngine = create_async_engine(url, **engine_kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._writer = self.engine.execution_options(pushsvc_write=True)
        self._write_turn = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def stream(self, query: sa.Select[Any], chunk: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """One large query read in subscriber-id order (the fan-out's), `chunk` rows at a time, never
        whole in memory, as the driver's plain tuples (the query's binds and columns must need no
        type processing). The rows come from the driver's own cursor (asyncpg's; aiosqlite's):
        SQLAlchemy's result rows cost about as much as the query itself (measured on 1M
        subscribers, PostgreSQL: 2.5 s against 2.1 s for the same 304k rows). Every table the query joins is indexed by
        subscriber id first, so a merge plan streams rows from the first one; left to itself the
        planner hashes a million rows and sorts them before the first row."""
        async with self.engine.connect() as conn:
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            args = [params[name] for name in compiled.positiontup or ()]
            raw: Any = (await conn.get_raw_connection()).driver_connection
            if self.is_sqlite:
                # aiosqlite's own cursor too: plain tuples, one hop to its thread per chunk.
                cursor = await raw.execute(compiled.string, args)
                while rows := await cursor.fetchmany(chunk):
                    yield rows
                await cursor.close()
                return
            for setting in ("enable_hashjoin = off", "enable_sort = off", "work_mem = '64MB'"):
                await conn.execute(sa.text(f"SET LOCAL {setting}"))  # also opens the cursor's transaction
            cursor = await raw.cursor(compiled.string, *args)
            while rows := await cursor.fetch(chunk):
                yield rows

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_turn is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_turn, self._file_turn or contextlib.nullcontext(), self._writer.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
        if self._file_turn is not None:
            self._file_turn.close()


# As long as SQLite's own busy timeout (connect_args below): then the write fails, as it did there.
WRITE_WAIT_SECONDS = 30


class FileTurn:
    """An exclusive flock on a file, taken without blocking the event loop. The kernel hands it
    to the next waiting process the moment it is released. One per process and file: callers
    serialise on their own asyncio lock first."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fd = self._fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        taken = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.wait_for(asyncio.shield(taken), WRITE_WAIT_SECONDS)
        except (asyncio.CancelledError, TimeoutError):
            # The thread will still get the lock: give it back then, or every writer would wait forever.
            taken.add_done_callback(lambda f: f.cancelled() or f.exception() or fcntl.flock(fd, fcntl.LOCK_UN))
            raise

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _configure_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so that we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=30000",
            "cache_size=-65536",
            "temp_store=MEMORY",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("pushsvc_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
