"""Revising a published policy: only the fields that may change, each change checked as the
policy would be published, its notice rendered and fitting an SMS, then recorded (lifecycle.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pushsvc.core.errors import Conflict, FieldError, ValidationFailed
from pushsvc.core.models import REVISABLE_FIELDS, PolicyIn, PolicyRevisionIn, pydantic_errors
from pushsvc.policies import lifecycle
from pushsvc.policies.validation import Publisher, check_notice, checked_policy
from pushsvc.services import Services
from pushsvc.store.policies import REVISABLE_STATUSES

# Who a policy is for and how it is sent are not revised: the people told of it would no longer be
# the people it is for.
FIXED = ("domain", "disclosure", "publish_at", "targeting", "channels")


def as_request(policy: dict[str, Any]) -> dict[str, Any]:
    """A stored policy as the body that would publish it, for checking a change of it whole."""
    return {k: policy[k] for k in PolicyIn.model_fields}


def not_now(policy: dict[str, Any], action: str) -> Conflict:
    status = policy["status"]
    why = "is being sent now: try again once it is published" if status == "publishing" else f"is {status}"
    return Conflict(f"the policy {why}; it cannot be {action}")


async def revise(svc: Services, publisher: Publisher, policy: dict[str, Any], raw: Any) -> None:
    """Revise `policy` (the department's own) with the changed fields of `raw` (a request body)."""
    if isinstance(raw, dict) and (fixed := [f for f in FIXED if f in raw]):
        raise ValidationFailed([FieldError(f, "cannot be revised: publish a new policy and repeal this one") for f in fixed])
    try:
        given = PolicyRevisionIn.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc)) from None
    if not given.model_fields_set:
        raise ValidationFailed([FieldError("body", f"name at least one field to change: {', '.join(REVISABLE_FIELDS)}")])
    if policy["status"] not in REVISABLE_STATUSES:
        raise not_now(policy, "revised")
    checked = checked_policy(svc, publisher, as_request(policy) | given.model_dump(include=given.model_fields_set))
    new = checked.row()
    changes = [{"field": f, "before": lifecycle.json_value(policy[f]), "after": lifecycle.json_value(new[f])}
               for f in REVISABLE_FIELDS if f in given.model_fields_set and new[f] != policy[f]]
    if not changes:
        raise ValidationFailed([FieldError("body", "every field given equals the current value: nothing to revise")])
    check_notice(svc, checked.data, publisher.name, "title", kind="revised",
                 changes=tuple(lifecycle.told_changes(changes)))
    if not await lifecycle.revise(svc, policy, {c["field"]: new[c["field"]] for c in changes}, changes):
        raise Conflict("the policy changed while this revision was checked; read it again and retry")
