"""The job registry (pushsvc.jobs) is what the worker runs: every entry resolves to an async job
function, and the worker's arq settings carry the registry's names, retries and schedules."""

from __future__ import annotations

import inspect

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.jobs import Job
from arq.worker import Function

from pushsvc.jobs import (
    CRONS,
    JOBS,
    NOTIFY,
    SELF_SERVICE_SEND,
    enqueue_notify,
    job_deserializer,
    job_serializer,
    notify_job_id,
)
from pushsvc.logs import log_context
from pushsvc.settings import Settings
from pushsvc.subscriptions.self_service import enqueue_send
from workers import jobs as job_functions
from workers.settings import job_function, worker_options


@pytest.fixture
def options() -> dict[str, object]:
    settings = Settings(admin_token="a" * 16, secret_key="k" * 32, sweep_every_seconds=15, job_timeout_seconds=45,
                        _env_file=None)  # type: ignore[call-arg]
    return worker_options(settings)


def test_every_entry_names_an_async_function_taking_the_context() -> None:
    entries = [*JOBS, *CRONS]
    assert len({e.name for e in entries}) == len(entries) == 16
    for entry in entries:
        function = job_function(entry.function)
        assert inspect.iscoroutinefunction(function), entry
        assert next(iter(inspect.signature(inspect.unwrap(function)).parameters)) == "ctx", entry


def test_every_job_function_is_in_the_registry() -> None:
    defined = {name for name, f in vars(job_functions).items()
               if inspect.iscoroutinefunction(f) and f.__module__ == job_functions.__name__}
    assert defined == {e.function.partition(":")[2] for e in [*JOBS, *CRONS]}


def test_a_name_that_is_no_async_function_stops_the_worker() -> None:
    with pytest.raises(TypeError, match="not an async function"):
        job_function("pushsvc.jobs:job_serializer")


def test_the_worker_runs_the_registry(options: dict[str, object]) -> None:
    functions = {f.name: f for f in options["functions"]}  # type: ignore[attr-defined]
    assert {name: (f.timeout_s, f.max_tries) for name, f in functions.items()} == {
        "fanout": (45, 1000), "deliver": (45, 1000), "notify": (45, 1000), "case_send": (45, 1000),
        "self_service_send": (45, 5), "test_send": (45, 2), "roster_import": (45, 3), "answer_send": (45, 10),
    }
    assert all(isinstance(f, Function) for f in functions.values())
    crons: dict[str, CronJob] = {c.name: c for c in options["cron_jobs"]}  # type: ignore[attr-defined]
    every_15 = {0, 15, 30, 45}
    assert {name: (c.minute, c.second, c.run_at_startup, c.unique, c.timeout_s) for name, c in crons.items()} == {
        "cron:sweep": (None, every_15, True, True, 45),
        "cron:case_sweep": (None, every_15, True, True, 45),
        "cron:case_alerts": (set(range(0, 60, 5)), 0, False, True, 45),
        "cron:digest": (set(range(0, 60, 5)), 30, False, True, 45),
        "cron:lapse": (set(range(2, 60, 5)), 0, False, True, 45),
        "cron:purge_unconfirmed": (17, 0, False, True, 45),
        "cron:question_contacts": (23, 0, False, True, 45),
        "cron:callbacks": (None, set(range(0, 60, 5)), True, True, 45),
    }


async def test_enqueuers_use_the_registry_names_ids_and_the_request_id(redis_url: str) -> None:
    redis = await create_pool(RedisSettings.from_dsn(redis_url), job_serializer=job_serializer,
                              job_deserializer=job_deserializer)
    try:
        with log_context(request_id="req-1"):
            await enqueue_notify(redis, 7, 2)
            await enqueue_send(redis, "confirmation", 9, "email")
        notify = await Job(notify_job_id(7, 2), redis, _deserializer=job_deserializer).info()
        assert notify is not None
        assert (notify.function, notify.args, notify.kwargs) == (NOTIFY.name, [7, 2], {"request_id": "req-1"})  # JSON
        queued = [await Job(job_id.decode().removeprefix("arq:job:"), redis, _deserializer=job_deserializer).info()
                  async for job_id in redis.scan_iter(match="arq:job:*")]
        assert {(j.function, tuple(j.args)) for j in queued if j} == {
            (NOTIFY.name, (7, 2)), (SELF_SERVICE_SEND.name, ("confirmation", 9, "email"))
        }
    finally:
        await redis.aclose()
