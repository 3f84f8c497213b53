"""The job registry (every arq job and cron: name, function, retries, schedule), job ids, the
enqueue helpers and the wire format, shared by whatever enqueues and the workers (which run them).

The worker settings (`workers.settings`) are a loop over `JOBS` and `CRONS`. A job names its
function as "module:attribute", resolved by the worker at start: the functions call into every
feature, and this module sits below them all (it imports only settings and logs). Every job's
timeout is PUSHSVC_JOB_TIMEOUT_SECONDS: it is also how long a killed worker's job waits before
arq runs it again.

Jobs are serialised as JSON, not arq's default pickle: whoever can write to Redis must not be
able to run code in the workers. A job started (directly or not) by a request carries its id
(`request_id`, see pushsvc.logs), so the request's and the jobs' log lines can be joined.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from arq import ArqRedis

from pushsvc.logs import job_kwargs
from pushsvc.settings import Settings


@dataclass(frozen=True)
class Job:
    """`name`: what enqueuers pass to arq; `function`: "module:attribute" of an async function
    taking arq's context first; `max_tries`: runs before arq gives the job up."""

    name: str
    function: str
    max_tries: int


class Schedule(TypedDict, total=False):
    """arq's cron fields; left out, `minute` is every minute and `second` is 0 (arq's defaults)."""

    minute: int | set[int]
    second: int | set[int]


@dataclass(frozen=True)
class Cron:
    """A job arq starts on a `schedule` (from the settings); one run at a time (arq's `unique`)."""

    name: str
    function: str
    schedule: Callable[[Settings], Schedule]
    run_at_startup: bool = False


# The ledger bounds a delivery's attempts (PUSHSVC_MAX_ATTEMPTS), not arq: these jobs re-run
# themselves (arq `Retry`) until the ledger says stop, so arq's count is only a backstop.
_LEDGER_BOUNDED = 1000

FANOUT = Job("fanout", "workers.jobs:fanout", _LEDGER_BOUNDED)
DELIVER = Job("deliver", "workers.jobs:deliver", _LEDGER_BOUNDED)
NOTIFY = Job("notify", "workers.jobs:notify", _LEDGER_BOUNDED)
CASE_SEND = Job("case_send", "workers.jobs:case_send", _LEDGER_BOUNDED)
# Someone waits at the page for it: a few quick tries, then they ask again.
SELF_SERVICE_SEND = Job("self_service_send", "workers.jobs:self_service_send", 5)
# A clerk's test of a draft (pushsvc.policies.test_send): they wait for it; one more try at most.
TEST_SEND = Job("test_send", "workers.jobs:test_send", 2)
# A console CSV import, a slice at a time (pushsvc.subscriptions.import_jobs): a repeat re-imports
# at most one slice, whose rows merge into what the first try wrote.
ROSTER_IMPORT = Job("roster_import", "workers.jobs:roster_import", 3)
# A department's answer to a public question (pushsvc.feedback.answers): the asker is not waiting at
# a page, but an answer that never arrives is worse than a late one.
ANSWER_SEND = Job("answer_send", "workers.jobs:answer_send", 10)
JOBS = (FANOUT, DELIVER, NOTIFY, CASE_SEND, SELF_SERVICE_SEND, TEST_SEND, ROSTER_IMPORT, ANSWER_SEND)


def _every_sweep(settings: Settings) -> Schedule:
    return {"second": set(range(0, 60, settings.sweep_every_seconds))}


def _every_five_minutes(minute: int, second: int) -> Callable[[Settings], Schedule]:
    return lambda _: {"minute": set(range(minute, 60, 5)), "second": second}


CRONS = (
    Cron("sweep", "workers.jobs:sweep", _every_sweep, run_at_startup=True),
    Cron("case_sweep", "workers.jobs:case_sweep", _every_sweep, run_at_startup=True),
    # Alerts are once a case: the run only has to notice within minutes.
    Cron("case_alerts", "workers.jobs:case_alerts", _every_five_minutes(0, 0)),
    # Both act only once their local time has come (the digest time, the day after expires_on);
    # running every few minutes also picks up digests that waited for the end of quiet hours or a retry.
    Cron("digest", "workers.jobs:digest", _every_five_minutes(0, 30)),
    Cron("lapse", "workers.jobs:lapse", _every_five_minutes(2, 0)),
    Cron("purge_unconfirmed", "workers.jobs:purge_unconfirmed", lambda _: {"minute": 17, "second": 0}),
    # Questions' contacts whose retention is over (pushsvc.feedback.questions).
    Cron("question_contacts", "workers.jobs:question_contacts", lambda _: {"minute": 23, "second": 0}),
    # Departments' status callbacks, apart from sending (pushsvc.delivery.callbacks).
    Cron("callbacks", "workers.jobs:callbacks",
         lambda s: {"second": set(range(0, 60, s.callback_every_seconds))}, run_at_startup=True),
)


