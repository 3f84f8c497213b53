"""The review of a draft: draft|returned -> submitted (checked whole, as POST /v1/policies would
check it) -> approved, then published or scheduled (or -> returned with a comment, editable again).

Nobody reviews a draft they created or submitted. Approving names the version the approver saw: a
draft changed since is a Conflict. Publishing runs the API's own code (publish.py, revise.py,
repeal.py) as the department; a new policy with the Idempotency-Key `draft:<id>:<version>`, so a
second click, or a retry after a failure, publishes it once. Each step is a draft event and an
audit entry. A policy sent with an API key waits here as a submitted draft when the department
has someone to approve it and has not let its keys publish without review.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from pushsvc.core.clock import now
from pushsvc.core.errors import Conflict, FieldError, Forbidden, ValidationFailed
from pushsvc.core.models import PolicyRevisionIn, RepealIn, pydantic_errors
from pushsvc.core.quiet_hours import local_date
from pushsvc.policies.drafts import EDITABLE, own_draft
from pushsvc.policies.publish import publish
from pushsvc.policies.repeal import repeal
from pushsvc.policies.revise import FIXED, as_request, revise
from pushsvc.policies.validation import Publisher, checked_policy
from pushsvc.policies.view import own_policy
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import drafts as store
from pushsvc.store.policies import idempotent_response, remember_response

COMMENT_MAX = 2000
# Until approved, a draft can be given up.
WITHDRAWABLE = ("draft", "returned", "submitted")


def idempotency_key(draft: dict[str, Any]) -> str:
    return f"draft:{draft['id']}:{draft['version']}"


def _parsed(model: Any, raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc)) from None


async def check_draft(svc: Services, publisher: Publisher, draft: dict[str, Any]) -> None:
    """Raises what publishing it now would raise for its content (ValidationFailed naming the
    field, Forbidden for a domain not the department's); the lifecycle's own checks (a notice that
    cannot render, a policy no longer revisable) come again on publish."""
    body = draft["body"]
    if draft["kind"] == "new":
        checked_policy(svc, publisher, body)
        return
    policy = await own_policy(svc, publisher.department_id, draft["policy_id"])
    if draft["kind"] == "repeal":
        given = _parsed(RepealIn, body)
        if given.repealed_on and given.repealed_on > local_date(now()):
            raise ValidationFailed([FieldError("repealed_on", "cannot be in the future")])
        return
    if isinstance(body, dict) and (fixed := [f for f in FIXED if f in body]):
        raise ValidationFailed([FieldError(f, "cannot be revised: publish a new policy and repeal this one")
                                for f in fixed])
    change = _parsed(PolicyRevisionIn, body)
    if not change.model_fields_set:
        raise ValidationFailed([FieldError("body", "change at least one field")])
    checked_policy(svc, publisher, as_request(policy) | change.model_dump(include=change.model_fields_set))


def _not_reviewer_of(draft: dict[str, Any], actor: str) -> None:
    if actor in (draft["created_by"], draft["submitted_by"]):
        raise Forbidden("nobody reviews a draft they wrote or submitted: another approver must")


async def submit(svc: Services, publisher: Publisher, draft_id: int, actor: str, version: int) -> None:
    assert publisher.department_id is not None
    draft = await own_draft(svc, publisher.department_id, draft_id)
    if draft["status"] not in EDITABLE:
        raise Conflict(f"the draft is {draft['status']}: only a draft or a returned one is submitted")
    if draft["version"] != version:
        raise Conflict(f"the draft changed since version {version} was read")
    await check_draft(svc, publisher, draft)
    async with svc.db.write() as conn:
        if not await store.move(conn, draft_id, EDITABLE, "submitted", version, submitted_by=actor,
                                submitted_at=now()):
            raise Conflict("the draft changed meanwhile; read it again")
        await store.add_event(conn, draft_id, actor, "submitted", version)
        await audit.record(conn, actor, "draft.submitted", None, draft_id=draft_id, version=version)


async def submit_from_key(svc: Services, publisher: Publisher, actor: str, raw: Any,
                          idempotency_key: str | None) -> int | None:
    """A key's policy body, checked exactly as POST /v1/policies checks it, kept as a submitted
    draft for an approver; returns its id. A repeat with the same Idempotency-Key returns the first
    draft and keeps nothing new; None when the key already published a policy (its answer is
    publish's to repeat)."""
    assert publisher.department_id is not None
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    if idempotency_key is not None and (earlier := await _earlier(svc, publisher.department_id, idempotency_key,
                                                                    digest)) is not None:
        return earlier.get("draft_id")
    checked_policy(svc, publisher, raw)
    try:
        async with svc.db.write() as conn:
            draft_id = await store.insert_draft(conn, publisher.department_id, "new", None, raw, "submitted", actor)
            await audit.record(conn, actor, "draft.submitted", None, draft_id=draft_id, version=1)
            if idempotency_key is not None:
                await remember_response(conn, publisher.department_id, idempotency_key, digest, 202,
                                        {"draft_id": draft_id, "status": "submitted", "review": True})
    except sa.exc.IntegrityError:  # the same key raced us: the winner's draft stands, this wrote nothing
        earlier = await _earlier(svc, publisher.department_id, idempotency_key or "", digest)
        if earlier is None:
            raise
        return earlier.get("draft_id")
    return draft_id


async def _earlier(svc: Services, department_id: int, key: str, digest: str) -> dict[str, Any] | None:
    """The answer a key's earlier request got; Conflict if that request was another body."""
    async with svc.db.read() as conn:
        stored = await idempotent_response(conn, department_id, key)
    if stored is not None and stored["request_hash"] != digest:
        raise Conflict("this Idempotency-Key was used with a different request")
    return None if stored is None else dict(stored["response"])


async def key_needs_review(svc: Services, department: dict[str, Any]) -> bool:
    """Whether a key's policy waits for an approver: the department has not let its keys publish
    without review, and it has somebody who can approve (else it would wait for ever)."""
    if department["keys_publish_without_review"]:
        return False
    async with svc.db.read() as conn:
        return await store.has_reviewer(conn, int(department["id"]))


async def return_draft(svc: Services, department_id: int, draft_id: int, actor: str, version: int,
                       comment: str) -> None:
    comment = comment.strip()
    if not comment:
        raise ValidationFailed([FieldError("comment", "say what should change")])
    if len(comment) > COMMENT_MAX:
        raise ValidationFailed([FieldError("comment", f"at most {COMMENT_MAX} characters")])
    draft = await own_draft(svc, department_id, draft_id)
    _not_reviewer_of(draft, actor)
    async with svc.db.write() as conn:
        if not await store.move(conn, draft_id, ("submitted",), "returned", version):
            raise _stale(draft, version)
        await store.add_event(conn, draft_id, actor, "returned", version, comment)
        await audit.record(conn, actor, "draft.returned", None, draft_id=draft_id, version=version)


def _stale(draft: dict[str, Any], version: int) -> Conflict:
    if draft["version"] != version:
        return Conflict(f"the draft changed since version {version} was reviewed: review it again",
                        version=draft["version"])
    return Conflict(f"the draft is {draft['status']}, not awaiting review")


async def approve(svc: Services, publisher: Publisher, draft_id: int, actor: str, version: int) -> dict[str, Any]:
    """Approve version `version` and publish it; returns the draft as it ends. A second click by
    the same approver on the same version changes nothing."""
    assert publisher.department_id is not None
    draft = await own_draft(svc, publisher.department_id, draft_id)
    _not_reviewer_of(draft, actor)
    async with svc.db.write() as conn:
        moved = await store.move(conn, draft_id, ("submitted",), "approved", version, approved_by=actor,
                                 approved_at=now())
        if moved:
            await store.add_event(conn, draft_id, actor, "approved", version)
            await audit.record(conn, actor, "draft.approved", None, draft_id=draft_id, version=version)
    if not moved:
        again = draft["status"] in ("approved", "published", "scheduled") and draft["approved_by"] == actor
        if again and draft["version"] == version:
            return draft
        raise _stale(draft, version)
    return await publish_approved(svc, publisher, draft_id, actor)


async def publish_approved(svc: Services, publisher: Publisher, draft_id: int, actor: str) -> dict[str, Any]:
    """Publish an approved draft with the API's own code. A failure (a domain taken from the
    department, the policy repealed meanwhile) leaves it approved, to publish again or withdraw."""
    assert publisher.department_id is not None
    draft = await own_draft(svc, publisher.department_id, draft_id)
    if draft["status"] != "approved":
        raise Conflict(f"the draft is {draft['status']}, not approved")
    body, policy_id = draft["body"], draft["policy_id"]
    status = "published"
    if draft["kind"] == "new":
        done = await publish(svc, publisher, body, idempotency_key(draft))
        policy_id = done.policy_id
        status = "scheduled" if done.body.get("status") == "scheduled" else "published"
    else:
        policy = await own_policy(svc, publisher.department_id, policy_id)
        if draft["kind"] == "revise":
            await revise(svc, publisher, policy, body)
        else:
            await repeal(svc, publisher, policy, _parsed(RepealIn, body))
    async with svc.db.write() as conn:
        if await store.move(conn, draft_id, ("approved",), status, policy_id=policy_id):
            await store.add_event(conn, draft_id, actor, status, draft["version"])
            await audit.record(conn, actor, f"draft.{status}", None, draft_id=draft_id, policy_id=policy_id)
    return await own_draft(svc, publisher.department_id, draft_id)


async def withdraw(svc: Services, department_id: int, draft_id: int, actor: str) -> None:
    """The department gives a draft up (not yet approved): it stays, with its history, as withdrawn."""
    draft = await own_draft(svc, department_id, draft_id)
    async with svc.db.write() as conn:
        if not await store.move(conn, draft_id, WITHDRAWABLE, "withdrawn"):
            raise Conflict(f"the draft is {draft['status']}: it can no longer be withdrawn")
        await store.add_event(conn, draft_id, actor, "withdrawn", draft["version"])
        await audit.record(conn, actor, "draft.withdrawn", None, draft_id=draft_id)
