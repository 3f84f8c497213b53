"""Erasing a case's applicant at their department's request (PIPL): who they are goes, the case
stays for the figures, and further events of the case tell nobody."""

from __future__ import annotations

from pushsvc.core.errors import NotFound
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store.cases import erase_applicant as erase_in_store


async def erase_applicant(svc: Services, department_id: int, case_no: str, actor: str) -> None:
    """Another department's case is as unknown as a missing one. The erase is in the audit log
    (an applicant is not a subscriber: the entry names the case number)."""
    async with svc.db.write() as conn:
        if not await erase_in_store(conn, department_id, case_no):
            raise NotFound("no such case")
        await audit.record(conn, actor, "case.applicant.erase", None, case_no=case_no)
