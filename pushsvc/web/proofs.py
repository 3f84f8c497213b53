"""Asking a contact to prove itself, and taking the proof: shared by /subscribe, /verify,
/confirm and /manage.

Asking is limited per contact and per client address (pushsvc.subscriptions.codes), the same way for contacts
we know and contacts we don't; the message itself is sent by a job. A proof turns on the channels
the subscriber asked for that the proven contact stands behind: its own channel, and WeChat,
whose contacts we cannot prove.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.identifiers import normalise_phone
from pushsvc.core.subscribers import Contacts
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import (
    CHANNEL_OF,
    UNPROVABLE_CHANNELS,
    ContactKeys,
    ContactKind,
    manage_token,
    normal_code,
)
from pushsvc.http.limits import client_address
from pushsvc.http.routing import services
from pushsvc.store.self_service import channels_on, turn_on, wanted_channels
from pushsvc.store.subscribers import load_subscriber
from pushsvc.subscriptions.codes import Codes
from pushsvc.subscriptions.self_service import Kind, enqueue_send
from pushsvc.web.forms import minutes, notice

# How each contact is reached, and the sources consents name: the page it happened on.
SUBSCRIBE_SOURCE, CONFIRM_SOURCE, VERIFY_SOURCE, MANAGE_SOURCE = "web:/subscribe", "web:/confirm", "web:/verify", "web:/manage"


def codes(request: web.Request) -> Codes:
    svc = services(request)
    return Codes(svc.redis, ContactKeys(svc.settings.secret_key))


def client_of(request: web.Request) -> str:
    return client_address(request, services(request).settings.proxy_hops)


async def over_limit(request: web.Request, contacts: Mapping[ContactKind, str], words: dict[str, str]) -> dict[str, str]:
    """Take a message for each contact; the error (by form field) of the first one refused."""
    for kind, value in contacts.items():
        refused = await codes(request).may_send(value, client_of(request))
        if refused is not None:
            word = "limited_client" if refused.who == "client" else f"limited_{kind}"
            return {kind: words[word].format(minutes=minutes(refused.retry_after))}
    return {}


async def ask(request: web.Request, kind: Kind, sends: list[tuple[int, ContactKind]]) -> None:
    """Have the job send `kind` to each (subscriber, contact)."""
    for sid, contact in sends:
        await enqueue_send(services(request).redis, kind, sid, CHANNEL_OF[contact])


def contacts_of(row: Mapping[str, Any]) -> Contacts:
    return Contacts(email=row["email"], phone=row["phone"], wechat_openid=row["wechat_openid"],
                    wechat_webhook=row["wechat_webhook"])


def opened_by(kind: ContactKind, wanted: set[str], contacts: Contacts) -> set[str]:
    return {ch for ch in wanted
            if (ch == CHANNEL_OF[kind] or ch in UNPROVABLE_CHANNELS) and CHANNEL_CONTACTS[ch](contacts) is not None}


async def accept(conn: AsyncConnection, sid: int, kind: ContactKind, value: str, source: str) -> set[str] | None:
    """`value`, the `kind` of contact of subscriber `sid`, is proven: turn on what it opens.
    Returns the channels on, or None when `value` is no longer the subscriber's."""
    row = await load_subscriber(conn, sid)
    if row is None or row["status"] == "erased" or row[kind] != value:
        return None
    await turn_on(conn, sid, opened_by(kind, await wanted_channels(conn, sid), contacts_of(row)), proof=kind,
                  source=source)
    return await channels_on(conn, sid)


@dataclass(frozen=True)
class Rejected:
    errors: dict[str, str]  # by form field
    status: int


async def check_code(request: web.Request, phone_text: str, code_text: str,
                     words: dict[str, str]) -> tuple[int, str] | Rejected:
    """(subscriber id, phone) for a right code."""
    try:
        phone = normalise_phone(phone_text)
    except ValueError:
        return Rejected({"phone": words["invalid_phone"]}, 422)
    code = normal_code(code_text)
    if code is None:
        return Rejected({"code": words["verify_intro"]}, 422)
    refused = await codes(request).may_check(client_of(request))
    if refused is not None:
        return Rejected({"code": words["limited_client"].format(minutes=minutes(refused.retry_after))}, 429)
    checked = await codes(request).check(phone, code)
    if checked.result == "ok":
        return checked.subscriber_id, phone
    if checked.result == "wrong":
        return Rejected({"code": words["wrong_code"].format(left=checked.attempts_left)}, 422)
    return Rejected({"code": words["no_code"]}, 422)


def manage_path(request: web.Request, sid: int, kind: ContactKind, contact: str, locale: str) -> str:
    """The manage page for someone who has just proven `contact`."""
    svc = services(request)
    token = manage_token(svc.signer, ContactKeys(svc.settings.secret_key), sid, kind, contact)
    return f"/manage/{token}?lang={locale}"


def bad_link(request: web.Request, locale: str, exc: BadToken) -> web.Response:
    """A clear page, never a 500, for a link that is expired (410) or not ours (400)."""
    if exc.reason == "expired":
        return notice(request, locale, 410, "expired_title", "expired_text",
                      links=((f"/manage?lang={locale}", "new_link"),))
    return notice(request, locale, 400, "bad_link_title", "bad_link_text",
                  links=((f"/manage?lang={locale}", "new_link"),))
