"""Cases: a department's business system creates a case and posts each step; applicants are told."""

from __future__ import annotations

import logging

from aiohttp import web

from pushsvc.cases.erase import erase_applicant
from pushsvc.cases.intake import CaseIntake, checked_event
from pushsvc.cases.opening import open_case
from pushsvc.cases.view import case_out, own_case
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.models import CaseEventIn, CaseEventResult, CaseIn, CaseOut, CasePage
from pushsvc.core.quiet_hours import local_date
from pushsvc.http.auth import caller
from pushsvc.http.problems import invalid
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
from pushsvc.store.cases import list_cases

log = logging.getLogger(__name__)
CASE_ERRORS = (400, 401, 404, 413, 422)

# One per application: it groups the events of all requests in flight (pushsvc.cases.intake).
CASE_INTAKE = web.AppKey("case_intake", CaseIntake)


@endpoint("POST", "/v1/cases", summary="Open a case for an applicant (channels default to SMS)", tag="cases",
          auth="department", body=CaseIn, response=CaseOut, status=201, errors=(*CASE_ERRORS, 409))
async def post_case(request: web.Request) -> web.Response:
    data = parse_model(CaseIn, await json_body(request))
    out = await open_case(services(request), caller(request).department_id or 0, data)
    return json_response(out, status=201)


@endpoint("POST", "/v1/cases/{case_no}/events", summary="Post a step of a case: 202 accepted (the applicant is "
          "told), 200 a repeated event_id (nothing sent again), 409 a move the case cannot make", tag="cases",
          auth="department", body=CaseEventIn, response=CaseEventResult, status=202, errors=(*CASE_ERRORS, 409),
          also=(200,))
async def post_case_event(request: web.Request) -> web.Response:
    event = checked_event(parse_model(CaseEventIn, await json_body(request)))
    accepted = await request.app[CASE_INTAKE].submit(caller(request).department_id or 0,
                                                     request.match_info["case_no"], event)
    return json_response(accepted.result, status=accepted.status)


@endpoint("GET", "/v1/cases/{case_no}", summary="A case with its timeline", tag="cases", auth="department",
          response=CaseOut, errors=(401, 404))
async def get_case(request: web.Request) -> web.Response:
    return json_response(await own_case(services(request), caller(request).department_id or 0,
                                        request.match_info["case_no"]))


@endpoint("DELETE", "/v1/cases/{case_no}/applicant", summary="Erase the applicant: name, contacts and notes go; "
          "the case and its timeline stay for the figures, and further events tell nobody", tag="cases",
          auth="department", status=204, errors=(401, 404))
async def delete_case_applicant(request: web.Request) -> web.Response:
    who = caller(request)
    await erase_applicant(services(request), who.department_id or 0, request.match_info["case_no"], who.actor)
    return web.Response(status=204)


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
