"""The long-lived things a process needs, built once at start-up and shared by handlers and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from arq import ArqRedis
from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool

from pushsvc.channels.base import Channel
from pushsvc.core.catalogue import Catalogue, load_catalogue
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner
from pushsvc.jobs import job_deserializer, job_serializer
from pushsvc.reach.live import LiveReach
from pushsvc.settings import Settings
from pushsvc.store.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    catalogue: Catalogue
    signer: TokenSigner
    renderer: Renderer
    redis: ArqRedis
    channels: dict[str, Channel] = field(default_factory=dict)
    # The API process's reach index (pushsvc.app starts it); None elsewhere: previews count in SQL.
    reach: LiveReach | None = None

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        await self.redis.aclose()
        await self.db.close()


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def open_services(settings: Settings) -> Services:
    """Loads the catalogue first: a broken audiences/ file stops start-up before anything connects."""
    catalogue = load_catalogue(settings.audiences_dir)
    # Connects on first use, so the API starts (and /readyz says 503) while Redis is down.
    redis = ArqRedis(
        ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )
    return Services(
        settings=settings,
        db=Database(settings.database_url),
        catalogue=catalogue,
        signer=TokenSigner(settings.secret_key),
        renderer=Renderer(settings.templates_dir),
        redis=redis,
    )
