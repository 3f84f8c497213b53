"""Time limits: a department is alerted, once, when an open case has used 80% of its working days."""

from __future__ import annotations

import logging
import math
from datetime import date
from typing import Any

from pushsvc.cases.messages import status_labels, urls
from pushsvc.core.clock import now
from pushsvc.core.messages import CaseAlertMessage, Recipient
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.workdays import working_days_between
from pushsvc.delivery.send import Row, SendStep
from pushsvc.services import Services
from pushsvc.store.cases import alert_candidates, case_with_department, mark_alerted

log = logging.getLogger(__name__)
ALERT_SHARE = 0.8


def alert_due(started_on: date, time_limit_days: int, today: date) -> bool:
    """Whether `today` a case started on `started_on` has used 80% of its working days."""
    return working_days_between(started_on, today) >= math.ceil(ALERT_SHARE * time_limit_days)


async def run_case_alerts(svc: Services, today: date | None = None) -> int:
    """Alert for every case that has reached 80% of its time; returns how many were alerted.
    Safe to run on several workers at once: a case's alert mark is set before it is sent, by
    whichever run sets it first, and cleared again if the e-mail could not go out."""
    today = today or local_date(now())
    async with svc.db.read() as conn:
        candidates = await alert_candidates(conn)
    alerted = 0
    for c in candidates:
        if not alert_due(c["started_on"], c["time_limit_days"], today):
            continue
        async with svc.db.write() as conn:
            if not await mark_alerted(conn, c["id"], now()):
                continue
            case = await case_with_department(conn, c["id"])
        assert case is not None
        if await _tell_department(svc, case, working_days_between(c["started_on"], today)):
            alerted += 1
        else:
            async with svc.db.write() as conn:
                await mark_alerted(conn, c["id"], None)
    return alerted


async def _tell_department(svc: Services, case: dict[str, Any], elapsed: int) -> bool:
    """E-mail the department's contact, or log when it has none; False if it should be tried again."""
    if not case["contact_email"]:
        log.warning("case %s of department %s has used %d of %d working days (due %s); the department "
                    "has no contact e-mail", case["case_no"], case["department"], elapsed,
                    case["time_limit_days"], case["due_on"])
        return True
    page, short = urls(svc.settings.public_url, case)
    message = CaseAlertMessage(
        case_id=case["id"], title=case["service_item"], case_no=case["case_no"], department=case["department"],
        status_label=status_labels(case["status"]), time_limit_days=case["time_limit_days"], elapsed_days=elapsed,
        due_on=case["due_on"],
        page_url=page, short_url=short,
    )
    if "email" not in svc.channels:
        log.error("case alerts need the e-mail channel")
        return False
    recipient = Recipient(delivery_id=0, subscriber_id=0, name=case["department"], locale="zh-CN",
                          email=case["contact_email"])
    step = SendStep(svc, "alert")  # no ledger: the case's alert mark is its record
    [result] = await step.send("email", message, [recipient], {0: (Row(0, 1),)})
    await step.count()
    if result.status == "failed":  # a refused address, or our template is wrong: alerting again cannot help
        log.error("case alert for %s could not be e-mailed: %s", case["case_no"], result.outcome.error)
        return True
    return result.status == "sent"
