"""`/console/audit`: who read or changed whose personal data. Staff see their department's entries
(those of its keys and its staff); an overseer every department's, with a department filter.
Filters by subscriber, actor and period (local dates), paged. The log is read through
`pushsvc.subscriptions.audit`, as `GET /v1/audit` reads it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.console.session import console_endpoint, console_page, require
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.figures import EARLIEST, LATEST, parse_period
from pushsvc.core.quiet_hours import LOCAL_ZONE, local_date
from pushsvc.http.routing import services
from pushsvc.subscriptions.audit import read_log

PAGE_SIZE = 100
FILTERS = ("subscriber", "actor", "from", "to", "department")


def _number(raw: str, name: str, errors: list[FieldError]) -> int | None:
    if not raw:
        return None
    if raw.isdigit() and 0 < int(raw) < 2**63:
        return int(raw)
    errors.append(FieldError(name, "must be a whole number"))
    return None


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "at": entry["at"].astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M:%S"),
            "detail": json.dumps(entry["detail"], ensure_ascii=False, sort_keys=True) if entry["detail"] else ""}


@console_endpoint("GET", "/console/audit", summary="The audit log of the department (an overseer's: every department's)")
async def audit_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    filters = {name: request.query.get(name, "").strip() for name in FILTERS}
    errors: list[FieldError] = []
    subscriber_id = _number(filters["subscriber"], "subscriber", errors)
    after = _number(request.query.get("after", ""), "after", errors) or 0
    department_id = staff.department_id
    if staff.is_overseer:
        department_id = _number(filters["department"], "department", errors)
    try:
        first, last = parse_period(filters["from"] or EARLIEST.isoformat(), filters["to"] or LATEST.isoformat(),
                                   local_date(now()))
    except ValidationFailed as exc:
        errors += exc.errors
    if len(filters["actor"]) > 80:
        errors.append(FieldError("actor", "may be at most 80 characters"))
    entries: list[dict[str, Any]] = []
    if not errors:
        entries = await read_log(services(request), department_id=department_id, subscriber_id=subscriber_id,
                                 first=first, last=last, after_id=after, limit=PAGE_SIZE + 1,
                                 actor=filters["actor"] or None)
    more = len(entries) > PAGE_SIZE
    entries = entries[:PAGE_SIZE]
    next_href = f"/console/audit?{urlencode({**filters, 'after': entries[-1]['id']})}" if more else None
    return console_page(request, "audit.html", staff, status=422 if errors else 200, filters=filters,
                        errors={e.field: e.message for e in errors}, entries=[_shown(e) for e in entries],
                        next_href=next_href, overseer=staff.is_overseer)
