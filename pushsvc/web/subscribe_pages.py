"""Subscribing from the public page (`/subscribe`, where a subscribe QR leads), and confirming:
the e-mail link (`/confirm/{token}`) and the SMS code (`/verify`).

Nothing is sent to a new subscriber but the confirmation until a contact is proven: the
subscriber is `pending` with no channel on. Someone who is already subscribed gets a way into
their subscription instead, and the page answers the same either way.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from pushsvc.core.identifiers import mask_email, mask_phone, normalise_phone
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import ContactKeys, ContactKind, read_confirm_token
from pushsvc.http.routing import Param, endpoint, services
from pushsvc.store.self_service import (
    channels_on,
    enrol,
    subscriber_by_contact,
    wanted_channels,
)
from pushsvc.store.subscribers import load_subscriber
from pushsvc.web import csrf
from pushsvc.web.forms import (
    FORM_MEDIA,
    LANG,
    listed,
    locale_of,
    notice,
    read_form,
    redis_needed,
    render,
)
from pushsvc.web.proofs import (
    CONFIRM_SOURCE,
    SUBSCRIBE_SOURCE,
    VERIFY_SOURCE,
    Rejected,
    accept,
    ask,
    bad_link,
    check_code,
    manage_path,
    over_limit,
)
from pushsvc.web.subscription_form import Typed, check, prefilled, read_typed, view
from pushsvc.web.words import page_words

SUBSCRIBE_FORM, VERIFY_FORM, CONFIRM_FORM = "subscribe", "verify", "confirm"


def _form_page(request: web.Request, locale: str, typed: Typed, errors: dict[str, str], status: int = 200) -> web.Response:
    svc = services(request)
    if errors:
        errors.setdefault("form", page_words(locale)["form_error"])
    return render(request, "subscribe.html", locale=locale, status=status, form=SUBSCRIBE_FORM,
                  **view(typed, svc.catalogue, locale, page_words(locale), errors))


@endpoint("GET", "/subscribe", summary="Subscribe page (a subscribe QR pre-fills its audience and domains)",
          tag="pages", html=True,
          query=(Param("audience", "an audience group slug (repeatable)"), Param("domain", "a domain slug (repeatable)"),
                 LANG))
async def subscribe_page(request: web.Request) -> web.Response:
    locale = locale_of(request)
    return _form_page(request, locale, prefilled(request.query, services(request).catalogue, locale), {})


@endpoint("POST", "/subscribe", summary="Subscribe: stored as pending, a confirmation link or code is sent",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(403, 409, 413, 422, 429, 503))
@redis_needed
async def subscribe(request: web.Request) -> web.Response:
    svc = services(request)
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    typed = read_typed(fields, svc.catalogue)
    if not csrf.valid(request, SUBSCRIBE_FORM, fields):
        return _form_page(request, locale, typed, {"form": words["csrf"]}, status=403)
    sub, errors = check(typed, svc.catalogue, svc.settings.webhook_origins, words)
    if not typed.agree:
        errors.setdefault("agree", words["must_agree"])
    if sub is None or errors:
        return _form_page(request, locale, typed, errors, status=422)
    contacts: dict[ContactKind, str] = {k: v for k, v in (("email", sub.contacts.email), ("phone", sub.contacts.phone)) if v}
    refused = await over_limit(request, contacts, words)
    if refused:
        return _form_page(request, locale, typed, refused, status=429)
    try:
        async with svc.db.write() as conn:
            enrolment = await enrol(conn, sub, SUBSCRIBE_SOURCE)
    except IntegrityError:  # a twin request (a double submit) stored the contact meanwhile: it is known now
        async with svc.db.write() as conn:
            enrolment = await enrol(conn, sub, SUBSCRIBE_SOURCE)
    if enrolment.uscc_taken:
        field = next((f"{g}.uscc" for g in sub.audiences if "uscc" in sub.audiences[g]), "form")
        return _form_page(request, locale, typed, {field: words["uscc_taken"]}, status=409)
    if enrolment.confirm is not None:
        await ask(request, "confirmation", [(enrolment.confirm, kind) for kind in contacts])
    else:
        await ask(request, "manage_link", [(sid, kind) for kind, sid in enrolment.known.items()])
    return render(request, "sent.html", locale=locale, form=VERIFY_FORM,
                  email=mask_email(contacts["email"]) if "email" in contacts else None,
                  phone=contacts.get("phone"), phone_shown=mask_phone(contacts["phone"]) if "phone" in contacts else None,
                  errors={})


# -- the SMS code ------------------------------------------------------------------------------------


def _verify_page(request: web.Request, locale: str, phone: str, errors: dict[str, str], status: int = 200,
                 notice_text: str | None = None) -> web.Response:
    return render(request, "verify.html", locale=locale, status=status, form=VERIFY_FORM, phone=phone,
                  errors=errors, notice_text=notice_text)


@endpoint("GET", "/verify", summary="Enter the SMS code that confirms a subscription", tag="pages", html=True,
          query=(LANG,))
async def verify_page(request: web.Request) -> web.Response:
    return _verify_page(request, locale_of(request), "", {})


@endpoint("POST", "/verify", summary="Check an SMS code (action=verify) or send a new one (action=resend)",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(403, 413, 422, 429, 503))
@redis_needed
async def verify(request: web.Request) -> web.Response:
    svc = services(request)
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    phone_text = fields.get("phone", "")[:64]
    if not csrf.valid(request, VERIFY_FORM, fields):
        return _verify_page(request, locale, phone_text, {"form": words["csrf"]}, status=403)
    if fields.get("action") == "resend":
        return await _resend(request, locale, phone_text)
    checked = await check_code(request, phone_text, fields.get("code", "")[:64], words)
    if isinstance(checked, Rejected):
        return _verify_page(request, locale, phone_text, checked.errors, status=checked.status)
    sid, phone = checked
    async with svc.db.write() as conn:
        on = await accept(conn, sid, "phone", phone, VERIFY_SOURCE)
    if on is None:
        return _verify_page(request, locale, phone_text, {"code": words["no_code"]}, status=422)
    return _confirmed(request, locale, sid, "phone", phone, on)


async def _resend(request: web.Request, locale: str, phone_text: str) -> web.Response:
    """A new code for a number waiting for one; the same answer for any other number."""
    words = page_words(locale)
    try:
        phone = normalise_phone(phone_text)
    except ValueError:
        return _verify_page(request, locale, phone_text, {"phone": words["invalid_phone"]}, status=422)
    refused = await over_limit(request, {"phone": phone}, words)
    if refused:
        return _verify_page(request, locale, phone_text, refused, status=429)
    async with services(request).db.read() as conn:
        found = await subscriber_by_contact(conn, "phone", phone)
        waiting = found is not None and "sms" in await wanted_channels(conn, found[0]) - await channels_on(conn, found[0])
    if found is not None and waiting:
        await ask(request, "confirmation", [(found[0], "phone")])
    return _verify_page(request, locale, phone_text, {}, notice_text=words["resent"])


def _confirmed(request: web.Request, locale: str, sid: int, via: ContactKind, contact: str, on: set[str]) -> web.Response:
    words = page_words(locale)
    labels = [words[f"channel_{c}"] for c in ("email", "sms", "wechat") if c in on]
    text = words["confirmed_text"].format(channels=listed(labels, locale))
    manage_url = manage_path(request, sid, via, contact, locale)
    return render(request, "confirmed.html", locale=locale, text=text if labels else words["confirmed_nothing"],
                  manage_url=manage_url)


# -- the e-mail link ---------------------------------------------------------------------------------


async def _confirm_target(request: web.Request, locale: str) -> tuple[int, str] | web.Response:
    """(subscriber id, e-mail address) the link confirms, or the page saying why it doesn't."""
    svc = services(request)
    try:
        sid, digest = read_confirm_token(svc.signer, request.match_info["token"])
    except BadToken as exc:
        return bad_link(request, locale, exc)
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, sid)
    email = sub["email"] if sub and sub["status"] != "erased" else None
    if email is None or ContactKeys(svc.settings.secret_key).digest(email) != digest:
        # The address changed since, or the subscriber is gone: this link proves nothing now.
        return notice(request, locale, 404, "gone_title", "gone_text", links=((f"/subscribe?lang={locale}", "subscribe_title"),))
    return sid, email


