"""Repealing a policy: no longer in force from a day not in the future; its notice rendered and
fitting an SMS, then recorded (lifecycle.py)."""

from __future__ import annotations

from typing import Any

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.models import PolicyIn, RepealIn
from pushsvc.core.quiet_hours import local_date
from pushsvc.policies import lifecycle
from pushsvc.policies.revise import as_request, not_now
from pushsvc.policies.validation import Publisher, check_notice
from pushsvc.policies.view import own_policy
from pushsvc.services import Services
from pushsvc.store.policies import REPEALABLE_STATUSES


async def repeal(svc: Services, publisher: Publisher, policy: dict[str, Any], body: RepealIn) -> None:
    today = local_date(now())
    repealed_on = body.repealed_on or today
    if repealed_on > today:
        raise ValidationFailed([FieldError("repealed_on", "cannot be in the future: repeal on the day it stops applying")])
    if policy["status"] not in REPEALABLE_STATUSES:
        raise not_now(policy, "repealed")
    check_notice(svc, PolicyIn.model_validate(as_request(policy)), publisher.name, "reason", kind="repealed",
                 reason=body.reason, repealed_on=repealed_on)
    if not await lifecycle.repeal(svc, policy, body.reason, repealed_on):
        raise not_now(await own_policy(svc, publisher.department_id, policy["id"]), "repealed")
