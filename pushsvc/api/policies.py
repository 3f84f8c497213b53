"""Policies: publish (202, fan-out enqueued), preview reach, read figures, explain a match; revise
and repeal (202, the recipients told)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, get_args

import sqlalchemy as sa
from aiohttp import web

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.channels.sms import check_sms_parts
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.models import (
    REVISABLE_FIELDS,
    ChannelCounts,
    DeliveryOut,
    DeliveryPage,
    ExplainOut,
    Locale,
    NoticeOut,
    PolicyIn,
    PolicyOut,
    PolicyRevisionIn,
    PreviewOut,
    RepealIn,
    RevisionOut,
    TimelinessOut,
)
from pushsvc.core.policies import (
    CheckedPolicy,
    DomainNotAllowed,
    check_policy,
    provisional_message,
)
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.rendering import RenderError
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import evaluate, parse_targeting
from pushsvc.core.timeliness import policy_timeliness, went_public
from pushsvc.http.auth import Caller, caller
from pushsvc.http.problems import Problem, invalid
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
from pushsvc.jobs import enqueue_fanout
from pushsvc.policies import lifecycle
from pushsvc.policies.messages import NoticeMessage, page_url, policy_path
from pushsvc.services import Services
from pushsvc.store.matching import preview_queries
from pushsvc.store.policies import (
    REPEALABLE_STATUSES,
    REVISABLE_STATUSES,
    STATUSES,
    delivery_counts,
    get_policy,
    idempotent_response,
    insert_policy,
    list_deliveries,
    notices,
    remember_response,
    revisions,
)
from pushsvc.store.short_links import LENGTH as SHORT_CODE_LENGTH
from pushsvc.store.short_links import short_code
from pushsvc.store.subscribers import load_subscriber

log = logging.getLogger(__name__)
CHANNELS = tuple(CHANNEL_CONTACTS)


def _checked(svc: Services, who: Caller, raw: Any) -> CheckedPolicy:
    allowed = None if who.is_admin else list(who.department["domains"])  # type: ignore[index]
    try:
        checked, errors = check_policy(raw, svc.catalogue, CHANNELS, allowed)
    except DomainNotAllowed as exc:
        raise Problem(403, f"this department does not publish in the domain '{exc}'",
                      [FieldError("domain", "not one of the department's domains")]) from None
    if checked is None:
        raise invalid(errors)
    department = who.department["name"] if who.department else ""
    check_sms_parts(svc.settings, svc.renderer, checked.data, department)
    _check_templates(svc, checked, department)
    return checked


def _check_templates(svc: Services, checked: CheckedPolicy, department: str) -> None:
    """Every chosen channel renders the policy in every locale now, or the publish is a 422."""
    message = provisional_message(checked.data, department, svc.settings.public_url, f"{svc.settings.public_url}/s/x")
    for i, name in enumerate(checked.data.channels):
        for locale in get_args(Locale):
            try:
                svc.channels[name].preview(message, locale)
            except RenderError as exc:
                raise invalid([FieldError(f"channels[{i}]", f"the {name} templates cannot render it: {exc}")]) from None


async def policy_out(svc: Services, conn: Any, policy: dict[str, Any]) -> PolicyOut:
    counts = await delivery_counts(conn, policy["id"], list(policy["channels"]))
    on_time = policy_timeliness(policy["produced_on"], went_public(policy["publish_at"], policy["created_at"]))
    return PolicyOut(
        **{k: policy[k] for k in PolicyOut.model_fields if k in policy},
        page_url=page_url(svc.settings.public_url, policy["id"]),
        deliveries={ch: ChannelCounts(**c) for ch, c in counts[0].items()},
        revisions=[RevisionOut(**r) for r in await revisions(conn, policy["id"])],
        notices=[
            NoticeOut(**n, deliveries={ch: ChannelCounts(**c) for ch, c in counts.get(n["seq"], {}).items()})
            for n in await notices(conn, policy["id"])
        ],
        timeliness=TimelinessOut.of(on_time) if on_time else None,
    )


async def own_policy(request: web.Request) -> dict[str, Any]:
    svc, who = services(request), caller(request)
    async with svc.db.read() as conn:
        policy = await get_policy(conn, path_id(request))
    # Another department's policy is reported as absent, not forbidden: its existence is not theirs to learn.
    if policy is None or (not who.is_admin and policy["department_id"] != who.department_id):
        raise Problem(404, "no such policy")
    return policy


@endpoint("POST", "/v1/policies", summary="Publish a policy: stored, then fanned out (now or at publish_at)",
          tag="policies", auth="department", body=PolicyIn, response=PolicyOut, status=202,
          errors=(400, 401, 403, 409, 413, 422))
async def post_policy(request: web.Request) -> web.Response:
    svc, who = services(request), caller(request)
    raw = await json_body(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise Problem(400, "Idempotency-Key must be 1 to 200 characters")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    dept_id = who.department_id
    assert dept_id is not None
    if key is not None:
        async with svc.db.read() as conn:
            replay = await idempotent_response(conn, dept_id, key)
        if replay is not None:
            return _replay(replay, digest)
    checked = _checked(svc, who, raw)
    at = now()
    status = checked.initial_status(at)
    try:
        async with svc.db.write() as conn:
            policy_id = await insert_policy(conn, dept_id, checked.row(), status)
            await short_code(conn, policy_path(policy_id))
            policy = await get_policy(conn, policy_id)
            assert policy is not None
            body = json.loads((await policy_out(svc, conn, policy)).model_dump_json())
            if key is not None:
                await remember_response(conn, dept_id, key, digest, 202, body)
    except sa.exc.IntegrityError:
        # The same key raced us; the winner's response stands and this request wrote nothing.
        async with svc.db.read() as conn:
            replay = await idempotent_response(conn, dept_id, key or "")
        if replay is None:
            raise
        return _replay(replay, digest)
    try:
        await enqueue_fanout(svc.redis, policy_id, at=checked.data.publish_at if status == "scheduled" else None)
    except Exception:
        # The database holds the policy; the sweeper enqueues it once Redis is back.
        log.warning("policy %s stored but its fan-out could not be enqueued now", policy_id, exc_info=True)
    return json_response(body, status=202, headers={"Location": f"/v1/policies/{policy_id}"})


def _replay(stored: dict[str, Any], digest: str) -> web.Response:
    if stored["request_hash"] != digest:
        raise Problem(409, "this Idempotency-Key was used with a different request")
    return json_response(stored["response"], status=stored["status_code"], headers={"Idempotent-Replayed": "true"})


@endpoint("POST", "/v1/policies/preview", summary="Count who a policy would reach; nothing stored or sent",
          tag="policies", auth="department", body=PolicyIn, response=PreviewOut, errors=(400, 401, 403, 413, 422))
async def preview_policy(request: web.Request) -> web.Response:
    svc = services(request)
    checked = _checked(svc, caller(request), await json_body(request))
    channels = list(dict.fromkeys(checked.data.channels))
    total_q, channel_q, audience_q = preview_queries(checked.targeting, checked.data.domain, channels)
    async with svc.db.read() as conn:
        total = (await conn.execute(total_q)).scalar_one()
        by_channel = dict.fromkeys(channels, 0) | dict((await conn.execute(channel_q)).all())
        by_audience = dict.fromkeys(checked.targeting.audiences, 0) | dict((await conn.execute(audience_q)).all())
    return json_response(PreviewOut(total=total, by_channel=by_channel, by_audience=by_audience))


@endpoint("GET", "/v1/policies/{id}", summary="A policy with its delivery counts per channel and status",
          tag="policies", auth="department_or_admin", response=PolicyOut, errors=(401, 404))
async def read_policy(request: web.Request) -> web.Response:
    svc = services(request)
    policy = await own_policy(request)
    async with svc.db.read() as conn:
        return json_response(await policy_out(svc, conn, policy))


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
    return json_response(DeliveryPage(items=[DeliveryOut(**r) for r in rows],
                                      next_cursor=next_cursor(rows[-1]["id"]) if more else None))


@endpoint("GET", "/v1/policies/{id}/explain", summary="Why a subscriber is or is not reached by a policy",
          tag="policies", auth="department_or_admin", response=ExplainOut, errors=(401, 404, 422),
          query=(Param("subscriber_id", "the subscriber to explain", required=True, schema={"type": "integer"}),))
async def explain_policy(request: web.Request) -> web.Response:
    svc = services(request)
    policy = await own_policy(request)
    sid = int_param(request, "subscriber_id", lo=1, hi=2**63 - 1)
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, sid)
    if sub is None or sub["status"] == "erased":
        raise Problem(404, "no such subscriber")
    targeting, _ = parse_targeting(policy["targeting"], svc.catalogue)
    if targeting is None:
        raise Problem(409, "the policy's targeting no longer fits the audience catalogue")
    return json_response(explain(targeting, policy, sub))


def explain(targeting: Any, policy: dict[str, Any], sub: dict[str, Any]) -> ExplainOut:
    checks: list[tuple[bool, str]] = []
    checks.append((sub["status"] == "active", f"subscriber status is '{sub['status']}' (must be 'active')"))
    groups = [g for g in targeting.audiences if g in sub["audiences"]]
    checks.append((bool(groups), f"member of the policy's audiences: {', '.join(groups) if groups else 'none of ' + ', '.join(targeting.audiences)}"))
    domain_ok = policy["domain"] in sub["domains"] or ALL_DOMAINS in sub["domains"]
    checks.append((domain_ok, f"subscribes to domain '{policy['domain']}': {'yes' if domain_ok else 'no'}"))
    reasons = [f"{'✓' if ok else '✗'} {text}" for ok, text in checks]
    matched = all(ok for ok, _ in checks)
    if targeting.where is not None:
        ok, lines = evaluate(targeting.where, sub["audiences"])
        reasons += [f"{'✓' if ok else '✗'} {line}" for line in lines]
        matched = matched and ok
    common = [c for c in policy["channels"] if c in sub["channels"]]
    reasons.append(f"{'✓' if common else '✗'} channels both allow: {', '.join(common) if common else 'none'}")
    return ExplainOut(matched=matched and bool(common), reasons=reasons)


# -- lifecycle ------------------------------------------------------------------------------------

# Who a policy is for and how it is sent are not revised: the people told of it would no longer be
# the people it is for.
FIXED = ("domain", "disclosure", "publish_at", "targeting", "channels")


def _as_request(policy: dict[str, Any]) -> dict[str, Any]:
    """A stored policy as the body that would publish it, for checking a revision of it whole."""
    return {k: policy[k] for k in PolicyIn.model_fields}


def _not_now(policy: dict[str, Any], action: str) -> Problem:
    status = policy["status"]
    why = "is being sent now: try again once it is published" if status == "publishing" else f"is {status}"
    return Problem(409, f"the policy {why}; it cannot be {action}")


def _check_notice(svc: Services, data: PolicyIn, department: str, field: str, kind: str, **told: Any) -> None:
    """The notice renders on every channel of the policy in every locale, and fits an SMS, or 422
    naming `field`. The short link is not known here: a placeholder of its length stands in."""
    limit = svc.settings.sms_max_parts
    public = svc.settings.public_url
    base = provisional_message(data, department, public, f"{public}/s/{'x' * SHORT_CODE_LENGTH}")
    message = NoticeMessage(**vars(base) | {"kind": f"policy_{kind}"}, notice=1, **told)
    for i, name in enumerate(data.channels):
        for locale in get_args(Locale):
            try:
                shown = svc.channels[name].preview(message, locale)
            except RenderError as exc:
                raise invalid([FieldError(f"channels[{i}]", f"the {name} templates cannot render the notice: {exc}")]) from None
            if shown.get("parts", 0) > limit:
                raise invalid([FieldError(field, f"the {locale} SMS telling recipients would take {shown['parts']} "
                                                 f"parts; at most {limit} are allowed")])


async def _answer(svc: Services, policy_id: int) -> web.Response:
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        assert policy is not None
        return json_response(await policy_out(svc, conn, policy), status=202,
                             headers={"Location": f"/v1/policies/{policy_id}"})


@endpoint("POST", "/v1/policies/{id}/revise",
          summary="Revise a policy (changed fields only): a new revision; whoever received it is told what changed",
          tag="policies", auth="department", body=PolicyRevisionIn, response=PolicyOut, status=202,
          errors=(400, 401, 403, 404, 409, 413, 422))
async def revise_policy(request: web.Request) -> web.Response:
    svc, who = services(request), caller(request)
    policy = await own_policy(request)
    raw = await json_body(request)
    if isinstance(raw, dict) and (fixed := [f for f in FIXED if f in raw]):
        raise invalid([FieldError(f, "cannot be revised: publish a new policy and repeal this one") for f in fixed])
    given = parse_model(PolicyRevisionIn, raw)
    if not given.model_fields_set:
        raise invalid([FieldError("body", f"name at least one field to change: {', '.join(REVISABLE_FIELDS)}")])
    if policy["status"] not in REVISABLE_STATUSES:
        raise _not_now(policy, "revised")
    department = who.department["name"] if who.department else ""
    checked = _checked(svc, who, _as_request(policy) | given.model_dump(include=given.model_fields_set))
    new = checked.row()
    changes = [{"field": f, "before": lifecycle.json_value(policy[f]), "after": lifecycle.json_value(new[f])}
               for f in REVISABLE_FIELDS if f in given.model_fields_set and new[f] != policy[f]]
    if not changes:
        raise invalid([FieldError("body", "every field given equals the current value: nothing to revise")])
    _check_notice(svc, checked.data, department, "title", kind="revised",
                  changes=tuple(lifecycle.told_changes(changes)))
    if not await lifecycle.revise(svc, policy, {c["field"]: new[c["field"]] for c in changes}, changes):
        raise Problem(409, "the policy changed while this revision was checked; read it again and retry")
    return await _answer(svc, policy["id"])


@endpoint("POST", "/v1/policies/{id}/repeal",
          summary="Repeal a policy: no longer in force from repealed_on; whoever received it is told",
          tag="policies", auth="department", body=RepealIn, response=PolicyOut, status=202,
          errors=(400, 401, 404, 409, 413, 422))
async def repeal_policy(request: web.Request) -> web.Response:
    svc, who = services(request), caller(request)
    policy = await own_policy(request)
    body = parse_model(RepealIn, await json_body(request))
    today = local_date(now())
    repealed_on = body.repealed_on or today
    if repealed_on > today:
        raise invalid([FieldError("repealed_on", "cannot be in the future: repeal on the day it stops applying")])
    if policy["status"] not in REPEALABLE_STATUSES:
        raise _not_now(policy, "repealed")
    department = who.department["name"] if who.department else ""
    _check_notice(svc, PolicyIn.model_validate(_as_request(policy)), department, "reason", kind="repealed",
                  reason=body.reason, repealed_on=repealed_on)
    if not await lifecycle.repeal(svc, policy, body.reason, repealed_on):
        raise _not_now(await own_policy(request), "repealed")
    return await _answer(svc, policy["id"])
