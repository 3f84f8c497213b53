"""The job functions arq runs. Each only unpacks its context and calls the delivery code."""

from __future__ import annotations

from typing import Any

from arq import Retry

from pushsvc.cases.alerts import run_case_alerts
from pushsvc.cases.send import run_case_send, run_case_sweep
from pushsvc.delivery.deliver import run_deliver
from pushsvc.delivery.fanout import run_fanout
from pushsvc.delivery.sweeper import run_sweep
from pushsvc.services import Services


def _svc(ctx: dict[str, Any]) -> Services:
    return ctx["svc"]


async def fanout(ctx: dict[str, Any], policy_id: int) -> None:
    await run_fanout(_svc(ctx), policy_id)


async def deliver(ctx: dict[str, Any], policy_id: int, channel: str, lo: int, hi: int) -> None:
    retry_in = await run_deliver(_svc(ctx), policy_id, channel, lo, hi)
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def sweep(ctx: dict[str, Any]) -> int:
    return await run_sweep(_svc(ctx))


async def case_send(ctx: dict[str, Any], case_id: int) -> None:
    retry_in = await run_case_send(_svc(ctx), case_id)
    if retry_in is not None:
        raise Retry(defer=retry_in)


async def case_sweep(ctx: dict[str, Any]) -> int:
    return await run_case_sweep(_svc(ctx))


async def case_alerts(ctx: dict[str, Any]) -> int:
    return await run_case_alerts(_svc(ctx))