@endpoint("GET", "/confirm/{token}", summary="Confirm a subscription from the e-mailed link (a button posts it)",
          tag="pages", html=True, query=(LANG,), errors=(400, 404, 410))
async def confirm_page(request: web.Request) -> web.Response:
    # A GET confirms nothing: mail scanners follow links; the person presses the button.
    locale = locale_of(request)
    target = await _confirm_target(request, locale)
    if isinstance(target, web.Response):
        return target
    return render(request, "confirm.html", locale=locale, form=CONFIRM_FORM, error=None)


@endpoint("POST", "/confirm/{token}", summary="Confirm a subscription: its e-mail channel comes on",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(400, 403, 404, 410, 413))
async def confirm(request: web.Request) -> web.Response:
    fields = await read_form(request)
    locale = locale_of(request, fields)
    target = await _confirm_target(request, locale)
    if isinstance(target, web.Response):
        return target
    if not csrf.valid(request, CONFIRM_FORM, fields):
        return render(request, "confirm.html", locale=locale, status=403, form=CONFIRM_FORM, error=page_words(locale)["csrf"])
    sid, email = target
    async with services(request).db.write() as conn:
        on = await accept(conn, sid, "email", email, CONFIRM_SOURCE)
    if on is None:
        return notice(request, locale, 404, "gone_title", "gone_text")
    return _confirmed(request, locale, sid, "email", email, on)
