"""Alembic environment: runs migrations over the async engine of either backend."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from pushsvc.store.db import Database
from pushsvc.store.schema import declared, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=declared,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    db = Database(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await db.close()


asyncio.run(_main())
