"""A department's case as it answers for it: status, due date, links and timeline."""

from __future__ import annotations

from typing import Any

from pushsvc.cases.messages import urls
from pushsvc.core.case_states import OPEN, allowed_next
from pushsvc.core.clock import now
from pushsvc.core.errors import NotFound
from pushsvc.core.models import CaseEventOut, CaseOut
from pushsvc.core.quiet_hours import local_date
from pushsvc.services import Services
from pushsvc.store.cases import find_case, timeline


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


async def own_case(svc: Services, department_id: int, case_no: str) -> CaseOut:
    """The case with its timeline; another department's case is as unknown as a missing one."""
    async with svc.db.read() as conn:
        case = await find_case(conn, department_id, case_no)
        if case is None:
            raise NotFound("no such case")
        events = await timeline(conn, case["id"])
    return case_out(svc, case, events)
