"""How a pushsvc worker is configured: the jobs and crons of the registry (pushsvc.jobs) with their
functions, the services they share, the case dispatcher each worker runs."""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import inspect
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron
from arq.constants import default_queue_name
from arq.worker import Worker, func

from pushsvc.cases.dispatcher import run_dispatcher
from pushsvc.channels import build_channels
from pushsvc.jobs import CRONS, DELIVER, FANOUT, JOBS, URGENT_QUEUE, job_deserializer, job_serializer
from pushsvc.logs import configure_logging, traced
from pushsvc.services import open_services, redis_settings
from pushsvc.settings import Settings

JobFunction = Callable[..., Awaitable[Any]]
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_LANE_NICENESS = -5


def job_function(path: str) -> JobFunction:
    """The async function a registry entry names ("module:attribute"), traced: its log lines carry
    the job's id and the id of the request that enqueued it."""
    module, _, name = path.partition(":")
    function = getattr(importlib.import_module(module), name)
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"job function {path} is not an async function")
    return traced(function)


def worker_options(settings: Settings, *, urgent: bool = False) -> dict[str, Any]:
    """The main worker's options, or (`urgent`) the urgent lane's: its own queue, the fan-out and
    deliver jobs only, no crons and no case dispatcher."""
    timeout = settings.job_timeout_seconds

    async def startup(ctx: dict[str, Any]) -> None:
        svc = await open_services(settings)
        svc.channels = build_channels(svc.settings, svc.renderer, svc.signer)
        for channel in svc.channels.values():
            await channel.start()
        ctx["svc"] = svc
        if urgent:
            return
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
            func(job_function(job.function), name=job.name, timeout=timeout, max_tries=job.max_tries)
            for job in ((FANOUT, DELIVER) if urgent else JOBS)
        ],
        "cron_jobs": [] if urgent else [
            cron(job_function(c.function), name=f"cron:{c.name}", timeout=timeout, run_at_startup=c.run_at_startup,
                 unique=True, **c.schedule(settings))
            for c in CRONS
        ],
        "queue_name": URGENT_QUEUE if urgent else default_queue_name,
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


def run_lane(settings: Settings, overrides: dict[str, Any], parent: int) -> None:
    """The urgent lane's worker, in a child process of `pushsvc worker` (spawned: a fresh
    interpreter). It dies with its parent, however that ends (Linux: PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return  # the parent died (a SIGKILL) before the death signal was armed
    try:
        # Ahead of the fan-out for the CPU, where the system allows it (CAP_SYS_NICE): on a busy
        # machine a process of its own alone still got a small share (bench.urgent).
        os.nice(_LANE_NICENESS)
    except PermissionError:
        pass
    configure_logging(settings.log_format or "json")
    Worker(**{**worker_options(settings, urgent=True), **overrides}).run()


class LanesWorker(Worker):
    """The main queue's worker, with the urgent lane's worker in a child process: its own queue,
    job slots, channel connections (SMTP sessions, HTTP pools) and event loop, scheduled by the
    system beside this one, so that a fan-out running here (its CPU-bound stretches included) cannot
    hold up an urgent policy's sends through a shared event loop. The lane starts and stops with
    this worker: a SIGTERM here is passed on and waited for."""

    def __init__(self, settings: Settings, overrides: dict[str, Any], **options: Any) -> None:
        super().__init__(**options)
        context = multiprocessing.get_context("spawn")
        self.lane = context.Process(target=run_lane, args=(settings, overrides, os.getpid()),
                                    name="pushsvc-urgent-lane")

    async def main(self) -> None:
        self.lane.start()
        try:
            await super().main()
        finally:
            if self.burst:  # the lane ends by itself once its queue is empty
                await asyncio.to_thread(self.lane.join)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._pass_on(signum)
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: signal.Signals) -> None:
        self._pass_on(signum)
        super().handle_sig(signum)

    def _pass_on(self, signum: signal.Signals) -> None:
        if self.lane.pid is not None and self.lane.is_alive():
            os.kill(self.lane.pid, signum)

    async def close(self) -> None:
        await super().close()
        if not self.burst:
            self._pass_on(signal.SIGTERM)  # a signal that came before the lane started did not reach it
        if self.lane.pid is not None:
            # As long as the lane's own running jobs may take to finish, then it is stopped.
            await asyncio.to_thread(self.lane.join, (self._job_completion_wait or 0) + 10)
            if self.lane.is_alive():
                self.lane.kill()
                await asyncio.to_thread(self.lane.join)


def make_worker(settings: Settings, **overrides: Any) -> Worker:
    return LanesWorker(settings, overrides, **{**worker_options(settings), **overrides})
