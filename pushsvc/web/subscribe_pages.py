"""Subscribing from the public page (`/subscribe`, where a subscribe QR leads), and confirming:
the e-mail link (`/confirm/{token}`) and the SMS code (`/verify`). What subscribing does is
pushsvc.subscriptions.signup; the page answers the same whether or not a contact is subscribed.

Inside WeChat (a User-Agent with `MicroMessenger`) nobody knows their OpenID: the page sends the
browser through the Official Account's web authorisation (snsapi_base, no prompt) and back to
`/subscribe/wechat`, which exchanges the code for the openid; a QR poster's reply links here with
the openid already in `?wechat=`. Either way the form carries it as a signed hidden field
(`wechat_openid_token`), which wins over anything typed in the OpenID field.
"""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.channels.wechat.account import AccountError, OfficialAccount, authorize_url, oauth_state, oauth_state_valid
from pushsvc.core.identifiers import mask_email, mask_phone, normalise_phone
from pushsvc.core.msgid import N_
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import ContactKind
from pushsvc.http.routing import Param, endpoint, services
from pushsvc.i18n import words as page_words
from pushsvc.subscriptions import wechat_follow
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

log = logging.getLogger(__name__)

SUBSCRIBE_FORM, VERIFY_FORM, CONFIRM_FORM = "subscribe", "verify", "confirm"
WECHAT_CALLBACK = "/subscribe/wechat"
OPENID_FIELD = "wechat_openid_token"
_OAUTH_PARAMS = ("code", "state")
_LINK_EXPIRED = N_("The link to your WeChat account has expired or is not valid. Open this page again from WeChat.")
_NO_OPENID = N_("We could not learn your WeChat account just now. You can still subscribe by e-mail or SMS, "
                "or open this page again later.")


def _form_page(request: web.Request, locale: str, typed: Typed, errors: dict[str, str], status: int = 200,
               wechat_token: str | None = None) -> web.Response:
    svc = services(request)
    if errors:
        errors.setdefault("form", page_words(locale).gettext(FORM_ERROR))
    if wechat_token:  # the openid travels signed and hidden, never in the field people may edit
        typed = dataclasses.replace(typed, wechat_openid="")
    return render(request, "subscribe.html", locale=locale, status=status, form=SUBSCRIBE_FORM,
                  wechat_token=wechat_token, **view(typed, svc.catalogue, locale, page_words(locale), errors))


def _in_wechat(request: web.Request) -> bool:
    return "MicroMessenger" in request.headers.get("User-Agent", "")


def _page_query(request: web.Request) -> list[tuple[str, str]]:
    """The page's own query: the QR's choices and the language, without the authorisation's."""
    return [(k, v) for k, v in request.query.items() if k not in (*_OAUTH_PARAMS, "wechat")]


async def _with_openid(request: web.Request, locale: str, typed: Typed, token: str) -> web.Response:
    """The form for the person whose openid `token` carries, WeChat ticked; a QR scene's choices
    filled in when the form shows none of its own."""
    svc = services(request)
    try:
        _, scene_id = wechat_follow.read_openid_token(svc, token)
    except BadToken:
        return _form_page(request, locale, typed, {"form": page_words(locale).gettext(_LINK_EXPIRED)}, status=400)
    choices = None if scene_id is None else await wechat_follow.scene_choices(svc, scene_id)
    if choices is not None and not (typed.groups or typed.domains):
        typed = dataclasses.replace(typed, groups=[g for g in choices[0] if g in svc.catalogue.groups],
                                    domains=[d for d in choices[1] if d in svc.catalogue.domains],
                                    all_domains="*" in choices[1])
    typed = dataclasses.replace(typed, channels=list(dict.fromkeys([*typed.channels, "wechat"])))
    return _form_page(request, locale, typed, {}, wechat_token=token)


