"""Proving a contact, and what a proof opens.

An e-mail address is proven by the link sent to it (`linked_email`, then `prove`), a phone number
by the code sent to it (`prove_by_code`); a manage link opens the subscription of the contact it
was sent to (`open_manage`). Asking for a message is limited per contact and per client address
(pushsvc.subscriptions.codes), the same way for contacts we know and contacts we don't; the
message itself is sent by a job (pushsvc.subscriptions.self_service). A proof turns on the
channels the subscriber asked for that the proven contact stands behind: its own channel, and
WeChat, whose contacts we cannot prove.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.subscribers import Contacts
from pushsvc.core.verification import (
    CHANNEL_OF,
    UNPROVABLE_CHANNELS,
    ContactKeys,
    ContactKind,
    read_confirm_token,
    read_manage_token,
)
from pushsvc.services import Services
from pushsvc.store.self_service import channels_on, subscriber_by_contact, turn_on, wanted_channels
from pushsvc.store.subscribers import load_subscriber
from pushsvc.subscriptions.codes import Codes, Refused
from pushsvc.subscriptions.self_service import Kind, enqueue_send
from pushsvc.subscriptions.suppression import lift_proven


def codes_of(svc: Services) -> Codes:
    return Codes(svc.redis, ContactKeys(svc.settings.secret_key))


@dataclass(frozen=True)
class Limited:
    """A message not sent: the kind of contact it was for, and who is over their limit how long."""

    contact: ContactKind
    refused: Refused


async def take_messages(svc: Services, contacts: Mapping[ContactKind, str], client: str) -> Limited | None:
    """Take a message for each contact requested by `client`; the first one refused. A phone's
    code round starts here, for any number: the code checks answer alike for known and unknown."""
    codes = codes_of(svc)
    for kind, value in contacts.items():
        refused = await codes.may_send(value, client)
        if refused is not None:
            return Limited(kind, refused)
    if "phone" in contacts:
        await codes.new_round(contacts["phone"])
    return None


async def ask(svc: Services, kind: Kind, sends: list[tuple[int, ContactKind]]) -> None:
    """Have the job send `kind` to each (subscriber, contact)."""
    for sid, contact in sends:
        await enqueue_send(svc.redis, kind, sid, CHANNEL_OF[contact])


async def ask_for_manage_link(svc: Services, kind: ContactKind, value: str, client: str) -> Limited | None:
    """A way into the subscription of `value` (a link to an address, a code to a phone). Limited
    and answered the same whether or not `value` is subscribed."""
    limited = await take_messages(svc, {kind: value}, client)
    if limited is not None:
        return limited
    async with svc.db.read() as conn:
        found = await subscriber_by_contact(conn, kind, value)
    if found is not None:
        await ask(svc, "manage_link", [(found[0], kind)])
    return None


def _contacts(row: Mapping[str, Any]) -> Contacts:
    return Contacts(email=row["email"], phone=row["phone"], wechat_openid=row["wechat_openid"],
                    wechat_webhook=row["wechat_webhook"])


def _opened_by(kind: ContactKind, wanted: set[str], contacts: Contacts) -> set[str]:
    return {ch for ch in wanted
            if (ch == CHANNEL_OF[kind] or ch in UNPROVABLE_CHANNELS) and CHANNEL_CONTACTS[ch](contacts) is not None}


async def _accept(conn: AsyncConnection, sid: int, kind: ContactKind, value: str, source: str) -> set[str] | None:
    row = await load_subscriber(conn, sid)
    if row is None or row["status"] == "erased" or row[kind] != value:
        return None
    await turn_on(conn, sid, _opened_by(kind, await wanted_channels(conn, sid), _contacts(row)), proof=kind,
                  source=source)
    return await channels_on(conn, sid)


async def prove(svc: Services, sid: int, kind: ContactKind, value: str, source: str) -> set[str] | None:
    """`value`, the `kind` of contact of subscriber `sid`, is proven: turn on what it opens.
    Returns the channels on, or None when `value` is no longer the subscriber's."""
    async with svc.db.write() as conn:
        on = await _accept(conn, sid, kind, value, source)
        if on is not None:
            await lift_proven(svc, conn, kind, value)  # its owner has it: pushes may reach it again
        return on


@dataclass(frozen=True)
class CodeRefused:
    """Why a code proved nothing: the client checked too many (`limited`, for `retry_after`
    seconds), a `wrong` code (`attempts_left`, counted alike for numbers subscribed or not), or
    `none`: no round of codes running for the number, or the number is no longer its subscriber's."""

    reason: Literal["limited", "wrong", "none"]
    retry_after: float = 0.0
    attempts_left: int = 0


@dataclass(frozen=True)
class Proven:
    subscriber_id: int
    channels_on: set[str]


async def prove_by_code(svc: Services, phone: str, code: str, client: str, source: str) -> Proven | CodeRefused:
    """Check `code` (normalised) for `phone` (normalised) typed in by `client`; a right one proves the phone."""
    codes = codes_of(svc)
    refused = await codes.may_check(client)
    if refused is not None:
        return CodeRefused("limited", retry_after=refused.retry_after)
    checked = await codes.check(phone, code)
    if checked.result == "wrong":
        return CodeRefused("wrong", attempts_left=checked.attempts_left)
    if checked.result == "none":
        return CodeRefused("none")
    on = await prove(svc, checked.subscriber_id, "phone", phone, source)
    return CodeRefused("none") if on is None else Proven(checked.subscriber_id, on)


async def linked_email(svc: Services, token: str) -> tuple[int, str] | None:
    """(subscriber id, e-mail address) a confirmation link proves, or None when the address
    changed since or the subscriber is gone. Raises BadToken for a link expired or not ours."""
    sid, digest = read_confirm_token(svc.signer, token)
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, sid)
    email = sub["email"] if sub and sub["status"] != "erased" else None
    if email is None or ContactKeys(svc.settings.secret_key).digest(email) != digest:
        return None
    return sid, email


async def subscriber_with_wishes(svc: Services, sid: int) -> dict[str, Any] | None:
    """The subscriber as load_subscriber reads it, with the channels they asked for as `wanted`."""
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, sid)
        if sub is not None:
            sub["wanted"] = await wanted_channels(conn, sid)
    return sub


@dataclass(frozen=True)
class ManageSession:
    """What a manage link opens: the subscriber (with `wanted`), and the kind of contact the link
    went to, which is still theirs."""

    subscriber_id: int
    via: ContactKind
    subscriber: dict[str, Any]


async def open_manage(svc: Services, token: str) -> ManageSession | Literal["gone", "changed"]:
    """`gone` when the subscriber is; `changed` when the contact the link was sent to is no longer
    theirs: a link proves only the contact it went to, so whoever holds that old address or
    number (a mailbox handed on, a number reassigned) reads and changes nothing. Raises BadToken
    for a link expired or not ours."""
    sid, via, digest = read_manage_token(svc.signer, token)
    sub = await subscriber_with_wishes(svc, sid)
    if sub is None or sub["status"] == "erased":
        return "gone"
    if sub[via] is None or ContactKeys(svc.settings.secret_key).digest(sub[via]) != digest:
        return "changed"
    async with svc.db.write() as conn:
        await lift_proven(svc, conn, via, sub[via])  # the link reached its owner: pushes may again
    return ManageSession(sid, via, sub)
