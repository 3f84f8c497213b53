"""The console's policies: the list (search by title or number, filters, pages), a policy's page
with its live progress per channel, its deliveries and failures (contacts masked, every read
audited), and retry-failed. Staff see their own department's policies, another's is a 404; an
overseer reads every department's and acts on none."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, Field

from pushsvc.console.session import (
    FORM_MEDIA,
    LANG,
    PageAnswer,
    checked_form,
    console_endpoint,
    console_page,
    page_lang,
    redirect,
    require,
)
from pushsvc.core.catalogue import Catalogue, Label
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError, NotFound, ValidationFailed
from pushsvc.core.figures import BACKWARDS, failure_reason
from pushsvc.core.identifiers import mask_email, mask_name, mask_phone
from pushsvc.core.models import ChannelCounts, PolicyOut
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_date, local_time
from pushsvc.delivery.retry_failed import retry_failed
from pushsvc.http.problems import Problem
from pushsvc.http.routing import CURSOR, Param, after_cursor, json_response, next_cursor, path_id, services
from pushsvc.i18n import Words, words
from pushsvc.policies import view
from pushsvc.policies.listing import POLICY_STATUSES, PolicyFilter, list_policies, parse_filter
from pushsvc.policies.reading import policy_reading
from pushsvc.policies.validation import CHANNELS
from pushsvc.reports.figures_page import channel_names
from pushsvc.services import Services
from pushsvc.staff.rights import Staff, can
from pushsvc.store import audit
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import (
    COUNTED,
    REPEALABLE_STATUSES,
    REVISABLE_STATUSES,
    STATUSES,
    list_deliveries,
    recipient_contacts,
)
from pushsvc.store.reports import department_refs

PAGE_SIZE = 50
DELIVERIES_PAGE = 50
RETRY_FORM = "retry-failed"
# What the progress shows while messages move; `held` can wait for hours (quiet hours, a digest).
MOVING = ("queued", "sending")
REFRESH_SECONDS = 5

DELIVERY_STATUS_NAMES = {"queued": N_("Queued"), "sending": N_("Sending"), "sent": N_("Sent"),
                         "delivered": N_("Delivered"), "failed": N_("Failed"), "held": N_("Held"),
                         "digest": N_("Waiting for a digest"), "unknown": N_("Unknown"),
                         "suppressed": N_("Suppressed")}
NOTICE_NAMES = {"revised": N_("Revision notice"), "repealed": N_("Repeal notice"), "lapsed": N_("Lapse notice")}
OPERATORS = {"eq": N_("is"), "in": N_("is one of"), "not_in": N_("is none of"), "exists": N_("is given"),
             "gte": N_("is at least"), "lte": N_("is at most")}
GROUPS = N_("Groups:")
ROBOT = N_("a WeCom group robot")
COMBINATORS = {"all": N_("All of these:"), "any": N_("Any of these:"), "not": N_("Not this:")}
BAD_CHOICE = N_("Choose one from the list.")
TOO_LONG = N_("Search with fewer words.")
BAD_DATE = N_("Enter a date as YYYY-MM-DD.")
BACKWARDS_DATE = N_("The end date cannot be before the start date.")
NO_DEPARTMENT = N_("No such department.")

LIST_QUERY = (
    Param("q", "words in the title or the document number"), Param("status", "policy status"),
    Param("domain", "domain slug"), Param("from", "first local date it went public"),
    Param("to", "last local date it went public"), Param("department_id", "overseer: one department"),
    CURSOR, LANG,
)
DELIVERY_QUERY = (Param("status", "delivery status"), Param("channel", "channel"), CURSOR, LANG)


def policy_status_names(t: Words) -> dict[str, str]:
    """A policy's status as the console says it ("Published" is a state here, a date on the figures)."""
    return {"scheduled": t.pgettext("policy status", "Scheduled"), "publishing": t.pgettext("policy status", "Publishing"),
            "published": t.pgettext("policy status", "Published"), "repealed": t.pgettext("policy status", "Repealed"),
            "lapsed": t.pgettext("policy status", "No longer in force")}


