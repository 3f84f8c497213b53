"""Managing a subscription without a password.

`/manage` asks for a way in by e-mail address or phone number and answers the same whether or
not the contact is subscribed: a link goes to an address, a code to a phone (typed in on the same
page), through the self_service job, within the same limits either way. `/manage/{token}` (signed,
expiring, naming the contact it was sent to) changes every choice of the subscribe form, pauses,
unsubscribes per channel or from everything, downloads the subscriber's data as JSON and deletes
it: the pages read the form and answer; the changes are pushsvc.subscriptions.changes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.identifiers import mask_email, mask_phone, normalise_email, normalise_phone
from pushsvc.core.msgid import N_
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import ContactKind
from pushsvc.http.pages import SECURITY_HEADERS
from pushsvc.http.routing import endpoint, services
from pushsvc.i18n import words as page_words
from pushsvc.subscriptions import changes
from pushsvc.subscriptions.export import data_json
from pushsvc.subscriptions.proofs import (
    Limited,
    ManageSession,
    ask_for_manage_link,
    open_manage,
    subscriber_with_wishes,
)
from pushsvc.web import csrf
from pushsvc.web.forms import (
    CHANNEL_LABELS,
    EXPIRED_FORM,
    FORM_ERROR,
    FORM_MEDIA,
    GONE_TEXT,
    GONE_TITLE,
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
from pushsvc.web.proofs import MANAGE_SOURCE, Rejected, bad_link, client_of, limit_error, manage_path, prove_code
from pushsvc.web.subscription_form import Typed, check, read_typed, stored, uscc_field, view

REQUEST_FORM, MANAGE_FORM = "manage-request", "manage"
_MASKS = {"email": mask_email, "phone": mask_phone}
STATUS_LABELS = {"active": N_("Receiving"), "paused": N_("Paused"),
                 "unsubscribed": N_("Unsubscribed from everything"), "pending": N_("Waiting for confirmation")}


# -- asking for a way in -----------------------------------------------------------------------------


def _request_page(request: web.Request, locale: str, *, contact: str = "", phone: str = "",
                  errors: dict[str, str] | None = None, notice_text: str | None = None, status: int = 200) -> web.Response:
    return render(request, "manage_request.html", locale=locale, status=status, form=REQUEST_FORM, contact=contact,
                  phone=phone, errors=errors or {}, notice_text=notice_text)


def _contact(text: str) -> tuple[ContactKind, str] | None:
    try:
        return ("email", normalise_email(text)) if "@" in text else ("phone", normalise_phone(text))
    except ValueError:
        return None


@endpoint("GET", "/manage", summary="Ask for a link (e-mail) or code (SMS) to manage a subscription",
          tag="pages", html=True, query=(LANG,))
async def manage_request_page(request: web.Request) -> web.Response:
    return _request_page(request, locale_of(request))


@endpoint("POST", "/manage", summary="Send a manage link or code (action=send, the same answer for any contact), "
          "or enter a code (action=enter: 303 to the manage page)",
          tag="pages", html=True, body_media=FORM_MEDIA, also=(303,), errors=(403, 413, 422, 429, 503))
@redis_needed
async def manage_request(request: web.Request) -> web.Response:
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    contact_text, phone_text = fields.get("contact", "")[:254].strip(), fields.get("phone", "")[:64]
    if not csrf.valid(request, REQUEST_FORM, fields):
        return _request_page(request, locale, contact=contact_text, phone=phone_text,
                             errors={"form": words.gettext(EXPIRED_FORM)},
                             status=403)
    if fields.get("action") == "enter":
        return await _enter(request, locale, phone_text, fields.get("code", "")[:64])
    contact = _contact(contact_text)
    if contact is None:
        return _request_page(request, locale, contact=contact_text, errors={"contact": words.gettext(
            "Give a valid e-mail address or mainland China mobile number.")},
                             status=422)
    kind, value = contact
    limited = await ask_for_manage_link(services(request), kind, value, client_of(request))
    if limited is not None:
        return _request_page(request, locale, contact=contact_text, errors={"contact": limit_error(limited, words)[kind]},
                             status=429)
    return _request_page(request, locale, contact=contact_text, phone=value if kind == "phone" else "",
                         notice_text=words.gettext("If this contact is subscribed, we have sent it a link or a code."))


async def _enter(request: web.Request, locale: str, phone_text: str, code_text: str) -> web.Response:
    words = page_words(locale)
    # A right code proves the phone: what the subscriber asked to get on it comes on.
    proven = await prove_code(request, phone_text, code_text, MANAGE_SOURCE, words)
    if isinstance(proven, Rejected):
        return _request_page(request, locale, phone=phone_text, errors=proven.errors, status=proven.status)
    sid, phone, _ = proven
    location = manage_path(request, sid, "phone", phone, locale)
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


# -- the manage page ---------------------------------------------------------------------------------


async def _session(request: web.Request, locale: str) -> ManageSession | web.Response:
    """What the link opens, or the page saying why not."""
    try:
        session = await open_manage(services(request), request.match_info["token"])
    except BadToken as exc:
        return bad_link(request, locale, exc)
    if session == "gone":
        return notice(request, locale, 404, GONE_TITLE, GONE_TEXT,
                      links=((f"/subscribe?lang={locale}", SUBSCRIBE_TITLE),))
    if session == "changed":
        return notice(request, locale, 410, N_("Link no longer valid"),
                      N_("This link was sent to a contact that has since changed. Ask for a new manage link "
                         "with the subscription's current e-mail address or phone number."),
                      links=((f"/manage?lang={locale}", N_("Ask for a new manage link")),))
    return session


def _manage_page(request: web.Request, locale: str, sub: dict[str, Any], *, typed: Typed | None = None,
                 errors: dict[str, str] | None = None, notices: tuple[str, ...] = (), status: int = 200) -> web.Response:
    svc, words, errors = services(request), page_words(locale), errors or {}
    if errors and "form" not in errors:
        errors["form"] = words.gettext(FORM_ERROR)
    shown = typed or stored(sub, sub["wanted"] | set(sub["channels"]))
    return render(
        request, "manage.html", locale=locale, status=status, form=MANAGE_FORM, self_url=request.path,
        status_label=words.gettext(STATUS_LABELS[sub["status"]]), state=sub["status"], notices=notices,
        on=[(c, words.gettext(CHANNEL_LABELS[c])) for c in CHANNEL_CONTACTS if c in sub["channels"]],
        download_url=f"{request.path}/data.json", **view(shown, svc.catalogue, locale, words, errors),
    )


@endpoint("GET", "/manage/{token}", summary="The manage page (signed link, expires)", tag="pages", html=True,
          query=(LANG,), errors=(400, 404, 410))
async def manage_page(request: web.Request) -> web.Response:
    session = await _session(request, locale_of(request))
    if isinstance(session, web.Response):
        return session
    sub = session.subscriber
    return _manage_page(request, locale_of(request, fallback=sub["locale"]), sub)


@endpoint("POST", "/manage/{token}", summary="Change a subscription: action=save|pause|resume|leave|leave_all|erase",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(400, 403, 404, 409, 410, 413, 422, 429, 503))
@redis_needed
async def manage(request: web.Request) -> web.Response:
    fields = await read_form(request)
    session = await _session(request, locale_of(request, fields))
    if isinstance(session, web.Response):
        return session
    sid, sub = session.subscriber_id, session.subscriber
    locale = locale_of(request, fields, fallback=sub["locale"])
    words = page_words(locale)
    if not csrf.valid(request, MANAGE_FORM, fields):
        return _manage_page(request, locale, sub, errors={"form": words.gettext(EXPIRED_FORM)}, status=403)
    action = fields.get("action")
    if action == "save":
        return await _save(request, locale, session, read_typed(fields, services(request).catalogue))
    if action == "erase":
        if fields.get("erase_confirm") != "yes":
            return _manage_page(request, locale, sub, errors={"erase": words.gettext("Tick the confirmation first.")},
                                status=422)
        await changes.erase(services(request), sid, MANAGE_SOURCE)
        return notice(request, locale, 200, N_("Your data is deleted"),
                      N_("We have erased your contacts and your subscription; you will receive nothing more from us."))
    said = await _change(request, sid, action, fields.get("channel"))
    if said is None:
        return _manage_page(request, locale, sub, errors={"form": words.gettext(FORM_ERROR)}, status=422)
    return await _reloaded(request, locale, sid, (words.gettext(said),))


async def _change(request: web.Request, sid: int, action: str | None, channel: str | None) -> str | None:
    """Pause, resume or leave; the msgid that says it was done, or None for no such action."""
    svc = services(request)
    if action == "pause":
        await changes.pause(svc, sid)
        return N_("Paused. Your choices are kept; once you resume, updates start again from the next policy.")
    if action == "resume":
        await changes.resume(svc, sid)
        return N_("Updates resumed.")
    if action == "leave" and channel in CHANNEL_CONTACTS:
        await changes.leave(svc, sid, channel, MANAGE_SOURCE)
    elif action == "leave_all":
        await changes.leave_all(svc, sid, MANAGE_SOURCE)
    else:
        return None
    return N_("Unsubscribed.")


async def _reloaded(request: web.Request, locale: str, sid: int, notices: tuple[str, ...]) -> web.Response:
    sub = await subscriber_with_wishes(services(request), sid)
    assert sub is not None  # only erasing empties it, and that answers with its own page
    return _manage_page(request, locale, sub, notices=notices)


async def _save(request: web.Request, locale: str, session: ManageSession, typed: Typed) -> web.Response:
    """Every choice of the subscribe form (pushsvc.subscriptions.changes.save)."""
    svc, words, sub = services(request), page_words(locale), session.subscriber
    new, errors = check(typed, svc.catalogue, svc.settings.webhook_origins, words)
    if new is None:
        return _manage_page(request, locale, sub, typed=typed, errors=errors, status=422)
    result = await changes.save(svc, session, new, client_of(request), MANAGE_SOURCE)
    if isinstance(result, Limited):
        return _manage_page(request, locale, sub, typed=typed, errors=limit_error(result, words), status=429)
    if isinstance(result, changes.Taken):
        taken = words.gettext("Another subscription already uses this contact.")
        errors = {name: taken for name in result.names if name != "uscc"}
        if "uscc" in result.names:
            errors[uscc_field(new)] = words.gettext(USCC_TAKEN)
        return _manage_page(request, locale, sub, typed=typed, errors=errors or {"form": taken}, status=409)
    notices = (words.gettext("Saved. The changes apply from the next policy."),)
    if result.awaiting:
        what = listed([_MASKS[k](v) for k, v in result.awaiting.items()], locale)
        notices += (words.gettext("A new contact needs confirming: %(what)s. It starts receiving once confirmed.",
                                  what=what),)
    return await _reloaded(request, locale, session.subscriber_id, notices)


@endpoint("GET", "/manage/{token}/data.json", summary="Everything held about the subscriber, as JSON (PIPL)",
          tag="pages", errors=(400, 404, 410))
async def my_data(request: web.Request) -> web.Response:
    session = await _session(request, locale_of(request))
    if isinstance(session, web.Response):
        return session
    data = await data_json(services(request), session.subscriber_id)
    if data is None:
        return notice(request, locale_of(request), 404, GONE_TITLE, GONE_TEXT)
    return web.Response(
        text=data, content_type="application/json",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store",
                 "Content-Disposition": 'attachment; filename="pushsvc-my-data.json"'},
    )
