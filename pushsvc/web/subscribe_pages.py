"""Subscribing from the public page (`/subscribe`, where a subscribe QR leads), and confirming:
the e-mail link (`/confirm/{token}`) and the SMS code (`/verify`). What subscribing does is
pushsvc.subscriptions.signup; the page answers the same whether or not a contact is subscribed.
"""

from __future__ import annotations

from aiohttp import web

from pushsvc.core.identifiers import mask_email, mask_phone, normalise_phone
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import ContactKind
from pushsvc.http.routing import Param, endpoint, services
from pushsvc.i18n import words as page_words
from pushsvc.subscriptions.proofs import Limited, linked_email, prove
from pushsvc.subscriptions.signup import resend_code, sign_up
from pushsvc.web import csrf
from pushsvc.web.forms import (
    CHANNEL_LABELS,
    EXPIRED_FORM,
    FIGURES,
    FORM_ERROR,
    FORM_MEDIA,
    GONE_TEXT,
    GONE_TITLE,
    INVALID_PHONE,
    LANG,
    SUBSCRIBE_TITLE,
    USCC_TAKEN,
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
    bad_link,
    client_of,
    limit_error,
    manage_path,
    prove_code,
)
from pushsvc.web.subscription_form import Typed, check, prefilled, read_typed, uscc_field, view

SUBSCRIBE_FORM, VERIFY_FORM, CONFIRM_FORM = "subscribe", "verify", "confirm"


def _form_page(request: web.Request, locale: str, typed: Typed, errors: dict[str, str], status: int = 200) -> web.Response:
    svc = services(request)
    if errors:
        errors.setdefault("form", page_words(locale).gettext(FORM_ERROR))
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
        return _form_page(request, locale, typed, {"form": words.gettext(EXPIRED_FORM)}, status=403)
    sub, errors = check(typed, svc.catalogue, svc.settings.webhook_origins, words)
    if not typed.agree:
        errors.setdefault("agree", words.gettext("Please read and tick the agreement."))
    if sub is None or errors:
        return _form_page(request, locale, typed, errors, status=422)
    result = await sign_up(svc, sub, client_of(request), SUBSCRIBE_SOURCE)
    if isinstance(result, Limited):
        return _form_page(request, locale, typed, limit_error(result, words), status=429)
    if result == "uscc_taken":
        return _form_page(request, locale, typed, {uscc_field(sub): words.gettext(USCC_TAKEN)}, status=409)
    email, phone = sub.contacts.email, sub.contacts.phone
    return render(request, "sent.html", locale=locale, form=VERIFY_FORM, email=mask_email(email) if email else None,
                  phone=phone, phone_shown=mask_phone(phone) if phone else None, errors={})


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
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    phone_text = fields.get("phone", "")[:64]
    if not csrf.valid(request, VERIFY_FORM, fields):
        return _verify_page(request, locale, phone_text, {"form": words.gettext(EXPIRED_FORM)}, status=403)
    if fields.get("action") == "resend":
        return await _resend(request, locale, phone_text)
    proven = await prove_code(request, phone_text, fields.get("code", "")[:64], VERIFY_SOURCE, words)
    if isinstance(proven, Rejected):
        return _verify_page(request, locale, phone_text, proven.errors, status=proven.status)
    sid, phone, on = proven
    return _confirmed(request, locale, sid, "phone", phone, on)


async def _resend(request: web.Request, locale: str, phone_text: str) -> web.Response:
    """A new code for a number waiting for one; the same answer for any other number."""
    words = page_words(locale)
    try:
        phone = normalise_phone(phone_text)
    except ValueError:
        return _verify_page(request, locale, phone_text, {"phone": words.gettext(INVALID_PHONE)}, status=422)
    limited = await resend_code(services(request), phone, client_of(request))
    if limited is not None:
        return _verify_page(request, locale, phone_text, limit_error(limited, words), status=429)
    resent = words.gettext("If this number is waiting for a code, we have sent a new one "
                           "(valid for %(code_minutes)s minutes).", code_minutes=FIGURES["code_minutes"])
    return _verify_page(request, locale, phone_text, {}, notice_text=resent)


def _confirmed(request: web.Request, locale: str, sid: int, via: ContactKind, contact: str, on: set[str]) -> web.Response:
    words = page_words(locale)
    labels = [words.gettext(CHANNEL_LABELS[c]) for c in CHANNEL_LABELS if c in on]
    text = words.gettext("From the next policy that matches your choices, you will receive updates by: %(channels)s.",
                         channels=listed(labels, locale))
    manage_url = manage_path(request, sid, via, contact, locale)
    return render(request, "confirmed.html", locale=locale, text=text if labels else words.gettext("Your contact is confirmed."),
                  manage_url=manage_url)


# -- the e-mail link ---------------------------------------------------------------------------------


async def _confirm_target(request: web.Request, locale: str) -> tuple[int, str] | web.Response:
    """(subscriber id, e-mail address) the link confirms, or the page saying why it doesn't."""
    try:
        target = await linked_email(services(request), request.match_info["token"])
    except BadToken as exc:
        return bad_link(request, locale, exc)
    if target is None:
        # The address changed since, or the subscriber is gone: this link proves nothing now.
        return notice(request, locale, 404, GONE_TITLE, GONE_TEXT,
                      links=((f"/subscribe?lang={locale}", SUBSCRIBE_TITLE),))
    return target


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
        return render(request, "confirm.html", locale=locale, status=403, form=CONFIRM_FORM,
                      error=page_words(locale).gettext(EXPIRED_FORM))
    sid, email = target
    on = await prove(services(request), sid, "email", email, CONFIRM_SOURCE)
    if on is None:
        return notice(request, locale, 404, GONE_TITLE, GONE_TEXT)
    return _confirmed(request, locale, sid, "email", email, on)
