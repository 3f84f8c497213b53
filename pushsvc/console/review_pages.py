"""The approver's pages: what awaits review in the department, and one submitted draft shown
exactly as it will be sent (each channel's rendering in each locale) with its reach, to approve
and publish at once, or return with a comment. Nobody reviews what they wrote or submitted (the
buttons are not offered, and the feature refuses with 403); approving names the version shown."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.console.compose_form import reach_labels
from pushsvc.console.drafts import checked, history, publisher_of, readable_draft, refusal_page, rendering_view
from pushsvc.console.policy_pages import targeting_lines
from pushsvc.console.session import (
    FORM_MEDIA,
    checked_form,
    console_endpoint,
    console_page,
    page_lang,
    redirect,
    require,
)
from pushsvc.core.errors import Refused, ValidationFailed
from pushsvc.core.quiet_hours import local_time
from pushsvc.http.routing import services
from pushsvc.i18n import words
from pushsvc.policies import drafts, review
from pushsvc.policies.draft_form import fields_of, placed
from pushsvc.policies.renderings import LOCALES
from pushsvc.policies.view import own_policy
from pushsvc.staff.rights import Staff

# The CSRF form name of the review forms (approve, return, publish): one for all drafts, as the
# session binds it; which draft and version is in the path and the form.
REVIEW_FORM = "review"


async def review_page(request: web.Request, staff: Staff, draft: dict[str, Any], *, status: int = 200,
                      errors: dict[str, str] | None = None, comment: str = "") -> web.Response:
    svc = services(request)
    publisher = await publisher_of(svc, draft["department_id"])
    policy = await own_policy(svc, draft["department_id"], draft["policy_id"]) if draft["kind"] != "new" else None
    shown = fields_of(draft["kind"], draft["body"], policy)
    problems, renderings, reach = await checked(svc, publisher, draft, bool(shown.get("where_json")))
    lang = page_lang(request)
    said = words(lang)
    labels = reach_labels(svc.catalogue, lang, said)
    # What the approver reads: names, not slugs, and the targeting in words.
    names = labels | {slug: domain.label.get(lang) for slug, domain in svc.catalogue.domains.items()}
    targeting = (draft["body"] or {}).get("targeting")
    conditions = (targeting_lines(targeting, svc.catalogue, lang, said)
                  if draft["kind"] != "repeal" and isinstance(targeting, dict) else None)
    return console_page(
        request, "review.html", staff, status=status, form=REVIEW_FORM, draft=draft, policy=policy,
        v=shown, problems=problems, renderings=[rendering_view(draft["id"], r) for r in renderings], reach=reach,
        steps=await history(svc, draft),
        errors=errors or {}, comment=comment, locales=LOCALES,
        own=staff.actor in (draft["created_by"], draft["submitted_by"]),
        labels=labels, names=names, conditions=conditions,
    )


@console_endpoint("GET", "/console/review", summary="The department's drafts awaiting review")
async def review_list(request: web.Request) -> web.Response:
    staff = await require(request, "approve")
    assert staff.department_id is not None
    items = await drafts.department_drafts(services(request), staff.department_id, ("submitted",))
    return console_page(request, "review_list.html", staff, items=[
        dict(d, submitted_local=local_time(d["submitted_at"]) if d["submitted_at"] else "",
             title=str((d["body"] or {}).get("title") or (d["body"] or {}).get("reason") or ""),
             own=staff.actor in (d["created_by"], d["submitted_by"])) for d in items])


@console_endpoint("GET", "/console/drafts/{id}/review", summary="A submitted draft as it will be sent, with its "
                  "reach: approve and publish, or return with a comment", errors=(403, 404))
async def review_view(request: web.Request) -> web.Response:
    staff = await require(request, "approve")
    return await review_page(request, staff, await readable_draft(request, staff))


def _version(fields: dict[str, str]) -> int:
    return int(fields["version"]) if fields.get("version", "").isdigit() else 0


@console_endpoint("POST", "/console/drafts/{id}/approve", summary="Approve the version shown and publish it "
                  "(as POST /v1/policies would)", status=303, body_media=FORM_MEDIA, errors=(403, 404, 409, 413, 422))
async def approve_draft(request: web.Request) -> web.Response:
    staff = await require(request, "approve")
    draft = await readable_draft(request, staff)
    fields = await checked_form(request, REVIEW_FORM)
    svc = services(request)
    try:
        await review.approve(svc, await publisher_of(svc, draft["department_id"]), draft["id"], staff.actor,
                             _version(fields))
    except ValidationFailed as exc:  # approved, but publishing refused it: shown, to correct or publish again
        return await review_page(request, staff, await readable_draft(request, staff), status=422,
                                 errors=placed(exc.errors, False))
    except Refused as exc:
        return refusal_page(request, staff, exc)
    raise redirect(f"/console/drafts/{draft['id']}")


@console_endpoint("POST", "/console/drafts/{id}/publish", summary="Publish an approved draft whose publishing "
                  "failed before", status=303, body_media=FORM_MEDIA, errors=(403, 404, 409, 413, 422))
async def publish_draft(request: web.Request) -> web.Response:
    staff = await require(request, "approve")
    draft = await readable_draft(request, staff)
    await checked_form(request, REVIEW_FORM)
    svc = services(request)
    try:
        await review.publish_approved(svc, await publisher_of(svc, draft["department_id"]), draft["id"], staff.actor)
    except ValidationFailed as exc:
        return await review_page(request, staff, draft, status=422, errors=placed(exc.errors, False))
    except Refused as exc:
        return refusal_page(request, staff, exc)
    raise redirect(f"/console/drafts/{draft['id']}")


@console_endpoint("POST", "/console/drafts/{id}/return", summary="Return a submitted draft to its writer with a "
                  "comment (required)", status=303, body_media=FORM_MEDIA, errors=(403, 404, 409, 413, 422))
async def return_draft(request: web.Request) -> web.Response:
    staff = await require(request, "approve")
    draft = await readable_draft(request, staff)
    fields = await checked_form(request, REVIEW_FORM)
    comment = fields.get("comment", "")
    said = words(page_lang(request))
    try:
        await review.return_draft(services(request), draft["department_id"], draft["id"], staff.actor,
                                  _version(fields), comment)
    except ValidationFailed as exc:
        errors = {e.field: said.gettext("Say what should change.") if e.field == "comment" else e.message
                  for e in exc.errors}
        return await review_page(request, staff, draft, status=422, errors=errors, comment=comment)
    except Refused as exc:
        return refusal_page(request, staff, exc)
    raise redirect(f"/console/drafts/{draft['id']}")

