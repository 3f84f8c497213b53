"""Drafts of policies on their way through review: a new policy, a revision of a published one
(`body` the changed fields, as POST /v1/policies/{id}/revise takes them) or a repeal (`body`
{"reason", "repealed_on"?}). A draft is saved in any state of completeness, as typed; it is
checked whole on submit (review.py) and again on publish.

Ownership: a draft is its department's. Another department's draft is NotFound (its existence is
not theirs to learn); `department_id` None reads any (the city's overseer, who never writes).
Who may draft at all is the console's question (pushsvc.staff.rights); here, who did what is an
audit actor string.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pushsvc.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pushsvc.policies.validation import Publisher
from pushsvc.policies.view import own_policy
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import drafts as store
from pushsvc.store.departments import department_by_id

Kind = Literal["new", "revise", "repeal"]
KINDS: tuple[str, ...] = get_args(Kind)
EDITABLE = ("draft", "returned")
STATUSES = ("draft", "submitted", "approved", "returned", "published", "scheduled", "withdrawn")
MAX_BODY_CHARS = 300_000  # the largest policy body the API takes, and room for the rest


def _checked_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("body", "must be an object")])
    if len(repr(body)) > MAX_BODY_CHARS:
        raise ValidationFailed([FieldError("body", "is too large")])
    return body


async def own_draft(svc: Services, department_id: int | None, draft_id: int) -> dict[str, Any]:
    async with svc.db.read() as conn:
        draft = await store.get_draft(conn, draft_id)
    if draft is None or (department_id is not None and draft["department_id"] != department_id):
        raise NotFound("no such draft")
    return draft


async def create(svc: Services, department_id: int, actor: str, kind: str, body: Any,
                 policy_id: int | None = None) -> int:
    """A new draft (status `draft`, version 1). A revision or repeal names a policy of the
    department's own."""
    if kind not in KINDS:
        raise ValidationFailed([FieldError("kind", f"must be one of {', '.join(KINDS)}")])
    if kind == "new":
        policy_id = None
    elif policy_id is None:
        raise ValidationFailed([FieldError("policy_id", f"a {kind} names the policy")])
    else:
        await own_policy(svc, department_id, policy_id)
    async with svc.db.write() as conn:
        draft_id = await store.insert_draft(conn, department_id, kind, policy_id, _checked_body(body), "draft", actor)
        await audit.record(conn, actor, "draft.created", None, draft_id=draft_id, kind=kind, policy_id=policy_id)
    return draft_id


async def save(svc: Services, department_id: int, draft_id: int, actor: str, body: Any, version: int) -> int:
    """Store `body` as typed over version `version`; returns the new version. Conflict when the draft
    is not editable (submitted, approved, published ...) or changed since `version` was read."""
    body = _checked_body(body)
    draft = await own_draft(svc, department_id, draft_id)
    async with svc.db.write() as conn:
        if not await store.save_body(conn, draft_id, body, version, EDITABLE):
            raise _not_editable(draft, version)
        await store.add_event(conn, draft_id, actor, "saved", version + 1)
        await audit.record(conn, actor, "draft.saved", None, draft_id=draft_id, version=version + 1)
    return version + 1


def _not_editable(draft: dict[str, Any], version: int) -> Conflict:
    if draft["status"] not in EDITABLE:
        return Conflict(f"the draft is {draft['status']}: it can no longer be changed")
    return Conflict(f"the draft changed since version {version} was read (it is at version {draft['version']})")


async def department_drafts(svc: Services, department_id: int, statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        return await store.list_drafts(conn, department_id, statuses)


async def department_publisher(svc: Services, department_id: int) -> Publisher:
    """Who publishes a department's drafts: the department itself, in its own domains."""
    async with svc.db.read() as conn:
        department = await department_by_id(conn, department_id)
    if department is None:
        raise NotFound("no such department")
    return Publisher(department_id=department_id, name=department["name"], domains=tuple(department["domains"]))
