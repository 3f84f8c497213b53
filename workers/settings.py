"""How a pushsvc worker is configured: which jobs, their timeouts, the sweeper's schedule."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron
from arq.worker import Worker, func

from pushsvc.cases.dispatcher import run_dispatcher
from pushsvc.channels import build_channels
from pushsvc.jobs import job_deserializer, job_serializer
from pushsvc.services import open_services, redis_settings
from pushsvc.settings import Settings
from workers import jobs


def worker_options(settings: Settings) -> dict[str, Any]:
    timeout = settings.job_timeout_seconds

    async def startup(ctx: dict[str, Any]) -> None:
        svc = await open_services(settings)
        svc.channels = build_channels(svc.settings, svc.renderer, svc.signer)
        for channel in svc.channels.values():
            await channel.start()
        ctx["svc"] = svc
        # Case notifications are not arq jobs: the dispatcher takes them from their list in batches.
        ctx["stop"] = asyncio.Event()
        ctx["dispatcher"] = asyncio.create_task(run_dispatcher(svc, ctx["stop"]))

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "dispatcher" in ctx:
            ctx["stop"].set()
            await ctx["dispatcher"]
        if "svc" in ctx:
            await ctx["svc"].close()

    every = settings.sweep_every_seconds
    return {
        # An explicit, short timeout on every job: it is also how long a killed worker's job waits
        # before arq runs it again. The ledger bounds a delivery's attempts, not arq's max_tries.
        "functions": [
            func(jobs.fanout, timeout=timeout, max_tries=1000),
            func(jobs.deliver, timeout=timeout, max_tries=1000),
            func(jobs.notify, timeout=timeout, max_tries=1000),
            func(jobs.case_send, timeout=timeout, max_tries=1000),
            # Someone waits at the page for it: a few quick tries, then they ask again.
            func(jobs.self_service_send, timeout=timeout, max_tries=5),
        ],
        "cron_jobs": [
            cron(jobs.sweep, second=set(range(0, 60, every)), timeout=timeout, run_at_startup=True, unique=True),
            cron(jobs.case_sweep, second=set(range(0, 60, every)), timeout=timeout, run_at_startup=True, unique=True),
            # Alerts are once a case: the run only has to notice within minutes.
            cron(jobs.case_alerts, minute=set(range(0, 60, 5)), second=0, timeout=timeout, unique=True),
            # Both act only once their local time has come (the digest time, the day after
            # expires_on); running every few minutes also picks up digests that waited for the
            # end of quiet hours or a retry.
            cron(jobs.digest, minute=set(range(0, 60, 5)), second=30, timeout=timeout, unique=True),
            cron(jobs.lapse, minute=set(range(2, 60, 5)), second=0, timeout=timeout, unique=True),
            cron(jobs.purge_unconfirmed, minute=17, second=0, timeout=timeout, unique=True),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": 0.2,
        # SIGTERM lets running sends finish (up to a job's timeout) instead of cancelling them.
        "job_completion_wait": timeout,
        "keep_result": 3600,
        "handle_signals": True,
    }


def make_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**{**worker_options(settings), **overrides})
