"""The figures a department is assessed on, as JSON or as the spreadsheet the assessment office
wants (`format=csv`). The admin page (`pushsvc.web.admin_pages`) shows the same report."""

from __future__ import annotations

from aiohttp import web

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.figures import DepartmentReport, parse_period
from pushsvc.core.quiet_hours import local_date
from pushsvc.http.auth import Caller, caller
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, file_response, int_param, json_response, services
from pushsvc.reports.department import department_report as build_department_report
from pushsvc.reports.spreadsheet import csv_filename, report_csv

FORMATS = ("json", "csv")
DEPARTMENT_ID = Param("department_id", "the department (admin only; a department key reads its own)",
                      schema={"type": "integer", "minimum": 1})
REPORT_QUERY = (
    Param("from", "first local date of the period (default: 1 January this year)", schema={"type": "string", "format": "date"}),
    Param("to", "last local date of the period, included (default: today)", schema={"type": "string", "format": "date"}),
    DEPARTMENT_ID,
    Param("format", "json (default) or csv (UTF-8 with BOM, one row per policy and a total row)",
          schema={"type": "string", "enum": list(FORMATS)}),
)


def department_scope(request: web.Request, who: Caller, *, admin_must_name: bool) -> int | None:
    """The department a request is about: a department key's own (naming another is 403); the
    admin names one with department_id (required when `admin_must_name`, else None means all)."""
    named = int_param(request, "department_id", 0, lo=1, hi=2**63 - 1) if request.query.get("department_id") else None
    if who.is_admin:
        if named is None and admin_must_name:
            raise Problem(422, "the admin names the department", [FieldError("department_id", "is required with the admin token")])
        return named
    if named is not None and named != who.department_id:
        raise Problem(403, "a department key reads its own department's figures only",
                      [FieldError("department_id", "not this key's department")])
    return who.department_id


@endpoint("GET", "/v1/reports/department", summary="A department's figures for assessment over a period, per policy and in total",
          tag="reports", auth="department_or_admin", response=DepartmentReport, errors=(401, 403, 404, 422),
          query=REPORT_QUERY)
async def department_report(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format") or "json"
    if fmt not in FORMATS:
        raise Problem(422, "unknown format", [FieldError("format", "must be json or csv")])
    department_id = department_scope(request, caller(request), admin_must_name=True)
    assert department_id is not None
    first, last = parse_period(request.query.get("from"), request.query.get("to"), local_date(now()))
    report = await build_department_report(services(request).db, department_id, first, last)
    if fmt == "csv":
        return file_response(report_csv(report), csv_filename(report), "text/csv")
    return json_response(report)


