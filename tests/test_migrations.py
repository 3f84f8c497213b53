"""The migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.store.schema import declared, metadata


async def test_migrations_match_schema(database_url: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False, "include_object": declared}), metadata)
        )
    await engine.dispose()
    assert diff == []