async def enqueue(redis: ArqRedis, job: Job, *args: Any, **options: Any) -> None:
    """Enqueue `job` with `args` and arq's `options` (_job_id, _defer_by, ...), carrying the request id."""
    await redis.enqueue_job(job.name, *args, **options, **job_kwargs())


def job_serializer(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def job_deserializer(data: bytes) -> dict[str, Any]:
    return json.loads(data)


# The urgent lane's arq queue, served by a worker of its own in every worker process
# (workers.settings): a running fan-out's jobs never stand before an urgent policy's.
URGENT_QUEUE = "arq:queue:urgent"


def _queue(urgent: bool) -> str | None:
    """arq's `_queue_name`: None is its default queue."""
    return URGENT_QUEUE if urgent else None


def fanout_job_id(policy_id: int, after: int = 0) -> str:
    return f"fanout:{policy_id}:{after}"


def deliver_job_id(policy_id: int, channel: str, lo: int, hi: int, notice: int = 0) -> str:
    """Notice 0 is the policy itself; a lifecycle notice's batches get ids of their own."""
    return f"deliver:{policy_id}:{channel}:{lo}-{hi}" + (f":n{notice}" if notice else "")


def notify_job_id(policy_id: int, notice: int) -> str:
    return f"notify:{policy_id}:{notice}"


async def enqueue_fanout(redis: ArqRedis, policy_id: int, after: int = 0, *, at: datetime | None = None,
                         job_id: str | None = None, urgent: bool = False) -> None:
    await enqueue(redis, FANOUT, policy_id, _job_id=job_id or fanout_job_id(policy_id, after), _defer_until=at,
                  _queue_name=_queue(urgent))


async def enqueue_deliver(redis: ArqRedis, policy_id: int, channel: str, lo: int, hi: int,
                          *, job_id: str | None = None, notice: int = 0, urgent: bool = False) -> None:
    await enqueue(redis, DELIVER, policy_id, channel, lo, hi, notice,
                  _job_id=job_id or deliver_job_id(policy_id, channel, lo, hi, notice), _queue_name=_queue(urgent))


async def enqueue_deliver_ranges(redis: ArqRedis, rows: AsyncIterable[tuple[int, int, str, int]], size: int,
                                 tag: str, urgent: bool = False) -> int:
    """Deliver jobs for ledger rows already written, as the fan-out cuts them: one per policy,
    notice, channel and run of at most `size` subscribers. `rows`: (policy, notice, channel,
    subscriber), in that order. The ids carry `tag` (when and why): a job of the same range kept
    from an earlier sending must not swallow this one. Returns how many jobs it enqueued."""
    enqueued = 0
    key: tuple[int, int, str] = (0, 0, "")
    sids: list[int] = []
    async for policy_id, notice, channel, sid in rows:
        if sids and (key != (policy_id, notice, channel) or len(sids) == size):
            await _enqueue_range(redis, key, sids, tag, urgent)
            enqueued, sids = enqueued + 1, []
        key = (policy_id, notice, channel)
        sids.append(sid)
    if sids:
        await _enqueue_range(redis, key, sids, tag, urgent)
        enqueued += 1
    return enqueued


async def _enqueue_range(redis: ArqRedis, key: tuple[int, int, str], sids: list[int], tag: str, urgent: bool) -> None:
    policy_id, notice, channel = key
    lo, hi = sids[0], sids[-1]
    await enqueue_deliver(redis, policy_id, channel, lo, hi, notice=notice,
                          job_id=f"{deliver_job_id(policy_id, channel, lo, hi, notice)}:{tag}", urgent=urgent)


async def enqueue_case_send(redis: ArqRedis, case_id: int, delay: float) -> None:
    """A case's retry, `delay` seconds on (pushsvc.cases.dispatcher). The id carries the second it is
    due: an earlier retry's job, kept after it ran, must not swallow this one."""
    due = int(time.time() + delay)
    await enqueue(redis, CASE_SEND, case_id, _job_id=f"case:{case_id}:at{due}", _defer_by=delay)


async def enqueue_notify(redis: ArqRedis, policy_id: int, notice: int) -> None:
    """Hand a lifecycle notice's ledger rows to deliver jobs (pushsvc.policies.lifecycle)."""
    await enqueue(redis, NOTIFY, policy_id, notice, _job_id=notify_job_id(policy_id, notice))
