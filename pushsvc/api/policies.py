"""Policies: publish (202, fan-out enqueued), preview reach, read figures, explain a match; revise
and repeal (202, the recipients told). Each handler parses the request, calls the feature in
pushsvc.policies and answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.api.drafts import DraftSubmitted, PolicyAccepted
from pushsvc.api.reports import DEPARTMENT_ID, department_scope
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.models import (
    DeliveryOut,
    DeliveryPage,
    ExplainOut,
    PolicyIn,
    PolicyOut,
    PolicyRevisionIn,
    PreviewOut,
    RepealIn,
)
from pushsvc.core.quiet_hours import local_date
from pushsvc.http.auth import Caller, caller
from pushsvc.http.problems import Problem
from pushsvc.http.routing import (
    CURSOR,
    LIMIT,
    Param,
    after_cursor,
    endpoint,
    int_param,
    json_body,
    json_response,
    next_cursor,
    parse_model,
    path_id,
    services,
)
from pushsvc.policies import view
from pushsvc.policies.explain import explain_match
from pushsvc.policies.listing import POLICY_STATUSES, WORDS_MAX, PolicyList, list_policies, parse_filter
from pushsvc.policies.preview import preview
from pushsvc.policies.publish import publish
from pushsvc.policies.repeal import repeal
from pushsvc.policies.review import key_needs_review, submit_from_key
from pushsvc.policies.revise import revise
from pushsvc.policies.validation import CHANNELS, Publisher
from pushsvc.store import audit
from pushsvc.store.policies import STATUSES, list_deliveries


def publisher(who: Caller) -> Publisher:
    if who.department is None:
        return Publisher(department_id=None, name="", domains=None)
    return Publisher(department_id=who.department_id, name=who.department["name"],
                     domains=tuple(who.department["domains"]),
                     may_send_urgent=bool(who.department.get("may_send_urgent")))


async def own_policy(request: web.Request) -> dict[str, Any]:
    """The policy of the path, if the caller's department owns it (the admin reads any)."""
    return await view.own_policy(services(request), caller(request).department_id, path_id(request))


async def _accepted(request: web.Request, policy_id: int) -> web.Response:
    out = await view.current_view(services(request), policy_id)
    return json_response(out, status=202, headers={"Location": f"/v1/policies/{policy_id}"})


@endpoint("POST", "/v1/policies", summary="Publish a policy: stored, then fanned out (now or at publish_at); "
          "or, when the department reviews its keys' policies, kept as a draft awaiting an approver "
          "(GET /v1/drafts/{id})", tag="policies", auth="department", body=PolicyIn, response=PolicyAccepted,
          status=202, errors=(400, 401, 403, 409, 413, 422))
