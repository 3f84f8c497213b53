"""The audit log: who read or changed whose personal data, when, and under which request."""

from __future__ import annotations

from aiohttp import web

from pushsvc.api.reports import DEPARTMENT_ID, department_scope
from pushsvc.core.clock import now
from pushsvc.core.figures import EARLIEST, LATEST, parse_period
from pushsvc.core.models import AuditEntry, AuditPage
from pushsvc.core.quiet_hours import local_date
from pushsvc.http.auth import caller
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
from pushsvc.subscriptions.audit import read_log


@endpoint("GET", "/v1/audit", summary="The audit log: a department's own entries, the admin's every one",
          tag="audit", auth="department_or_admin", response=AuditPage, errors=(401, 403, 422),
          query=(Param("subscriber_id", "entries about this subscriber", schema={"type": "integer", "minimum": 1}),
                 Param("from", "first local date (default: the first entry)", schema={"type": "string", "format": "date"}),
                 Param("to", "last local date, included (default: the latest entry)", schema={"type": "string", "format": "date"}),
                 DEPARTMENT_ID, LIMIT, CURSOR))
async def get_audit(request: web.Request) -> web.Response:
    department_id = department_scope(request, caller(request), admin_must_name=False)
    subscriber_id = (int_param(request, "subscriber_id", lo=1, hi=2**63 - 1)
                     if request.query.get("subscriber_id") else None)
    # No period given is the whole log: the widest dates parse_period accepts.
    first, last = parse_period(request.query.get("from") or EARLIEST.isoformat(),
                               request.query.get("to") or LATEST.isoformat(), local_date(now()))
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    rows = await read_log(services(request), department_id=department_id, subscriber_id=subscriber_id,
                          first=first, last=last, after_id=after_cursor(request), limit=limit + 1)
    items = [AuditEntry(**r) for r in rows[:limit]]
    more = len(rows) > limit
    return json_response(AuditPage(items=items, next_cursor=next_cursor(items[-1].id) if more else None))
