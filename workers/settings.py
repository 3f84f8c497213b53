"""How a pushsvc worker is configured: the jobs and crons of the registry (pushsvc.jobs) with their
functions, the services they share, the case dispatcher each worker runs."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron
from arq.worker import Worker, func

from pushsvc.cases.dispatcher import run_dispatcher
from pushsvc.channels import build_channels
from pushsvc.jobs import CRONS, JOBS, job_deserializer, job_serializer
from pushsvc.logs import traced
from pushsvc.services import open_services, redis_settings
from pushsvc.settings import Settings

JobFunction = Callable[..., Awaitable[Any]]


def job_function(path: str) -> JobFunction:
    """The async function a registry entry names ("module:attribute"), traced: its log lines carry
    the job's id and the id of the request that enqueued it."""
    module, _, name = path.partition(":")
    function = getattr(importlib.import_module(module), name)
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"job function {path} is not an async function")
    return traced(function)


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

    return {
        # Every job has the one timeout (pushsvc.jobs says why it is short).
        "functions": [
            func(job_function(job.function), name=job.name, timeout=timeout, max_tries=job.max_tries) for job in JOBS
        ],
        "cron_jobs": [
            cron(job_function(c.function), name=f"cron:{c.name}", timeout=timeout, run_at_startup=c.run_at_startup,
                 unique=True, **c.schedule(settings))
            for c in CRONS
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
