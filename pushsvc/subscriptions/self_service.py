"""The messages a person asks for on the self-service pages: a confirmation of a subscription
(a link by e-mail, a code by SMS) and a way into the manage page (a link by e-mail, a code by
SMS). The `self_service_send` arq job sends one, so the page answers at once and the same way
whether or not anything is sent. The job's arguments name the subscriber, never a contact or a
code (arq logs them): it reads the contact as it is now and makes the link or code itself.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Literal, get_args

from arq import ArqRedis

from pushsvc.core.clock import now
from pushsvc.core.messages import ConfirmationMessage, ManageLinkMessage, Recipient
from pushsvc.core.models import Locale
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.core.verification import CODE_TTL, CONFIRM_TTL, MANAGE_TTL, ContactKeys, Via, confirm_token, manage_token
from pushsvc.delivery.send import Row, SendStep
from pushsvc.i18n import words
from pushsvc.jobs import SELF_SERVICE_SEND, enqueue
from pushsvc.services import Services
from pushsvc.store.self_service import purge_unconfirmed
from pushsvc.store.short_links import code_for, short_code
from pushsvc.store.subscribers import load_subscriber
from pushsvc.subscriptions.codes import Codes

log = logging.getLogger(__name__)

Kind = Literal["confirmation", "manage_link"]
# Where an SMS sends the person to type its code in.
CODE_PAGES: dict[str, str] = {"confirmation": "/verify", "manage_link": "/manage"}


async def enqueue_send(redis: ArqRedis, kind: Kind, subscriber_id: int, via: Via) -> None:
    await enqueue(redis, SELF_SERVICE_SEND, kind, subscriber_id, via)


async def _short_url(svc: Services, target: str) -> str:
    async with svc.db.read() as conn:
        code = await code_for(conn, target)
    if code is None:
        async with svc.db.write() as conn:
            code = await short_code(conn, target)
    return f"{svc.settings.public_url}/s/{code}"


def _title(kind: Kind, locale: str) -> str:
    """Words for a WeChat card's heading: these messages go by e-mail and SMS, but `title` is part
    of the kind. Their context keeps them apart from the pages' own words for the same English."""
    said = words(locale)
    if kind == "confirmation":
        return said.pgettext("message title", "Please confirm your subscription")
    return said.pgettext("message title", "Manage your subscription")


def _local(ttl: timedelta) -> datetime:
    return (now() + ttl).astimezone(LOCAL_ZONE)


async def run_self_service_send(svc: Services, kind: Kind, subscriber_id: int, via: Via, attempt: int) -> float | None:
    """Send it; returns seconds until a retry when the channel says try again later (or not yet:
    a provider's pace), else None."""
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, subscriber_id)
    address = None if sub is None or sub["status"] == "erased" else sub["email" if via == "email" else "phone"]
    if sub is None or address is None:
        log.info("self-service %s for subscriber %d: no %s any more, nothing sent", kind, subscriber_id, via)
        return None
    locale, nonce, public = sub["locale"], secrets.token_hex(8), svc.settings.public_url
    title = _title(kind, locale if locale in get_args(Locale) else DEFAULT_LOCALE)
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
    step = SendStep(svc, "self_service")  # no ledger: an arq retry of this job is the next attempt
    [result] = await step.send(via, message, [recipient], {subscriber_id: (Row(subscriber_id, attempt),)})
    await step.count()
    if result.status == "failed":
        log.warning("self-service %s for subscriber %d by %s failed: %s", kind, subscriber_id, via,
                    result.outcome.error)
    if result.retry_at is None:
        return None
    return max(0.0, (result.retry_at - now()).total_seconds())


async def run_purge_unconfirmed(svc: Services) -> int:
    """Forget subscribe requests whose confirmation link has expired unused."""
    async with svc.db.write() as conn:
        return await purge_unconfirmed(conn, now() - CONFIRM_TTL)