def _field_message(error: FieldError) -> str:
    """A filter's error in the page's words (a msgid)."""
    if error.field in ("from", "to"):
        return BACKWARDS_DATE if error.message == BACKWARDS else BAD_DATE
    return TOO_LONG if error.field == "q" else BAD_CHOICE


def _before(request: web.Request) -> int:
    """The list's cursor; one this service did not issue starts from the newest again."""
    try:
        return after_cursor(request)
    except Problem:
        return 0


def _query_url(path: str, query: dict[str, str], **changes: str | None) -> str:
    kept = {k: v for k, v in {**query, **changes}.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path


async def _domains(svc: Services, staff: Staff) -> list[tuple[str, Label]]:
    """The domains to filter by: the department's own, every one for an overseer."""
    slugs: list[str] = list(svc.catalogue.domains)
    if staff.department_id is not None:
        async with svc.db.read() as conn:
            department = await department_by_id(conn, staff.department_id)
        slugs = [s for s in (department or {}).get("domains", []) if s in svc.catalogue.domains]
    return [(slug, svc.catalogue.domains[slug].label) for slug in slugs]


@console_endpoint("GET", "/console/policies", summary="The department's policies: search, filters, pages",
                  query=LIST_QUERY, errors=(403, 422))
async def policies_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    svc = services(request)
    t = words(page_lang(request))
    query = {k: v for k, v in request.query.items() if k not in ("cursor", "lang")}
    errors: dict[str, str] = {}
    wanted = PolicyFilter()
    try:
        wanted = parse_filter(request.query, svc.catalogue.domains, local_date(now()))
    except ValidationFailed as exc:
        errors = {e.field: t.gettext(_field_message(e)) for e in exc.errors}
    department_id, departments = staff.department_id, []
    if staff.is_overseer:
        async with svc.db.read() as conn:
            departments = await department_refs(conn)
        raw = request.query.get("department_id", "")
        chosen = next((d for d in departments if str(d.id) == raw), None)
        if raw and chosen is None:
            errors["department_id"] = t.gettext(NO_DEPARTMENT)
        department_id = chosen.id if chosen else None
    items, next_below = [], None
    if not errors:
        items, next_below = await list_policies(svc, department_id, wanted, before_id=_before(request), limit=PAGE_SIZE)
    return console_page(
        request, "policies.html", staff, status=422 if errors else 200,
        items=items, errors=errors, query=query, departments=departments, domains=await _domains(svc, staff),
        domain_labels={slug: d.label for slug, d in svc.catalogue.domains.items()},
        statuses=POLICY_STATUSES, status_names=policy_status_names(t), local_time=local_time,
        can_draft=can(staff, "draft"), paged=bool(request.query.get("cursor")),
        first_url=_query_url("/console/policies", query),
        next_url=_query_url("/console/policies", query, cursor=next_cursor(next_below)) if next_below else None,
    )


# -- one policy -------------------------------------------------------------------------------------


async def _policy(request: web.Request, staff: Staff) -> dict[str, Any]:
    """The policy of the path: the person's department's (an overseer's: any), else the 404 page."""
    try:
        return await view.own_policy(services(request), None if staff.is_overseer else staff.department_id,
                                     path_id(request))
    except (NotFound, Problem):
        t = words(page_lang(request))
        raise PageAnswer(console_page(request, "message.html", staff, status=404, title=t.gettext("Not found"),
                                      text=t.gettext("No such policy in your department."),
                                      back="/console/policies")) from None


def running(out: PolicyOut) -> bool:
    """Whether the fan-out or the sending is still under way: what keeps the page refreshing."""
    counts = [*out.deliveries.values(), *(c for n in out.notices for c in n.deliveries.values())]
    return out.status == "publishing" or any(getattr(c, s) for c in counts for s in MOVING)


def masked_contact(channel: str, contacts: dict[str, Any] | None, t: Words) -> str:
    """The contact a delivery went to, masked as the project masks contacts everywhere."""
    if not contacts:
        return "–"  # erased since
    if channel == "email" and contacts["email"]:
        return mask_email(contacts["email"])
    if channel == "sms" and contacts["phone"]:
        return mask_phone(contacts["phone"])
    if channel == "wechat" and contacts["wechat_openid"]:
        return f"{contacts['wechat_openid'][:4]}***"
    if channel == "wechat" and contacts["wechat_webhook"]:
        return t.gettext(ROBOT)
    return "–"


def targeting_lines(targeting: dict[str, Any], catalogue: Catalogue, lang: str, t: Words) -> list[tuple[int, str]]:
    """The targeting as indented lines a clerk reads: (depth, text)."""
    groups = catalogue.groups
    audiences = [groups[a].label.get(lang) if a in groups else a for a in targeting.get("audiences", [])]
    lines = [(0, f"{t.gettext(GROUPS)} {(', ' if lang == 'en' else '、').join(audiences)}")]

    def value_words(group: str, name: str, value: Any) -> str:
        attribute = groups[group].attributes.get(name) if group in groups else None
        labels = {c.value: c.label.get(lang) for c in (attribute.choices or ())} if attribute else {}
        values = value if isinstance(value, list) else [value]
        return ", ".join(str(labels.get(v, v)) for v in values)

    def walk(node: dict[str, Any], depth: int) -> None:
        for key in ("all", "any"):
            if key in node:
                lines.append((depth, t.gettext(COMBINATORS[key])))
                for child in node[key]:
                    walk(child, depth + 1)
                return
        if "not" in node:
            lines.append((depth, t.gettext(COMBINATORS["not"])))
            walk(node["not"], depth + 1)
            return
        group, _, name = str(node.get("attr", "")).partition(".")
        attribute = groups[group].attributes.get(name) if group in groups else None
        subject = f"{groups[group].label.get(lang)} · {attribute.label.get(lang)}" if attribute else node.get("attr", "")
        said = f"{subject} {t.gettext(OPERATORS.get(node.get('op', ''), node.get('op', '')))}"
        if node.get("op") != "exists":
            said += f" {value_words(group, name, node.get('value'))}"
        lines.append((depth, said))

    if targeting.get("where"):
        walk(targeting["where"], 1)
    return lines


async def _deliveries(
    request: web.Request, svc: Services, staff: Staff, policy_id: int, department_id: int, t: Words
) -> tuple[list[dict[str, Any]], str | None, dict[str, str]]:
    """A page of the policy's deliveries with masked contacts and reasons, the next page's cursor,
    and what is wrong with the filter. Reading them is in the audit log."""
    status, channel = request.query.get("status") or None, request.query.get("channel") or None
    errors = {}
    if status is not None and status not in STATUSES:
        errors["status"] = t.gettext(BAD_CHOICE)
    if channel is not None and channel not in CHANNELS:
        errors["channel"] = t.gettext(BAD_CHOICE)
    if errors:
        return [], None, errors
    async with svc.db.read() as conn:
        rows = await list_deliveries(conn, policy_id, status=status, channel=channel, after_id=_before(request),
                                     limit=DELIVERIES_PAGE + 1)
        contacts = await recipient_contacts(conn, [r["subscriber_id"] for r in rows[:DELIVERIES_PAGE]])
    more, rows = len(rows) > DELIVERIES_PAGE, rows[:DELIVERIES_PAGE]
    for row in rows:
        person = contacts.get(row["subscriber_id"])
        row["contact"] = masked_contact(row["channel"], person, t)
        row["name"] = mask_name(person["name"]) if person and person["name"] else "–"
        row["reason"] = failure_reason(row["error"])[0] if row["status"] == "failed" else None
    if rows:
        await audit.record(svc, staff.actor, "deliveries.read", [r["subscriber_id"] for r in rows], policy_id=policy_id,
                           for_department=department_id)
    return rows, next_cursor(rows[-1]["id"]) if more else None, errors


@console_endpoint("GET", "/console/policies/{id}", summary="A policy: its fields, live progress, deliveries and actions",
                  query=DELIVERY_QUERY, errors=(403, 404, 422))
async def policy_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    policy = await _policy(request, staff)
    svc = services(request)
    lang = page_lang(request)
    t = words(lang)
    async with svc.db.read() as conn:
        out = await view.policy_out(svc, conn, policy)
        department = await department_by_id(conn, policy["department_id"])
    rows, more, errors = await _deliveries(request, svc, staff, policy["id"], policy["department_id"], t)
    query = {k: v for k, v in request.query.items() if k in ("status", "channel")}
    path = f"/console/policies/{policy['id']}"
    domain = svc.catalogue.domains.get(policy["domain"])
    acts = not staff.is_overseer and can(staff, "draft", policy["department_id"])
    return console_page(
        request, "policy.html", staff, status=422 if errors else 200,
        policy=out, department=department["name"] if department else "", body=policy["body"],
        domain=domain.label.get(lang) if domain else policy["domain"], running=running(out),
        refresh_seconds=REFRESH_SECONDS, targeting=targeting_lines(policy["targeting"], svc.catalogue, lang, t),
        counted=COUNTED,
        status_names=policy_status_names(t), delivery_names=DELIVERY_STATUS_NAMES, notice_names=NOTICE_NAMES,
        channel_names=channel_names(t), channels=CHANNELS, delivery_statuses=STATUSES, local_time=local_time,
        deliveries=rows, errors=errors, query=query, retried=request.query.get("retried"),
        first_url=_query_url(path, query), next_url=_query_url(path, query, cursor=more) if more else None,
        paged=bool(request.query.get("cursor")), failed=sum(c.failed for c in out.deliveries.values()),
        can_retry=acts, can_revise=acts and policy["status"] in REVISABLE_STATUSES,
        can_repeal=acts and policy["status"] in REPEALABLE_STATUSES, public=policy["status"] != "scheduled",
        retry_form=RETRY_FORM,
        reading=await policy_reading(svc, policy["id"], {ch: c.sent + c.delivered for ch, c in out.deliveries.items()}),
    )


class Progress(BaseModel):
    status: str
    status_label: str = Field(description="the status in the page's language")
    running: bool = Field(description="the fan-out runs or messages are queued or sending: ask again soon")
    matched: int
    deliveries: dict[str, ChannelCounts] = Field(description="the policy's own messages: channel -> counts by status")
    notices: dict[str, dict[str, ChannelCounts]] = Field(description="lifecycle notice number -> channel -> counts")


@console_endpoint("GET", "/console/policies/{id}/progress", summary="A policy's progress per channel, as JSON for the page's script",
                  response=Progress, errors=(403, 404))
async def policy_progress(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    policy = await _policy(request, staff)
    svc = services(request)
    t = words(page_lang(request))
    async with svc.db.read() as conn:
        out = await view.policy_out(svc, conn, policy)
    return json_response(Progress(
        status=out.status, status_label=policy_status_names(t).get(out.status, out.status), running=running(out),
        matched=out.matched, deliveries=out.deliveries, notices={str(n.seq): n.deliveries for n in out.notices},
    ), headers={"Cache-Control": "no-store"})


@console_endpoint("POST", "/console/policies/{id}/retry-failed", summary="Send the policy's temporary failures again",
                  body_media=FORM_MEDIA, status=303, errors=(403, 404))
async def retry_failed_page(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    policy = await _policy(request, staff)
    await checked_form(request, RETRY_FORM)
    svc = services(request)
    done = await retry_failed(svc, policy["id"])
    await audit.record(svc, staff.actor, "policy.retry_failed", None, policy_id=policy["id"],
                       requeued=done.total, by_channel=done.by_channel)
    raise redirect(f"/console/policies/{policy['id']}?{urlencode({'retried': done.total})}")
