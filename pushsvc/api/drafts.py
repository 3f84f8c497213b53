"""GET /v1/drafts/{id}: where a policy sent with a key stands in its department's review (or any
draft of the department): its status, its steps, and the policy once published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from pushsvc.core.models import PolicyOut
from pushsvc.http.auth import caller
from pushsvc.http.routing import endpoint, json_response, path_id, services
from pushsvc.policies.drafts import own_draft
from pushsvc.store import drafts as store


class DraftEventOut(BaseModel):
    at: datetime
    actor: str = Field(description="an audit actor: department:<d>:staff:<id>, or a key's")
    action: str = Field(description="saved | submitted | returned | approved | published | scheduled | withdrawn "
                                    "| test_sent")
    version: int
    comment: str | None = Field(description="the reviewer's, when returned")


class DraftOut(BaseModel):
    id: int
    kind: str = Field(description="new | revise | repeal")
    status: str = Field(description="draft | submitted | approved | returned | published | scheduled | withdrawn")
    version: int
    policy_id: int | None = Field(description="the policy revised or repealed, or the one published")
    created_at: datetime
    updated_at: datetime
    events: list[DraftEventOut]


class DraftSubmitted(BaseModel):
    """POST /v1/policies's answer when the department reviews its keys' policies."""

    draft_id: int
    status: str = "submitted"
    review: bool = True


def draft_out(draft: dict[str, Any], events: list[dict[str, Any]]) -> DraftOut:
    return DraftOut(**{k: draft[k] for k in DraftOut.model_fields if k != "events"},
                    events=[DraftEventOut(**{k: e[k] for k in DraftEventOut.model_fields}) for e in events])


@endpoint("GET", "/v1/drafts/{id}", summary="A draft of the department (a key's policy awaiting review): its "
          "status, its steps and the policy once published", tag="policies", auth="department",
          response=DraftOut, errors=(401, 403, 404))
async def read_draft(request: web.Request) -> web.Response:
    svc = services(request)
    draft = await own_draft(svc, caller(request).department_id, path_id(request))
    async with svc.db.read() as conn:
        events = await store.events(conn, draft["id"])
    return json_response(draft_out(draft, events))


class PolicyAccepted(RootModel[PolicyOut | DraftSubmitted]):
    """POST /v1/policies: the policy, published; or, when the department reviews its keys'
    policies (it has an approver and `keys_publish_without_review` is off), the draft awaiting review."""
