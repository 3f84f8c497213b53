"""Cases: a department's business system creates a case and posts each step; applicants are told."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.cases.intake import CaseIntake
from pushsvc.cases.messages import case_page_token, case_path, urls
from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.channels.base import Recipient
from pushsvc.core.case_states import INITIAL, OPEN, allowed_next
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.identifiers import normalise_email, normalise_phone
from pushsvc.core.models import (
    CaseEventIn,
    CaseEventOut,
    CaseEventResult,
    CaseIn,
    CaseOut,
    CasePage,
)
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.workdays import add_working_days
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem, invalid
from pushsvc.http.routing import (
    CURSOR,
    LIMIT,
    Param,
    after_cursor,
    endpoint,
    int_param,
    json_body,
    json_response,
    next_cursor,
    parse_model,
    services,
)
from pushsvc.services import Services
from pushsvc.store.cases import (
    DuplicateCase,
    find_case,
    insert_case,
    list_cases,
    set_links,
    timeline,
)
from pushsvc.store.short_links import short_code

log = logging.getLogger(__name__)
# A business system's clock may run a little ahead of ours; an event further in the future would
# make every real event after it look old.
FUTURE_SLACK = timedelta(minutes=5)
CASE_ERRORS = (400, 401, 404, 413, 422)

# One per application: it groups the events of all requests in flight (pushsvc.cases.intake).
CASE_INTAKE = web.AppKey("case_intake", CaseIntake)


def _contacts(data: CaseIn) -> tuple[Recipient, list[FieldError]]:
    """The applicant's normalised contacts (as a Recipient, which channels can address), and what is wrong."""
    a, errors = data.applicant, []
    email = phone = None
    try:
        email = normalise_email(a.email) if a.email else None
    except ValueError as exc:
        errors.append(FieldError("applicant.email", str(exc)))
    try:
        phone = normalise_phone(a.phone) if a.phone else None
    except ValueError as exc:
        errors.append(FieldError("applicant.phone", str(exc)))
    contacts = Recipient(0, 0, a.name, data.locale, email=email, phone=phone, wechat_openid=a.wechat_openid)
    for i, channel in enumerate(data.channels):
        address = CHANNEL_CONTACTS.get(channel)
        if address is None:
            errors.append(FieldError(f"channels[{i}]", f"unknown channel '{channel}'"))
        elif address(contacts) is None and not any(e.field.startswith("applicant.") for e in errors):
            errors.append(FieldError(f"channels[{i}]", f"channel {channel} needs a contact for it in applicant"))
    return contacts, errors


def case_out(svc: Services, case: dict[str, Any], events: list[dict[str, Any]]) -> CaseOut:
    page, short = urls(svc.settings.public_url, case)
    today = local_date(now())
    return CaseOut(
        case_no=case["case_no"], service_item=case["service_item"], status=case["status"],
        allowed_next=allowed_next(case["status"]), channels=case["channels"], locale=case["locale"],
        time_limit_days=case["time_limit_days"], due_on=case["due_on"],
        overdue=case["status"] in OPEN and case["due_on"] is not None and case["due_on"] < today,
        page_url=page, short_url=short, created_at=case["created_at"],
        events=[CaseEventOut(**e) for e in events],
    )


@endpoint("POST", "/v1/cases", summary="Open a case for an applicant (channels default to SMS)", tag="cases",
          auth="department", body=CaseIn, response=CaseOut, status=201, errors=(*CASE_ERRORS, 409))
async def post_case(request: web.Request) -> web.Response:
    svc = services(request)
    data = parse_model(CaseIn, await json_body(request))
    contacts, errors = _contacts(data)
    if errors:
        raise invalid(errors)
    department_id = caller(request).department_id
    at = now()
    started_on = local_date(at)
    row = {
        "department_id": department_id, "case_no": data.case_no, "service_item": data.service_item.strip(),
        "applicant_name": data.applicant.name.strip(), "email": contacts.email, "phone": contacts.phone,
        "wechat_openid": contacts.wechat_openid, "locale": data.locale,
        "channels": list(dict.fromkeys(data.channels)), "status": INITIAL,
        "time_limit_days": data.time_limit_days, "started_on": started_on,
        "due_on": add_working_days(started_on, data.time_limit_days) if data.time_limit_days else None,
        "created_at": at, "updated_at": at,
    }
    try:
        async with svc.db.write() as conn:
            # The page token names the case by id, known only once the row exists: insert, then fill in.
            row["page_token"], row["short_code"] = "", ""
            case_id = await insert_case(conn, row)
            token = case_page_token(svc.signer, case_id)
            code = await short_code(conn, case_path(token))
            case = await set_links(conn, case_id, token, code)
    except DuplicateCase:
        raise Problem(409, f"case {data.case_no} exists", [FieldError("case_no", "already used by this department")]) from None
    return json_response(case_out(svc, case, []), status=201)


async def _own_case(conn: AsyncConnection, request: web.Request) -> dict[str, Any]:
    case = await find_case(conn, caller(request).department_id or 0, request.match_info["case_no"])
    if case is None:  # another department's case is as unknown as a missing one
        raise Problem(404, "no such case")
    return case


@endpoint("POST", "/v1/cases/{case_no}/events", summary="Post a step of a case: 202 accepted (the applicant is "
          "told), 200 a repeated event_id (nothing sent again), 409 a move the case cannot make", tag="cases",
          auth="department", body=CaseEventIn, response=CaseEventResult, status=202, errors=(*CASE_ERRORS, 409),
          also=(200,))
async def post_case_event(request: web.Request) -> web.Response:
    data = parse_model(CaseEventIn, await json_body(request))
    if data.occurred_at > now() + FUTURE_SLACK:
        raise invalid([FieldError("occurred_at", "is in the future")])
    if data.status == "supplement_required" and not (data.note or "").strip():
        raise invalid([FieldError("note", "list the materials the applicant must supply")])
    event = {"event_id": data.event_id, "status": data.status, "occurred_at": data.occurred_at, "note": data.note}
    accepted = await request.app[CASE_INTAKE].submit(caller(request).department_id or 0,
                                                     request.match_info["case_no"], event)
    return json_response(accepted.result, status=accepted.status)


@endpoint("GET", "/v1/cases/{case_no}", summary="A case with its timeline", tag="cases", auth="department",
          response=CaseOut, errors=(401, 404))
async def get_case(request: web.Request) -> web.Response:
    svc = services(request)
    async with svc.db.read() as conn:
        case = await _own_case(conn, request)
        events = await timeline(conn, case["id"])
    return json_response(case_out(svc, case, events))


@endpoint("GET", "/v1/cases", summary="The department's cases; overdue=true: only open ones past their due date",
          tag="cases", auth="department", response=CasePage, errors=(401, 422),
          query=(Param("overdue", "true: only the late ones", schema={"type": "boolean"}), LIMIT, CURSOR))
async def get_cases(request: web.Request) -> web.Response:
    svc = services(request)
    overdue = request.query.get("overdue", "false").lower()
    if overdue not in ("true", "false"):
        raise invalid([FieldError("overdue", "must be true or false")])
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    async with svc.db.read() as conn:
        rows = await list_cases(conn, caller(request).department_id or 0, after_cursor(request), limit + 1,
                                local_date(now()) if overdue == "true" else None)
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response(CasePage(items=[case_out(svc, r, []) for r in rows],
                                  next_cursor=next_cursor(rows[-1]["id"]) if more else None))
