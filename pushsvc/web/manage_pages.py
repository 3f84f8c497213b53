"""Managing a subscription without a password.

`/manage` asks for a way in by e-mail address or phone number and answers the same whether or
not the contact is subscribed: a link goes to an address, a code to a phone (typed in on the same
page), through the self_service job, within the same limits either way. `/manage/{token}` (signed,
expiring, naming the contact it was sent to) changes every choice of the subscribe form, pauses,
unsubscribes per channel or from everything, downloads the subscriber's data as JSON and deletes
it. A changed contact is off until proven; changes apply from the next policy.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.identifiers import (
    mask_email,
    mask_phone,
    normalise_email,
    normalise_phone,
)
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import (
    CHANNEL_OF,
    ContactKeys,
    ContactKind,
    read_manage_token,
)
from pushsvc.http.pages import SECURITY_HEADERS
from pushsvc.http.routing import endpoint, services
from pushsvc.store.self_service import (
    erase,
    export,
    leave_all,
    replace_wishes,
    set_paused,
    subscriber_by_contact,
    switch_off,
    turn_on,
    wanted_channels,
    withdraw,
)
from pushsvc.store.subscribers import find_duplicates, load_subscriber
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
    MANAGE_SOURCE,
    Rejected,
    accept,
    ask,
    bad_link,
    check_code,
    codes,
    manage_path,
    over_limit,
)
from pushsvc.web.subscription_form import Typed, check, read_typed, stored, view
from pushsvc.web.words import page_words

REQUEST_FORM, MANAGE_FORM = "manage-request", "manage"
KIND_OF = {channel: kind for kind, channel in CHANNEL_OF.items()}  # "email" -> "email", "sms" -> "phone"
_MASKS = {"email": mask_email, "phone": mask_phone}


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
        return _request_page(request, locale, contact=contact_text, phone=phone_text, errors={"form": words["csrf"]},
                             status=403)
    if fields.get("action") == "enter":
        return await _enter(request, locale, phone_text, fields.get("code", "")[:64])
    contact = _contact(contact_text)
    if contact is None:
        return _request_page(request, locale, contact=contact_text, errors={"contact": words["invalid_contact"]},
                             status=422)
    kind, value = contact
    refused = await over_limit(request, {kind: value}, words)
    if refused:
        return _request_page(request, locale, contact=contact_text, errors={"contact": refused[kind]}, status=429)
    async with services(request).db.read() as conn:
        found = await subscriber_by_contact(conn, kind, value)
    if found is not None:
        await ask(request, "manage_link", [(found[0], kind)])
    return _request_page(request, locale, contact=contact_text, phone=value if kind == "phone" else "",
                         notice_text=words["manage_sent"])


async def _enter(request: web.Request, locale: str, phone_text: str, code_text: str) -> web.Response:
    words = page_words(locale)
    checked = await check_code(request, phone_text, code_text, words)
    if isinstance(checked, Rejected):
        return _request_page(request, locale, phone=phone_text, errors=checked.errors, status=checked.status)
    sid, phone = checked
    async with services(request).db.write() as conn:
        # The phone is proven: what the subscriber asked to get on it comes on.
        on = await accept(conn, sid, "phone", phone, MANAGE_SOURCE)
    if on is None:
        return _request_page(request, locale, phone=phone_text, errors={"code": words["no_code"]}, status=422)
    location = manage_path(request, sid, "phone", phone, locale)
    return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})


# -- the manage page ---------------------------------------------------------------------------------


async def _session(request: web.Request, locale: str) -> tuple[int, ContactKind | None, dict[str, Any]] | web.Response:
    """(subscriber id, the kind of contact the link went to if it is still theirs, the subscriber),
    or the page saying why not."""
    svc = services(request)
    try:
        sid, via, digest = read_manage_token(svc.signer, request.match_info["token"])
    except BadToken as exc:
        return bad_link(request, locale, exc)
    async with services(request).db.read() as conn:
        sub = await load_subscriber(conn, sid)
        if sub is not None:
            sub["wanted"] = await wanted_channels(conn, sid)
    if sub is None or sub["status"] == "erased":
        return notice(request, locale, 404, "gone_title", "gone_text", links=((f"/subscribe?lang={locale}", "subscribe_title"),))
    # An address changed on this page since is not proven by the link that opened it.
    proven = sub[via] is not None and ContactKeys(svc.settings.secret_key).digest(sub[via]) == digest
    return sid, via if proven else None, sub


def _manage_page(request: web.Request, locale: str, sub: dict[str, Any], *, typed: Typed | None = None,
                 errors: dict[str, str] | None = None, notices: tuple[str, ...] = (), status: int = 200) -> web.Response:
    svc, words, errors = services(request), page_words(locale), errors or {}
    if errors and "form" not in errors:
        errors["form"] = words["form_error"]
    shown = typed or stored(sub, sub["wanted"] | set(sub["channels"]))
    return render(
        request, "manage.html", locale=locale, status=status, form=MANAGE_FORM, self_url=request.path,
        status_label=words[f"status_{sub['status']}"], state=sub["status"], notices=notices,
        on=[(c, words[f"channel_{c}"]) for c in CHANNEL_CONTACTS if c in sub["channels"]],
        download_url=f"{request.path}/data.json", **view(shown, svc.catalogue, locale, words, errors),
    )


@endpoint("GET", "/manage/{token}", summary="The manage page (signed link, expires)", tag="pages", html=True,
          query=(LANG,), errors=(400, 404, 410))
async def manage_page(request: web.Request) -> web.Response:
    session = await _session(request, locale_of(request))
    if isinstance(session, web.Response):
        return session
    sub = session[2]
    return _manage_page(request, locale_of(request, fallback=sub["locale"]), sub)


@endpoint("POST", "/manage/{token}", summary="Change a subscription: action=save|pause|resume|leave|leave_all|erase",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(400, 403, 404, 409, 410, 413, 422, 429, 503))
@redis_needed
async def manage(request: web.Request) -> web.Response:
    fields = await read_form(request)
    session = await _session(request, locale_of(request, fields))
    if isinstance(session, web.Response):
        return session
    sid, via, sub = session
    locale = locale_of(request, fields, fallback=sub["locale"])
    words = page_words(locale)
    if not csrf.valid(request, MANAGE_FORM, fields):
        return _manage_page(request, locale, sub, errors={"form": words["csrf"]}, status=403)
    action = fields.get("action")
    if action == "save":
        return await _save(request, locale, sid, via, sub, read_typed(fields, services(request).catalogue))
    if action == "erase":
        if fields.get("erase_confirm") != "yes":
            return _manage_page(request, locale, sub, errors={"erase": words["erase_unconfirmed"]}, status=422)
        async with services(request).db.write() as conn:
            await erase(conn, sid, MANAGE_SOURCE)
        if sub["phone"]:
            await codes(request).forget(sub["phone"])
        return notice(request, locale, 200, "erased_title", "erased_text")
    said = await _change(request, sid, action, fields.get("channel"))
    if said is None:
        return _manage_page(request, locale, sub, errors={"form": words["form_error"]}, status=422)
    return await _reloaded(request, locale, sid, (words[said],))


async def _change(request: web.Request, sid: int, action: str | None, channel: str | None) -> str | None:
    """Pause, resume or leave; the words key that says it was done, or None for no such action."""
    async with services(request).db.write() as conn:
        if action in ("pause", "resume"):
            await set_paused(conn, sid, action == "pause")
            return "paused" if action == "pause" else "resumed"
        if action == "leave" and channel in CHANNEL_CONTACTS:
            await withdraw(conn, sid, {channel}, MANAGE_SOURCE)
            return "left"
        if action == "leave_all":
            await leave_all(conn, sid, MANAGE_SOURCE)
            return "left"
    return None


async def _reloaded(request: web.Request, locale: str, sid: int, notices: tuple[str, ...]) -> web.Response:
    async with services(request).db.read() as conn:
        sub = await load_subscriber(conn, sid)
        assert sub is not None  # only erasing empties it, and that answers with its own page
        sub["wanted"] = await wanted_channels(conn, sid)
    return _manage_page(request, locale, sub, notices=notices)


async def _save(request: web.Request, locale: str, sid: int, via: ContactKind | None, sub: dict[str, Any],
                typed: Typed) -> web.Response:
    """Every choice of the subscribe form. A channel stays or comes on when its contact is the
    one this page was opened with, or is unchanged and was on; otherwise its contact is asked to
    prove itself first. WeChat contacts cannot be proven and come on with the page's proof."""
    svc, words = services(request), page_words(locale)
    new, errors = check(typed, svc.catalogue, svc.settings.webhook_origins, words)
    if new is None:
        return _manage_page(request, locale, sub, typed=typed, errors=errors, status=422)
    async with svc.db.read() as conn:
        taken = {name for (name, _), owner in (await find_duplicates(conn, [new])).items() if owner != sid}
    if taken:
        uscc = next((f"{g}.uscc" for g in new.audiences if "uscc" in new.audiences[g]), "form")
        errors = {name: words["contact_taken"] for name in taken if name != "uscc"}
        if "uscc" in taken:
            errors[uscc] = words["uscc_taken"]
        return _manage_page(request, locale, sub, typed=typed, errors=errors, status=409)
    contacts = {"email": new.contacts.email or "", "phone": new.contacts.phone or ""}  # "" never: see check()
    on, requested = set(sub["channels"]), set(new.channels)
    keep: set[str] = set()
    prove: dict[ContactKind, str] = {}
    for channel in requested:
        kind = KIND_OF.get(channel)
        if kind is None or (contacts[kind] == sub[kind] and (channel in on or kind == via)):
            keep.add(channel)
        else:
            prove[kind] = contacts[kind]
    refused = await over_limit(request, prove, words)
    if refused:
        return _manage_page(request, locale, sub, typed=typed, errors=refused, status=429)
    try:
        async with svc.db.write() as conn:
            await switch_off(conn, sid, (on & requested) - keep)
            await replace_wishes(conn, sid, new, MANAGE_SOURCE)
            if keep - on:
                await turn_on(conn, sid, keep - on, proof="manage", source=MANAGE_SOURCE)
    except IntegrityError:  # another subscriber took the contact between the check above and this write
        return _manage_page(request, locale, sub, typed=typed, errors={"form": words["contact_taken"]}, status=409)
    await ask(request, "confirmation", [(sid, kind) for kind in prove])
    notices = (words["saved"],)
    if prove:
        notices += (words["awaiting"].format(what=listed([_MASKS[k](v) for k, v in prove.items()], locale)),)
    return await _reloaded(request, locale, sid, notices)


@endpoint("GET", "/manage/{token}/data.json", summary="Everything held about the subscriber, as JSON (PIPL)",
          tag="pages", errors=(400, 404, 410))
async def my_data(request: web.Request) -> web.Response:
    session = await _session(request, locale_of(request))
    if isinstance(session, web.Response):
        return session
    async with services(request).db.read() as conn:
        data = await export(conn, session[0])
    if data is None:
        return notice(request, locale_of(request), 404, "gone_title", "gone_text")
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, indent=2), content_type="application/json",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store",
                 "Content-Disposition": 'attachment; filename="pushsvc-my-data.json"'},
    )
