"""Case events written in groups: one transaction for all the events that arrived meanwhile.

Each event needs its case locked, a duplicate check, a number, a state check and up to four
statements. Written one request at a time, those transactions set the pace (about 200 events a
second on either database, with the CPU half idle: SQLite has one writer, and each statement is a
trip to the driver). Requests hand their event to the intake and await its outcome; while one
group is written the next gathers, so under load a group holds the events of every request in
flight for the price of five statements. Events of one case in one group are taken in arrival
order, exactly as if they had come one by one, and no request is answered before its group is
committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pushsvc.cases.dispatcher import push_due
from pushsvc.core.case_states import allowed_next, can_move
from pushsvc.core.clock import now
from pushsvc.core.errors import Conflict, FieldError, NotFound, Refused, ValidationFailed
from pushsvc.core.models import CaseEventIn, CaseEventOut, CaseEventResult
from pushsvc.services import Services
from pushsvc.store.cases import events_by_id, lock_cases, store_events

log = logging.getLogger(__name__)
# A business system's clock may run a little ahead of ours; an event further in the future would
# make every real event after it look old.
FUTURE_SLACK = timedelta(minutes=5)
MAX_GROUP = 500  # events per transaction: bounds its length and the parameters of its IN lists


def checked_event(data: CaseEventIn) -> dict[str, Any]:
    """The event as the intake takes it; ValidationFailed for what no case could accept."""
    if data.occurred_at > now() + FUTURE_SLACK:
        raise ValidationFailed([FieldError("occurred_at", "is in the future")])
    if data.status == "supplement_required" and not (data.note or "").strip():
        raise ValidationFailed([FieldError("note", "list the materials the applicant must supply")])
    return {"event_id": data.event_id, "status": data.status, "occurred_at": data.occurred_at, "note": data.note}


@dataclass
class Accepted:
    status: int  # 202 new, 200 a repeat of an event already stored
    result: CaseEventResult


@dataclass
class _Pending:
    department_id: int
    case_no: str
    event: dict[str, Any]  # event_id, status, occurred_at, note
    outcome: asyncio.Future[Accepted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Group:
    """What a group writes, decided in arrival order against the cases as they stand."""

    events: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    moved: dict[int, dict[str, Any]] = field(default_factory=dict)
    new: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    outcomes: list[Accepted | Refused] = field(default_factory=list)


class CaseIntake:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._waiting: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, department_id: int, case_no: str, event: dict[str, Any]) -> Accepted:
        """The event's outcome once stored; raises NotFound or Conflict for this event alone."""
        pending = _Pending(department_id, case_no, event)
        self._waiting.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await pending.outcome

    async def _write_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            try:
                applied = await self._write(group)
            except Exception as exc:  # the database is away: every request of the group hears it
                for p in group:
                    if not p.outcome.done():
                        p.outcome.set_exception(exc)
                continue
            try:
                await push_due(self._svc.redis, applied)
            except Exception:
                # The database holds the events; the case sweeper pushes them once Redis is back.
                log.warning("cases %s stored but not pushed to the dispatchers now", applied, exc_info=True)

    async def _write(self, group: list[_Pending]) -> list[int]:
        at = now()
        async with self._svc.db.write() as conn:
            cases = await lock_cases(conn, {(p.department_id, p.case_no) for p in group})
            stored = await events_by_id(conn, {
                (cases[k]["id"], p.event["event_id"]) for p in group if (k := (p.department_id, p.case_no)) in cases
            })
            plan = _Group()
            for p in group:
                plan.outcomes.append(_decide(plan, cases.get((p.department_id, p.case_no)), stored, p.event, at))
            await store_events(conn, plan.events, plan.notifications, list(plan.moved.values()))
        for p, outcome in zip(group, plan.outcomes):
            if p.outcome.done():  # its client went away; the event is stored all the same
                continue
            if isinstance(outcome, Refused):
                p.outcome.set_exception(outcome)
            else:
                p.outcome.set_result(outcome)
        return sorted({n["case_id"] for n in plan.notifications})


def _decide(plan: _Group, case: dict[str, Any] | None, stored: dict[tuple[int, str], dict[str, Any]],
            event: dict[str, Any], at: datetime) -> Accepted | Refused:
    """One event against its case (updated in place, so the group's next event sees it)."""
    if case is None:  # another department's case is as unknown as a missing one
        return NotFound("no such case")
    key = (case["id"], event["event_id"])
    found = stored.get(key) or plan.new.get(key)
    if found is not None:
        return Accepted(200, CaseEventResult(duplicate=True, case_status=case["status"], event=CaseEventOut(**found)))
    # An event older than the latest is history: recorded, but it neither moves nor tells.
    applied = case["latest_at"] is None or event["occurred_at"] >= case["latest_at"]
    if applied and not can_move(case["status"], event["status"]):
        allowed = allowed_next(case["status"])
        return Conflict(f"a case that is {case['status']} cannot become {event['status']}",
                       [FieldError("status", f"allowed next: {', '.join(allowed) or 'none (the case has ended)'}")],
                       allowed_next=allowed, current_status=case["status"])
    case["last_seq"] += 1
    row = {"case_id": case["id"], "seq": case["last_seq"], "applied": applied, "created_at": at, **event}
    plan.events.append(row)
    plan.new[key] = row
    if applied:
        case["status"], case["latest_at"] = event["status"], event["occurred_at"]
        plan.notifications += [
            {"case_id": case["id"], "event_seq": row["seq"], "channel": channel, "status": "queued",
             "created_at": at, "updated_at": at}
            for channel in case["channels"]
        ]
    plan.moved[case["id"]] = {"cid": case["id"], "last_seq": case["last_seq"], "status": case["status"],
                              "latest_at": case["latest_at"], "updated_at": at}
    out = CaseEventOut(**row, notifications={c: "queued" for c in case["channels"]} if applied else {})
    return Accepted(202, CaseEventResult(duplicate=False, case_status=case["status"], event=out))
