"""`pushsvc status`: the queue, the delivery ledger and the providers at a glance, in the terminal.

It reads what /metrics reads (pushsvc.metrics), plus the ledger's counts by channel and status,
which take a scan of the ledger: fine for a person asking, too much for every scrape. A provider
that is down (its circuit breaker open, pushsvc.delivery.breaker) shows in red with since when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, get_args

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from pushsvc.core.clock import now
from pushsvc.core.figures import duration
from pushsvc.core.models import DeliveryStatus
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.metrics import (
    ProviderState,
    QueueState,
    deliveries_by_channel,
    oldest_queued_age,
    policies_publishing,
    provider_states,
    queue_state,
)
from pushsvc.settings import Settings
from pushsvc.store.db import Database

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
T = TypeVar("T")


@dataclass(frozen=True)
class Ledger:
    by_channel: dict[str, dict[str, int]]
    oldest_queued: float | None  # seconds
    publishing: int


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    queue: QueueState | str  # the state, or why it could not be read
    ledger: Ledger | str
    providers: list[ProviderState] | str


async def _from_redis(settings: Settings, read: Callable[[Redis], Awaitable[T]]) -> T | str:
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        return await read(redis)
    except (RedisError, OSError) as exc:
        return f"Redis unavailable ({type(exc).__name__})"
    finally:
        await redis.aclose()


async def _ledger(settings: Settings, at: datetime) -> Ledger | str:
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            return Ledger(await deliveries_by_channel(conn), await oldest_queued_age(conn, at),
                          await policies_publishing(conn))
    except (SQLAlchemyError, OSError) as exc:
        return f"database unavailable ({type(exc).__name__})"
    finally:
        await db.close()


async def snapshot(settings: Settings) -> Snapshot:
    at = now()
    queue, ledger, providers = await asyncio.gather(
        _from_redis(settings, queue_state), _ledger(settings, at), _from_redis(settings, provider_states))
    return Snapshot(at, queue, ledger, providers)


def _local(at: datetime) -> str:
    return f"{at.astimezone(LOCAL_ZONE):%Y-%m-%d %H:%M:%S}"


def show_providers(snap: Snapshot, console: Console) -> None:
    if isinstance(snap.providers, str):
        console.print(f"[red]Providers: {snap.providers}[/red]")
        return
    table = Table(title="Providers (circuit breakers)", title_justify="left")
    for column in ("provider", "state", "since", "failures in a row", "next probe", "last error"):
        table.add_column(column)
    for p in snap.providers:
        if p.down_since is None:
            table.add_row(p.provider, "up", "", str(p.failures), "", "")
            continue
        since = f"{_local(p.down_since)} ({duration((snap.at - p.down_since).total_seconds())})"
        probe = "" if p.next_probe is None else _local(p.next_probe)
        table.add_row(p.provider, "DOWN", since, str(p.failures), probe, p.error or "", style="bold red")
    console.print(table)


def show(snap: Snapshot, console: Console) -> None:
    console.print(f"[bold]pushsvc status[/bold]  {_local(snap.at)} (Asia/Shanghai)")
    console.print()
    if isinstance(snap.queue, str):
        console.print(f"[red]Queue: {snap.queue}[/red]")
    else:
        queue = Table(title="Queue (arq)", title_justify="left")
        for state in ("waiting", "running", "scheduled"):
            queue.add_column(state, justify="right")
        queue.add_row(str(snap.queue.waiting), str(snap.queue.running), str(snap.queue.scheduled))
        console.print(queue)
    console.print()
    show_providers(snap, console)
    console.print()
    if isinstance(snap.ledger, str):
        console.print(f"[red]Ledger: {snap.ledger}[/red]")
        return
    ledger = Table(title="Deliveries (ledger)", title_justify="left")
    ledger.add_column("channel", no_wrap=True, min_width=len("wechat"))  # the others give way on a narrow terminal
    for status in (*STATUSES, "total"):
        ledger.add_column(status, justify="right")
    totals = dict.fromkeys(STATUSES, 0)
    for channel, counts in sorted(snap.ledger.by_channel.items()):
        ledger.add_row(channel, *(str(counts.get(s, 0)) for s in STATUSES), str(sum(counts.values())))
        for s in STATUSES:
            totals[s] += counts.get(s, 0)
    ledger.add_row("all", *(str(totals[s]) for s in STATUSES), str(sum(totals.values())), style="bold")
    console.print(ledger)
    oldest = snap.ledger.oldest_queued
    console.print(f"Oldest queued delivery: {'none queued' if oldest is None else duration(oldest) + ' ago'}")
    console.print(f"Policies publishing: {snap.ledger.publishing}")


def run_status(settings: Settings, console: Console | None = None) -> int:
    """Prints the snapshot; 0 if the queue and the ledger could both be read, else 1."""
    snap = asyncio.run(snapshot(settings))
    show(snap, console or Console())
    return 1 if isinstance(snap.queue, str) or isinstance(snap.ledger, str) else 0