async def post_policy(request: web.Request) -> web.Response:
    raw = await json_body(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise Problem(400, "Idempotency-Key must be 1 to 200 characters")
    who = caller(request)
    # A test key's policy reaches nobody (the simulator answers): nothing for an approver to review,
    # and a draft approved later would be published for real.
    if who.department is not None and not who.test and await key_needs_review(services(request), who.department):
        draft_id = await submit_from_key(services(request), publisher(who), who.actor, raw, key)
        if draft_id is not None:  # else the key published a policy before: publish repeats its answer
            return json_response(DraftSubmitted(draft_id=draft_id), status=202,
                                 headers={"Location": f"/v1/drafts/{draft_id}"})
    done = await publish(services(request), publisher(who), raw, key, test=who.test)
    if done.replayed:
        return json_response(done.body, status=done.status, headers={"Idempotent-Replayed": "true"})
    return json_response(done.body, status=done.status, headers={"Location": f"/v1/policies/{done.policy_id}"})


@endpoint("GET", "/v1/policies", summary="The department's policies, newest first, by status, domain, period and words",
          tag="policies", auth="department_or_admin", response=PolicyList, errors=(401, 403, 422),
          query=(Param("status", "filter by status", schema={"type": "string", "enum": list(POLICY_STATUSES)}),
                 Param("domain", "filter by domain slug"),
                 Param("from", "first local date it went public (publish_at if scheduled, else when posted)",
                       schema={"type": "string", "format": "date"}),
                 Param("to", "last local date it went public, included", schema={"type": "string", "format": "date"}),
                 Param("q", f"words found in the title or the document number (at most {WORDS_MAX} characters)"),
                 DEPARTMENT_ID, LIMIT, CURSOR))
async def get_policies(request: web.Request) -> web.Response:
    svc = services(request)
    department_id = department_scope(request, caller(request), admin_must_name=False)
    wanted = parse_filter(request.query, svc.catalogue.domains, local_date(now()))
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    items, next_below = await list_policies(svc, department_id, wanted, before_id=after_cursor(request), limit=limit)
    return json_response(PolicyList(items=items, next_cursor=next_cursor(next_below) if next_below else None))


@endpoint("POST", "/v1/policies/preview", summary="Count who a policy would reach; nothing stored or sent",
          tag="policies", auth="department", body=PolicyIn, response=PreviewOut, errors=(400, 401, 403, 413, 422))
async def preview_policy(request: web.Request) -> web.Response:
    return json_response(await preview(services(request), publisher(caller(request)), await json_body(request)))


@endpoint("GET", "/v1/policies/{id}", summary="A policy with its delivery counts per channel and status",
          tag="policies", auth="department_or_admin", response=PolicyOut, errors=(401, 404))
async def read_policy(request: web.Request) -> web.Response:
    svc = services(request)
    policy = await own_policy(request)
    async with svc.db.read() as conn:
        return json_response(await view.policy_out(svc, conn, policy))


@endpoint("GET", "/v1/policies/{id}/deliveries", summary="The policy's delivery ledger, with reasons",
          tag="policies", auth="department_or_admin", response=DeliveryPage, errors=(401, 404, 422),
          query=(Param("status", "filter: " + ", ".join(STATUSES), schema={"type": "string", "enum": list(STATUSES)}),
                 Param("channel", "filter by channel", schema={"type": "string", "enum": list(CHANNELS)}),
                 Param("notice", "filter: 0 the policy's own messages, n its n-th lifecycle notice",
                       schema={"type": "integer", "minimum": 0, "maximum": 32767}),
                 LIMIT, CURSOR))
async def policy_deliveries(request: web.Request) -> web.Response:
    svc = services(request)
    policy = await own_policy(request)
    status, channel = request.query.get("status"), request.query.get("channel")
    if status and status not in STATUSES:
        raise Problem(422, "unknown status", [FieldError("status", f"must be one of {', '.join(STATUSES)}")])
    if channel and channel not in CHANNELS:
        raise Problem(422, "unknown channel", [FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    notice = int_param(request, "notice", lo=0, hi=32767) if request.query.get("notice") else None
    async with svc.db.read() as conn:
        rows = await list_deliveries(conn, policy["id"], status=status, channel=channel,
                                     after_id=after_cursor(request), limit=limit + 1, notice=notice)
    more = len(rows) > limit
    rows = rows[:limit]
    await audit.record(svc, caller(request).actor, "deliveries.read", [r["subscriber_id"] for r in rows],
                       policy_id=policy["id"])
    return json_response(DeliveryPage(items=[DeliveryOut(**r) for r in rows],
                                      next_cursor=next_cursor(rows[-1]["id"]) if more else None))


@endpoint("GET", "/v1/policies/{id}/explain", summary="Why a subscriber is or is not reached by a policy",
          tag="policies", auth="department_or_admin", response=ExplainOut, errors=(401, 404, 422),
          query=(Param("subscriber_id", "the subscriber to explain", required=True, schema={"type": "integer"}),))
async def explain_policy(request: web.Request) -> web.Response:
    policy = await own_policy(request)
    sid = int_param(request, "subscriber_id", lo=1, hi=2**63 - 1)
    out = await explain_match(services(request), policy, sid, department_id=caller(request).department_id)
    await audit.record(services(request), caller(request).actor, "subscriber.explain", sid, policy_id=policy["id"])
    return json_response(out)


@endpoint("POST", "/v1/policies/{id}/revise",
          summary="Revise a policy (changed fields only): a new revision; whoever received it is told what changed",
          tag="policies", auth="department", body=PolicyRevisionIn, response=PolicyOut, status=202,
          errors=(400, 401, 403, 404, 409, 413, 422))
async def revise_policy(request: web.Request) -> web.Response:
    policy = await own_policy(request)
    await revise(services(request), publisher(caller(request)), policy, await json_body(request))
    return await _accepted(request, policy["id"])


@endpoint("POST", "/v1/policies/{id}/repeal",
          summary="Repeal a policy: no longer in force from repealed_on; whoever received it is told",
          tag="policies", auth="department", body=RepealIn, response=PolicyOut, status=202,
          errors=(400, 401, 404, 409, 413, 422))
async def repeal_policy(request: web.Request) -> web.Response:
    policy = await own_policy(request)
    body = parse_model(RepealIn, await json_body(request))
    await repeal(services(request), publisher(caller(request)), policy, body)
    return await _accepted(request, policy["id"])
