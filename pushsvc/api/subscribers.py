"""Subscribers created by departments (who hold the consent) or by the admin, and CSV import."""

from __future__ import annotations

import io
from typing import Any

from aiohttp import web

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.models import (
    ImportResult,
    QuietHours,
    SubscriberIn,
    SubscriberOut,
    SubscriberPage,
    SubscriberPatch,
    WechatContact,
)
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
    path_id,
    read_body,
    services,
)
from pushsvc.store import audit
from pushsvc.subscriptions import roster, subscribers
from pushsvc.subscriptions.importing import import_csv


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def subscriber_out(row: dict[str, Any]) -> SubscriberOut:
    wechat = None
    if row["wechat_openid"] or row["wechat_webhook"]:
        wechat = WechatContact(openid=row["wechat_openid"], webhook_url=row["wechat_webhook"])
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = QuietHours(start=_hhmm(row["quiet_start"]), end=_hhmm(row["quiet_end"]))
    return SubscriberOut(
        id=row["id"],
        status=row["status"],
        name=row["name"],
        email=row["email"],
        phone=row["phone"],
        wechat=wechat,
        audiences=row["audiences"],
        domains=row["domains"],
        channels=row["channels"],
        frequency=row["frequency"],
        locale=row["locale"],
        quiet_hours=quiet,
        created_at=row["created_at"],
        external_id=row["external_id"],
    )


def _viewer(who: Caller) -> roster.Viewer:
    return roster.Viewer(department_id=who.department_id, actor=who.actor, source=who.source, everyone=who.is_admin)


@endpoint("GET", "/v1/subscribers", summary="The department's own subscribers (the admin's: every one), each read audited",
          tag="subscribers", auth="department_or_admin", response=SubscriberPage, errors=(401, 422),
          query=(Param("q", f"part of a name, e-mail address, phone number or USCC (at most {roster.MAX_QUERY} characters)"),
                 Param("audience", "members of this audience group"),
                 Param("status", "filter by status", schema={"type": "string", "enum": list(roster.STATUSES)}),
                 Param("external_id", "the department's own reference", schema={"type": "string", "maxLength": 100}),
                 LIMIT, CURSOR))
async def list_subscribers(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    rows = await roster.search(
        services(request), _viewer(caller(request)), q=request.query.get("q"), audience=request.query.get("audience"),
        status=request.query.get("status"), external_id=request.query.get("external_id"),
        after_id=after_cursor(request), limit=limit + 1,
    )
    items = [subscriber_out(r) for r in rows[:limit]]
    more = len(rows) > limit
    return json_response(SubscriberPage(items=items, next_cursor=next_cursor(items[-1].id) if more else None))


@endpoint("PATCH", "/v1/subscribers/{id}", summary="Correct one of the department's own subscribers: only the fields given",
          tag="subscribers", auth="department_or_admin", body=SubscriberPatch, response=SubscriberOut,
          errors=(400, 401, 404, 409, 413, 422))
async def patch_subscriber(request: web.Request) -> web.Response:
    sid = path_id(request)
    row = await roster.update(services(request), _viewer(caller(request)), sid, await json_body(request))
    return json_response(subscriber_out(row))


@endpoint("DELETE", "/v1/subscribers/{id}", summary="Erase one of the department's own subscribers (PIPL)",
          tag="subscribers", auth="department_or_admin", status=204, errors=(401, 404))
async def delete_subscriber(request: web.Request) -> web.Response:
    await roster.erase(services(request), _viewer(caller(request)), path_id(request))
    return web.Response(status=204)


@endpoint("POST", "/v1/subscribers", summary="Create an active subscriber (the caller holds the consent)",
          tag="subscribers", auth="department_or_admin", body=SubscriberIn, response=SubscriberOut, status=201,
          errors=(400, 401, 409, 413, 422))
async def post_subscriber(request: web.Request) -> web.Response:
    who = caller(request)
    row = await subscribers.create(services(request), await json_body(request), source=who.source,
                                   department_id=who.department_id)
    await audit.record(services(request), who.actor, "subscriber.create", row["id"])
    return json_response(subscriber_out(row), status=201)


@endpoint("GET", "/v1/subscribers/{id}", summary="Read a subscriber", tag="subscribers",
          auth="department_or_admin", response=SubscriberOut, errors=(401, 404))
async def get_subscriber(request: web.Request) -> web.Response:
    row = await subscribers.read(services(request), path_id(request), department_id=caller(request).department_id)
    await audit.record(services(request), caller(request).actor, "subscriber.read", row["id"])
    return json_response(subscriber_out(row))


@endpoint("POST", "/v1/subscribers/import", summary="Import subscribers from CSV (columns in the README)",
          tag="subscribers", auth="department_or_admin", body_media="text/csv", response=ImportResult,
          errors=(400, 401, 413, 415))
async def import_subscribers(request: web.Request) -> web.Response:
    svc = services(request)
    who = caller(request)
    if request.content_type not in ("text/csv", "application/csv", "text/plain"):
        raise Problem(415, "send the file as text/csv")
    raw = await read_body(request, svc.settings.max_import_bytes)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(400, "the CSV must be UTF-8 encoded") from None
    report = await import_csv(
        svc, io.StringIO(text, newline=""), source=who.source, actor=who.actor, department_id=who.department_id,
        channel_contacts=CHANNEL_CONTACTS,
    )
    return json_response(report.as_dict())
