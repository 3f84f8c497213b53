"""Public pages: a policy's page, and one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

from aiohttp import web

from pushsvc.core.quiet_hours import local_time
from pushsvc.core.search_terms import LISTED_STATUSES
from pushsvc.core.timeliness import went_public
from pushsvc.core.tokens import BadToken, read_unsubscribe_token
from pushsvc.feedback.questions import public_qa
from pushsvc.http.pages import message_page, page
from pushsvc.http.problems import Problem
from pushsvc.http.routing import endpoint, path_id, read_body, services
from pushsvc.policies.lifecycle import LONG_FIELDS
from pushsvc.policies.reading import count_visit, via_of
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import get_policy, revisions
from pushsvc.subscriptions.changes import unsubscribe as leave_by_link
from pushsvc.web.proofs import client_of

# A policy no longer in force stays public: people who were told of it look it up, and the page says so.
PUBLIC_STATUSES = LISTED_STATUSES  # one rule for a policy's page and the public index


@endpoint("GET", "/static/site.css", summary="The pages' stylesheet", tag="pages", html=True)
async def stylesheet(request: web.Request) -> web.Response:
    css = (services(request).settings.templates_dir / "web" / "site.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@endpoint("GET", "/p/{id}", summary="A policy's public page", tag="pages", html=True, errors=(404,))
async def policy_page(request: web.Request) -> web.Response:
    svc = services(request)
    try:
        policy_id = path_id(request)
    except Problem:
        return message_page(request, 404, "未找到 Not found", "没有这项政策。No such policy.")
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        department = await department_by_id(conn, policy["department_id"]) if policy else None
        history = await revisions(conn, policy_id) if policy else []
    if policy is None or policy["status"] not in PUBLIC_STATUSES:
        return message_page(request, 404, "未找到 Not found", "没有这项政策。No such policy.")
    via = via_of(request.query.get("via"), None)  # a message's link names its channel; browsing is not counted
    if via is not None:
        await count_visit(svc, policy_id, via, client_of(request), request.headers.get("User-Agent", ""))
    domain = svc.catalogue.domains.get(policy["domain"])
    return page(request, "policy.html", policy=policy, department=department["name"] if department else "",
                domain=domain.label.get("zh-CN") if domain else policy["domain"],
                first_at=local_time(went_public(policy["publish_at"], policy["created_at"])),
                revisions=[{**r, "at": local_time(r["created_at"])} for r in history], long_fields=LONG_FIELDS,
                qa=await public_qa(svc, policy_id))


def _unsubscribe_target(request: web.Request) -> tuple[int, str] | web.Response:
    try:
        return read_unsubscribe_token(services(request).signer, request.match_info["token"])
    except BadToken:
        return message_page(request, 400, "链接无效 Invalid link",
                            "这个退订链接无效或不完整。This unsubscribe link is not valid.")


@endpoint("GET", "/u/{token}", summary="Unsubscribe page: confirm leaving a channel", tag="pages", html=True,
          errors=(400,))
async def unsubscribe_page(request: web.Request) -> web.Response:
    # A GET never unsubscribes: mail scanners follow links. The button POSTs the one-click form.
    target = _unsubscribe_target(request)
    if isinstance(target, web.Response):
        return target
    return page(request, "unsubscribe.html", channel=target[1], done=False)


@endpoint("POST", "/u/{token}", summary="One-click unsubscribe (RFC 8058): body List-Unsubscribe=One-Click",
          tag="pages", html=True, body_media="application/x-www-form-urlencoded", errors=(400,))
async def unsubscribe(request: web.Request) -> web.Response:
    target = _unsubscribe_target(request)
    if isinstance(target, web.Response):
        return target
    await read_body(request, 4096)
    subscriber_id, channel = target
    await leave_by_link(services(request), subscriber_id, channel)
    return page(request, "unsubscribe.html", channel=channel, done=True)
