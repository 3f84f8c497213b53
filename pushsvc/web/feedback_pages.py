"""Was this useful? Ask a question: the short form every policy page (and policy e-mail) links to
(`/p/{id}/feedback`), and the asker's own page (`/q/{token}`, signed: the question, its answer,
and a button that deletes them). What the form does is pushsvc.feedback.intake.

The form is CSRF-protected and limited per client address and per policy (a 429 shows the form
again, with everything typed kept); errors sit beside their fields.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from multidict import MultiDict

from pushsvc.core.identifiers import mask_email, mask_phone
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.core.tokens import BadToken
from pushsvc.feedback import intake
from pushsvc.feedback.questions import ANSWERED_RETENTION, asked, asker_path, delete_by_asker, read_asker_token
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, path_id, services
from pushsvc.i18n import words as page_words
from pushsvc.store.policies import get_policy
from pushsvc.web import csrf
from pushsvc.web.forms import EXPIRED_FORM, FORM_ERROR, FORM_MEDIA, LANG, locale_of, notice, read_form, render
from pushsvc.web.pages import PUBLIC_STATUSES
from pushsvc.web.proofs import client_of

FEEDBACK_FORM, ASKED_FORM = "feedback", "asked-question"
_NO_POLICY = (N_("Not found"), N_("There is no such policy."))
_LIMITED = N_("Too many messages from your network address or about this policy: please try again in about "
              "%(minutes)s minutes.")
_BAD_LINK = N_("This link is not valid or has expired: use the whole link from the message or page you were given.")
_QUESTION_GONE = N_("This question no longer exists (it may have been deleted).")


async def _public_policy(request: web.Request) -> dict[str, Any] | None:
    try:
        policy_id = path_id(request)
    except Problem:
        return None
    async with services(request).db.read() as conn:
        policy = await get_policy(conn, policy_id)
    return policy if policy is not None and policy["status"] in PUBLIC_STATUSES else None


def _form_page(request: web.Request, locale: str, policy: dict[str, Any], typed: intake.Typed,
               errors: dict[str, str], status: int = 200) -> web.Response:
    if errors:
        errors.setdefault("form", page_words(locale).gettext(FORM_ERROR))
    return render(request, "feedback.html", locale=locale, status=status, form=FEEDBACK_FORM, view="form",
                  policy=policy, v=typed, errors=errors, question_max=intake.QUESTION_MAX,
                  retention_days=ANSWERED_RETENTION.days)


@endpoint("GET", "/p/{id}/feedback", summary="Was this policy useful? Rate it, ask the department a question",
          tag="pages", html=True, errors=(404,),
          query=(Param("rating", "pre-chosen: useful | not_useful"), LANG))
async def feedback_page(request: web.Request) -> web.Response:
    locale = locale_of(request)
    policy = await _public_policy(request)
    if policy is None:
        return notice(request, locale, 404, *_NO_POLICY)
    rating = request.query.get("rating", "")
    typed = intake.Typed(rating=rating if rating in ("useful", "not_useful") else "")
    return _form_page(request, locale, policy, typed, {})


def _typed(fields: MultiDict[str]) -> intake.Typed:
    # Cut far above the limits, so a huge field is shown back as an error, not stored.
    return intake.Typed(rating=fields.get("rating", "")[:20], question=fields.get("question", "")[:intake.QUESTION_MAX * 2],
                        contact=fields.get("contact", "")[:intake.CONTACT_MAX * 2])


@endpoint("POST", "/p/{id}/feedback", summary="Send a rating and/or a question (with a contact for the answer)",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(403, 404, 413, 422, 429))
async def send_feedback(request: web.Request) -> web.Response:
    svc = services(request)
    fields = await read_form(request)
    locale = locale_of(request, fields)
    said = page_words(locale)
    policy = await _public_policy(request)
    if policy is None:
        return notice(request, locale, 404, *_NO_POLICY)
    typed = _typed(fields)
    if not csrf.valid(request, FEEDBACK_FORM, fields):
        return _form_page(request, locale, policy, typed, {"form": said.gettext(EXPIRED_FORM)}, 403)
    feedback, problems = intake.check(typed)
    if feedback is None:
        errors = {field: said.gettext(msgid, max=intake.QUESTION_MAX) for field, msgid in problems.items()}
        return _form_page(request, locale, policy, typed, errors, 422)
    wait = await intake.wait_for_turn(svc, policy["id"], client_of(request))
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        response = _form_page(request, locale, policy, typed, {"form": said.gettext(_LIMITED, minutes=minutes)}, 429)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    question_id = await intake.record(svc, policy, feedback, locale)
    shown = None
    if feedback.contact is not None:
        shown = mask_email(feedback.contact) if feedback.contact_kind == "email" else mask_phone(feedback.contact)
    return render(request, "feedback.html", locale=locale, view="thanks", policy=policy, rated=feedback.useful is not None,
                  asked=question_id is not None, contact=shown, retention_days=ANSWERED_RETENTION.days,
                  own_url=asker_path(svc.signer, question_id) + f"?lang={locale}" if question_id else None)


# -- the asker's own page ----------------------------------------------------------------------------


async def _asked(request: web.Request, locale: str) -> dict[str, Any] | web.Response:
    """The question the link names, or the page saying why there is none."""
    try:
        question_id = read_asker_token(services(request).signer, request.match_info["token"])
    except BadToken:
        return notice(request, locale, 400, N_("Invalid link"), _BAD_LINK)
    question = await asked(services(request), question_id)
    if question is None:
        return notice(request, locale, 404, N_("Not found"), _QUESTION_GONE)
    return question


def _asked_page(request: web.Request, locale: str, question: dict[str, Any], status: int = 200,
                error: str | None = None) -> web.Response:
    return render(request, "feedback.html", locale=locale, status=status, form=ASKED_FORM, view="asked",
                  question=question, answered_at=local_time(question["answered_at"]) if question["answered_at"] else None,
                  error=error, action=request.path)


@endpoint("GET", "/q/{token}", summary="The asker's own page: their question, its answer, and deleting them",
          tag="pages", html=True, query=(LANG,), errors=(400, 404))
async def asked_page(request: web.Request) -> web.Response:
    locale = locale_of(request)
    question = await _asked(request, locale)
    if isinstance(question, web.Response):
        return question
    return _asked_page(request, locale, question)


@endpoint("POST", "/q/{token}", summary="The asker deletes their question (its contact and answer with it)",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(400, 403, 404, 413))
async def delete_asked(request: web.Request) -> web.Response:
    fields = await read_form(request)
    locale = locale_of(request, fields)
    question = await _asked(request, locale)
    if isinstance(question, web.Response):
        return question
    if not csrf.valid(request, ASKED_FORM, fields):
        return _asked_page(request, locale, question, 403, page_words(locale).gettext(EXPIRED_FORM))
    await delete_by_asker(services(request), question["id"])
    return render(request, "feedback.html", locale=locale, view="deleted", policy_id=question["policy_id"])
