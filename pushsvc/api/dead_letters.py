"""The dead-letter view: failed deliveries across a department's policies, with why and whether
trying again can help; and trying the temporary failures of a policy again."""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from pushsvc.api.policies import CHANNELS, own_policy
from pushsvc.api.reports import DEPARTMENT_ID, department_scope
from pushsvc.core.errors import FieldError
from pushsvc.core.figures import failure_reason
from pushsvc.delivery.retry_failed import retry_failed as retry_failed_deliveries
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem
from pushsvc.http.routing import (
    CURSOR,
    LIMIT,
    Param,
    after_cursor,
    endpoint,
    int_param,
    json_response,
    next_cursor,
    services,
)
from pushsvc.store import audit
from pushsvc.store.dead_letters import department_deliveries
from pushsvc.store.policies import STATUSES

log = logging.getLogger(__name__)


class LedgerItem(BaseModel):
    id: int
    policy_id: int
    notice: int = Field(description="0: the policy's own message; n > 0: its n-th lifecycle notice")
    subscriber_id: int
    channel: str
    status: str
    attempts: int
    error: str | None
    reason: str | None = Field(description="the error's short code, as the report groups failures")
    retryable: bool = Field(description="a temporary failure that ran out of attempts: retry-failed sends it again")
    updated_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerItem]
    next_cursor: str | None


class RetryFailedOut(BaseModel):
    requeued: int = Field(description="temporary failures queued again (lifecycle notices included), with a fresh set of attempts")
    by_channel: dict[str, int]
    still_failed: int = Field(description="permanent failures, left as they are")


@endpoint("GET", "/v1/deliveries", summary="Deliveries across the department's policies by status: the dead letters with status=failed",
          tag="deliveries", auth="department_or_admin", response=LedgerPage, errors=(401, 403, 422),
          query=(Param("status", "default failed", schema={"type": "string", "enum": list(STATUSES)}),
                 Param("channel", "filter by channel", schema={"type": "string", "enum": list(CHANNELS)}),
                 DEPARTMENT_ID, LIMIT, CURSOR))
async def list_deliveries(request: web.Request) -> web.Response:
    status = request.query.get("status") or "failed"
    channel = request.query.get("channel") or None
    if status not in STATUSES:
        raise Problem(422, "unknown status", [FieldError("status", f"must be one of {', '.join(STATUSES)}")])
    if channel is not None and channel not in CHANNELS:
        raise Problem(422, "unknown channel", [FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])
    department_id = department_scope(request, caller(request), admin_must_name=False)
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    async with services(request).db.read() as conn:
        rows = await department_deliveries(conn, department_id, status=status, channel=channel,
                                           after_id=after_cursor(request), limit=limit + 1)
    items = []
    for row in rows[:limit]:
        reason, retryable = failure_reason(row["error"]) if row["status"] == "failed" else (None, False)
        items.append(LedgerItem(**row, reason=reason, retryable=retryable))
    more = len(rows) > limit
    await audit.record(services(request), caller(request).actor, "deliveries.read", [i.subscriber_id for i in items],
                       status=status)
    return json_response(LedgerPage(items=items, next_cursor=next_cursor(items[-1].id) if more else None))


@endpoint("POST", "/v1/policies/{id}/retry-failed", summary="Send the policy's temporary failures again (permanent ones stay failed)",
          tag="deliveries", auth="department_or_admin", response=RetryFailedOut, status=202, errors=(401, 404))
async def retry_failed(request: web.Request) -> web.Response:
    policy = await own_policy(request)
    done = await retry_failed_deliveries(services(request), policy["id"])
    return json_response(RetryFailedOut(requeued=done.total, by_channel=done.by_channel,
                                        still_failed=done.still_failed), status=202)