@endpoint("GET", "/subscribe", summary="Subscribe page (a subscribe QR pre-fills its audience and domains; "
          "inside WeChat the Official Account's web authorisation supplies the OpenID)",
          tag="pages", html=True,
          query=(Param("audience", "an audience group slug (repeatable)"), Param("domain", "a domain slug (repeatable)"),
                 Param("wechat", "a signed token carrying the reader's openid (a QR poster's reply links with it)"),
                 LANG), errors=(400,))
async def subscribe_page(request: web.Request) -> web.Response:
    svc = services(request)
    locale = locale_of(request)
    typed = prefilled(request.query, svc.catalogue, locale)
    token = request.query.get("wechat")
    if token:
        return await _with_openid(request, locale, typed, token)
    if _in_wechat(request) and OfficialAccount(svc.settings, svc.redis).configured:
        query = _page_query(request)
        redirect_uri = f"{svc.settings.public_url}{WECHAT_CALLBACK}" + (f"?{urlencode(query)}" if query else "")
        target = authorize_url(svc.settings, redirect_uri, oauth_state(svc.settings.secret_key, query))
        return web.Response(status=302, headers={"Location": target, "Cache-Control": "no-store"})
    return _form_page(request, locale, typed, {})


@endpoint("GET", WECHAT_CALLBACK, summary="Back from the Official Account's web authorisation: the subscribe page "
          "with the reader's openid (signed, hidden)", tag="pages", html=True,
          query=(Param("code", "the authorisation's code"), Param("state", "our signed state"), LANG), errors=(400,))
async def subscribe_from_wechat(request: web.Request) -> web.Response:
    svc = services(request)
    locale = locale_of(request)
    typed = prefilled(request.query, svc.catalogue, locale)
    code, state = request.query.get("code", ""), request.query.get("state", "")
    words = page_words(locale)
    if not code or not oauth_state_valid(svc.settings.secret_key, state, _page_query(request)):
        return _form_page(request, locale, typed, {"form": words.gettext(_LINK_EXPIRED)}, status=400)
    try:
        openid = await OfficialAccount(svc.settings, svc.redis).openid_for_code(code[:128])
    except AccountError as exc:
        log.warning("the web authorisation's code exchange failed: %s", exc)
        return _form_page(request, locale, typed, {"form": words.gettext(_NO_OPENID)})
    token = wechat_follow.openid_token(svc, openid, None, wechat_follow.OPENID_PAGE_TTL)
    return await _with_openid(request, locale, typed, token)


@endpoint("POST", "/subscribe", summary="Subscribe: stored as pending, a confirmation link or code is sent",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(403, 409, 413, 422, 429, 503))
@redis_needed
async def subscribe(request: web.Request) -> web.Response:
    svc = services(request)
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    typed = read_typed(fields, svc.catalogue)
    wechat_token = fields.get(OPENID_FIELD) or None
    openid = None
    if wechat_token:
        try:
            openid, _ = wechat_follow.read_openid_token(svc, wechat_token)
        except BadToken:
            return _form_page(request, locale, typed, {"wechat_openid": words.gettext(_LINK_EXPIRED)}, status=422)
        typed = dataclasses.replace(typed, wechat_openid=openid)

    def again(errors: dict[str, str], status: int) -> web.Response:
        return _form_page(request, locale, typed, errors, status=status, wechat_token=wechat_token)

    if not csrf.valid(request, SUBSCRIBE_FORM, fields):
        return again({"form": words.gettext(EXPIRED_FORM)}, 403)
    sub, errors = check(typed, svc.catalogue, svc.settings.webhook_origins, words)
    if not typed.agree:
        errors.setdefault("agree", words.gettext("Please read and tick the agreement."))
    if sub is None or errors:
        return again(errors, 422)
    result = await sign_up(svc, sub, client_of(request), SUBSCRIBE_SOURCE)
    if isinstance(result, Limited):
        return again(limit_error(result, words), 429)
    if result == "uscc_taken":
        return again({uscc_field(sub): words.gettext(USCC_TAKEN)}, 409)
    if openid is not None:
        await wechat_follow.finished_on_page(svc, openid)
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
