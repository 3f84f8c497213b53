"""The messages a person asks for on the self-service pages: a confirmation of a subscription
(a link by e-mail, a code by SMS) and a way into the manage page (a link by e-mail, a code by
SMS). The `self_service_send` arq job sends one, so the page answers at once and the same way
whether or not anything is sent. The job's arguments name the subscriber, never a contact or a
code (arq logs them): it reads the contact as it is now and makes the link or code itself.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from arq import ArqRedis

from pushsvc.channels.base import Recipient
from pushsvc.core.clock import now
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.retry import backoff_seconds
from pushsvc.core.verification import (
    CODE_TTL,
    CONFIRM_TTL,
    MANAGE_TTL,
    ContactKeys,
    Via,
    confirm_token,
    manage_token,
)
from pushsvc.logs import job_kwargs
from pushsvc.services import Services
from pushsvc.store.self_service import purge_unconfirmed
from pushsvc.store.short_links import code_for, short_code
from pushsvc.store.subscribers import load_subscriber
from pushsvc.subscriptions.codes import Codes

log = logging.getLogger(__name__)

Kind = Literal["confirmation", "manage_link"]
JOB = "self_service_send"
# Where an SMS sends the person to type its code in.
CODE_PAGES: dict[str, str] = {"confirmation": "/verify", "manage_link": "/manage"}
# Words for a WeChat card's heading: these messages go by e-mail and SMS, but `title` is part of the kind.
TITLES = {
    "confirmation": {"zh-CN": "请确认订阅", "zh-HK": "請確認訂閱", "en": "Please confirm your subscription"},
    "manage_link": {"zh-CN": "管理订阅", "zh-HK": "管理訂閱", "en": "Manage your subscription"},
}


@dataclass(frozen=True)
class _OneOff:
    """A message for one person, made for them alone: its key is never shared with another."""

    kind: str
    nonce: str
    title: str
    short_url: str  # the e-mail's QR and the SMS's one link
    expires_at: datetime  # local time
    code: str  # SMS only; "" in an e-mail
    valid_minutes: int
    version: str = "1"
    qr_url: str = ""  # for WeChat, which these messages do not use

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.nonce}"

    @property
    def to_subscriber(self) -> bool:
        # Nothing to unsubscribe from: the person is not subscribed yet, or asked for this one message.
        return False


@dataclass(frozen=True)
class ConfirmationMessage(_OneOff):
    confirm_url: str = ""


@dataclass(frozen=True)
class ManageLinkMessage(_OneOff):
    manage_url: str = ""


async def enqueue_send(redis: ArqRedis, kind: Kind, subscriber_id: int, via: Via) -> None:
    await redis.enqueue_job(JOB, kind, subscriber_id, via, **job_kwargs())


async def _short_url(svc: Services, target: str) -> str:
    async with svc.db.read() as conn:
        code = await code_for(conn, target)
    if code is None:
        async with svc.db.write() as conn:
            code = await short_code(conn, target)
    return f"{svc.settings.public_url}/s/{code}"


def _local(ttl: timedelta) -> datetime:
    return (now() + ttl).astimezone(LOCAL_ZONE)


async def run_self_service_send(svc: Services, kind: Kind, subscriber_id: int, via: Via, attempt: int) -> float | None:
    """Send it; returns seconds until a retry when the channel says try again later, else None."""
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, subscriber_id)
    address = None if sub is None or sub["status"] == "erased" else sub["email" if via == "email" else "phone"]
    if sub is None or address is None:
        log.info("self-service %s for subscriber %d: no %s any more, nothing sent", kind, subscriber_id, via)
        return None
    locale, nonce, public = sub["locale"], secrets.token_hex(8), svc.settings.public_url
    title = TITLES[kind].get(locale, TITLES[kind]["zh-CN"])
    message: ConfirmationMessage | ManageLinkMessage
    if via == "email":
        keys = ContactKeys(svc.settings.secret_key)
        if kind == "confirmation":
            token = confirm_token(svc.signer, keys, subscriber_id, address)
            url = f"{public}/confirm/{token}"
            message = ConfirmationMessage(kind, nonce, title, url, _local(CONFIRM_TTL), "", 0, confirm_url=url)
        else:
            url = f"{public}/manage/{manage_token(svc.signer, keys, subscriber_id, 'email', address)}"
            message = ManageLinkMessage(kind, nonce, title, url, _local(MANAGE_TTL), "", 0, manage_url=url)
    else:
        code = await Codes(svc.redis, ContactKeys(svc.settings.secret_key)).issue(address, subscriber_id)
        short = await _short_url(svc, CODE_PAGES[kind])
        minutes = int(CODE_TTL.total_seconds() // 60)
        cls = ConfirmationMessage if kind == "confirmation" else ManageLinkMessage
        message = cls(kind, nonce, title, short, _local(CODE_TTL), code, minutes)
    # No ledger row: the outcome is read here, so the subscriber id serves as the delivery id.
    recipient = Recipient(delivery_id=subscriber_id, subscriber_id=subscriber_id, name=sub["name"], locale=locale,
                          email=sub["email"], phone=sub["phone"])
    [outcome] = await svc.channels[via].send(message, [recipient])
    if outcome.status == "retry":
        return backoff_seconds(attempt, svc.settings.retry_base_seconds, svc.settings.retry_max_seconds)
    if outcome.status == "failed":
        log.warning("self-service %s for subscriber %d by %s failed: %s", kind, subscriber_id, via, outcome.error)
    return None


async def run_purge_unconfirmed(svc: Services) -> int:
    """Forget subscribe requests whose confirmation link has expired unused."""
    async with svc.db.write() as conn:
        return await purge_unconfirmed(conn, now() - CONFIRM_TTL)
