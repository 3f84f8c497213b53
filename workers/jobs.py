"""The job functions arq runs, named by the registry (pushsvc.jobs). Each only unpacks its context
and calls the feature's code; the worker wraps each in `traced` (pushsvc.logs), which puts the
job's id and its request's id on every log line it writes."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry

from pushsvc.cases.alerts import run_case_alerts
from pushsvc.cases.dispatcher import run_case_sweep, send_cases
from pushsvc.delivery.callbacks import run_callbacks
from pushsvc.delivery.deliver import run_deliver
from pushsvc.delivery.digest import run_digest
from pushsvc.delivery.fanout import run_fanout
from pushsvc.delivery.sweeper import run_sweep
from pushsvc.feedback.answers import run_answer_send
from pushsvc.feedback.questions import run_purge_contacts
from pushsvc.metrics import observe_fanout
from pushsvc.policies.lifecycle import run_lapse, run_notify
from pushsvc.policies.messages import load_message
from pushsvc.policies.test_send import run_test_send
from pushsvc.services import Services
from pushsvc.subscriptions.import_jobs import run_import
from pushsvc.subscriptions.self_service import run_purge_unconfirmed, run_self_service_send

log = logging.getLogger(__name__)


def _svc(ctx: dict[str, Any]) -> Services:
    return ctx["svc"]


async def fanout(ctx: dict[str, Any], policy_id: int) -> None:
    began = time.monotonic()
    await run_fanout(_svc(ctx), policy_id)
    seconds = time.monotonic() - began
    log.info("fan-out run for policy %s took %.2f s", policy_id, seconds)
    await observe_fanout(_svc(ctx).redis, seconds)


async def deliver(ctx: dict[str, Any], policy_id: int, channel: str, lo: int, hi: int, notice: int = 0) -> None:
    retry_in = await run_deliver(_svc(ctx), load_message, policy_id, channel, lo, hi, notice)
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def notify(ctx: dict[str, Any], policy_id: int, notice: int) -> int:
    return await run_notify(_svc(ctx), policy_id, notice)


async def digest(ctx: dict[str, Any]) -> int:
    return await run_digest(_svc(ctx))


async def lapse(ctx: dict[str, Any]) -> int:
    return await run_lapse(_svc(ctx))


async def sweep(ctx: dict[str, Any]) -> int:
    return await run_sweep(_svc(ctx))


async def callbacks(ctx: dict[str, Any]) -> int:
    return await run_callbacks(_svc(ctx))


async def case_send(ctx: dict[str, Any], case_id: int) -> None:
    """One case whose next notification waited for a retry (the dispatcher sends the rest)."""
    retry_in = (await send_cases(_svc(ctx), [case_id])).get(case_id)
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def case_sweep(ctx: dict[str, Any]) -> int:
    return await run_case_sweep(_svc(ctx))


async def case_alerts(ctx: dict[str, Any]) -> int:
    return await run_case_alerts(_svc(ctx))


async def self_service_send(ctx: dict[str, Any], kind: str, subscriber_id: int, via: str) -> None:
    """A confirmation or manage link (or code) someone asked for on the public pages."""
    retry_in = await run_self_service_send(_svc(ctx), kind, subscriber_id, via, ctx["job_try"])  # type: ignore[arg-type]
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def purge_unconfirmed(ctx: dict[str, Any]) -> int:
    return await run_purge_unconfirmed(_svc(ctx))


async def test_send(ctx: dict[str, Any], draft_id: int, staff_id: int, locale: str) -> None:
    """A clerk's draft sent to themselves, marked as a test (nothing in the ledger)."""
    await run_test_send(_svc(ctx), draft_id, staff_id, locale)


async def roster_import(ctx: dict[str, Any], import_id: str, start_at: int) -> None:
    """A CSV the console uploaded, imported from data row `start_at` on."""
    await run_import(_svc(ctx), import_id, start_at)


async def answer_send(ctx: dict[str, Any], question_id: int) -> None:
    """A department's answer, to the contact its asker gave."""
    retry_in = await run_answer_send(_svc(ctx), question_id, ctx["job_try"])
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def question_contacts(ctx: dict[str, Any]) -> int:
    return await run_purge_contacts(_svc(ctx))
