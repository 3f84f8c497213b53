"""The console's figures: the department report for a period with its charts and CSV (what the
operator's /admin page shows, built by the same functions), and for the city's overseer every
department side by side with the city's totals. Staff see only their own department's."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.channels import CHANNELS
from pushsvc.console.session import LANG, console_endpoint, console_page, page_lang, require
from pushsvc.core.clock import now
from pushsvc.core.figures import DepartmentRef, DepartmentReport, ReportTotals, duration, totals
from pushsvc.core.quiet_hours import local_date, local_time
from pushsvc.http.routing import Param, file_response, services
from pushsvc.i18n import Words, words
from pushsvc.reports.department import department_report
from pushsvc.reports.figures_page import FUNNEL_MAX, asked_period, channel_names, charts
from pushsvc.reports.spreadsheet import csv_filename, report_csv
from pushsvc.staff.rights import Staff
from pushsvc.store.reports import department_refs

PERIOD = (Param("from", "first local date (default: 1 January this year)", schema={"type": "string", "format": "date"}),
          Param("to", "last local date, included (default: today)", schema={"type": "string", "format": "date"}))
FORMAT = Param("format", "html (default) or csv: the report as the spreadsheet the API gives",
               schema={"type": "string", "enum": ["html", "csv"]})
DEPARTMENT = Param("department_id", "overseer: the department (default: the first by name)",
                   schema={"type": "integer", "minimum": 1})


async def _choice(
    request: web.Request, staff: Staff, t: Words
) -> tuple[list[DepartmentRef], int | None, date, date, dict[str, str]]:
    """The departments an overseer picks from, the department shown (staff: their own), the
    period, and what is wrong with the query (field -> message in the page's words)."""
    first, last, errors = asked_period(request.query.get("from"), request.query.get("to"), local_date(now()), t)
    if not staff.is_overseer:
        return [], staff.department_id, first, last, errors
    async with services(request).db.read() as conn:
        departments = await department_refs(conn)
    raw = request.query.get("department_id", "")
    chosen = next((d for d in departments if str(d.id) == raw), None) if raw else next(iter(departments), None)
    if raw and chosen is None:
        errors["department_id"] = t.gettext("No such department.")
    return departments, chosen.id if chosen else None, first, last, errors


@console_endpoint("GET", "/console/figures", summary="The department's figures and charts for a period, or its CSV spreadsheet",
                  query=(*PERIOD, DEPARTMENT, FORMAT, LANG), errors=(403, 422))
async def figures_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, "read")
    t = words(page_lang(request))
    departments, department_id, first, last, errors = await _choice(request, staff, t)
    report = None
    if department_id is not None and not errors:
        report = await department_report(services(request).db, department_id, first, last)
    if report is not None and request.query.get("format") == "csv":
        response = file_response(report_csv(report), csv_filename(report), "text/csv")
        response.headers["Cache-Control"] = "no-store"
        return response
    query = {"from": first.isoformat(), "to": last.isoformat()}
    if staff.is_overseer and department_id is not None:
        query["department_id"] = str(department_id)
    return console_page(
        request, "figures.html", staff, status=422 if errors else 200,
        report=report, charts=charts(report, t) if report else None, errors=errors, departments=departments,
        chosen_id=department_id, raw_from=request.query.get("from", first.isoformat()),
        raw_to=request.query.get("to", last.isoformat()), channels=list(CHANNELS), channel_names=channel_names(t),
        csv_url=f"/console/figures?{urlencode({**query, 'format': 'csv'})}", city_url=f"/console/figures/city?{urlencode(query)}",
        duration=duration, local_time=local_time, funnel_max=FUNNEL_MAX,
    )


def city_totals(reports: list[DepartmentReport]) -> ReportTotals:
    """Every department's policies together. Times to delivery are per department: their medians
    do not combine, so the city's row leaves them out."""
    return totals([p for r in reports for p in r.policies], [], list(CHANNELS))


@console_endpoint("GET", "/console/figures/city", summary="Overseer: every department's figures side by side, with the city's totals",
                  query=(*PERIOD, LANG), errors=(403, 422))
async def city_page(request: web.Request) -> web.Response:
    staff = await require(request, "read_city")
    svc = services(request)
    t = words(page_lang(request))
    first, last, errors = asked_period(request.query.get("from"), request.query.get("to"), local_date(now()), t)
    async with svc.db.read() as conn:
        departments = await department_refs(conn)
    # One report per department (a few queries each): fine for a city's few dozen departments.
    reports = [] if errors else [await department_report(svc.db, d.id, first, last) for d in departments]
    return console_page(
        request, "city.html", staff, status=422 if errors else 200,
        reports=reports, total=city_totals(reports) if reports else None, errors=errors,
        raw_from=request.query.get("from", first.isoformat()), raw_to=request.query.get("to", last.isoformat()),
        period=(first, last), channels=list(CHANNELS), channel_names=channel_names(t), duration=duration,
        figures_query=urlencode({"from": first.isoformat(), "to": last.isoformat()}),
    )
