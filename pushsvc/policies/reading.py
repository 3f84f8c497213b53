"""Reading: who opened a policy's page, per channel and day, without keeping anyone.

The links a message carries name their channel (`?via=email|sms|wechat|qr`): e-mail's on the
page's address, the others by a short link of their own whose target names it (core/links.py); a
short link naming none (the page's own, all that policies published before those had) counts as
`link`. A visitor is counted once a day per policy and channel:
whether they were is a Redis key under a keyed hash of the day, their address and browser, which
expires at the day's end. The database holds numbers only; no address is stored anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from pushsvc.core.clock import now
from pushsvc.core.figures import READ_CHANNELS, Reading, reading
from pushsvc.core.quiet_hours import LOCAL_ZONE, local_date
from pushsvc.redis_keys import visitor_seen
from pushsvc.services import Services
from pushsvc.store.visits import count_visitor, visitors_by_channel

log = logging.getLogger(__name__)

UNTAGGED_SHORT_LINK = "link"
VIA = tuple(c for c in READ_CHANNELS if c != UNTAGGED_SHORT_LINK)  # what a link's `via` may name
_KEY_LABEL = b"pushsvc visitor of a day"


def via_of(text: str | None, default: str | None) -> str | None:
    """The channel a link names, `default` when it names none we know."""
    return text if text in VIA else default


def visitor_digest(secret: str, day: str, address: str, user_agent: str) -> str:
    """Who a visitor is for one day only: the day is in the hash, so tomorrow they are someone else."""
    key = hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, f"{day}\x00{address}\x00{user_agent}".encode(), hashlib.sha256).hexdigest()[:32]


def _seconds_left_today(at: datetime) -> int:
    local = at.astimezone(LOCAL_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), LOCAL_ZONE)
    return max(1, int((midnight - local).total_seconds()) + 1)


async def count_visit(svc: Services, policy_id: int, via: str, address: str, user_agent: str) -> bool:
    """Count the visitor unless already counted today; True if counted. Never fails the page: with
    Redis away nobody can be told apart, so nobody is counted."""
    at = now()
    day = local_date(at)
    digest = visitor_digest(svc.settings.secret_key, day.isoformat(), address, user_agent[:512])
    try:
        first = await svc.redis.set(visitor_seen(day.isoformat(), policy_id, via, digest), b"1",
                                    ex=_seconds_left_today(at), nx=True)
    except (RedisError, OSError):
        log.warning("policy %s: a visit by %s not counted (Redis unavailable)", policy_id, via)
        return False
    if not first:
        return False
    async with svc.db.write() as conn:
        await count_visitor(conn, policy_id, via, day)
    return True


async def policy_reading(svc: Services, policy_id: int, reached: dict[str, int]) -> dict[str, Reading]:
    """Opened / reached per channel for one policy; `reached`: its messages accepted per channel."""
    async with svc.db.read() as conn:
        opened = (await visitors_by_channel(conn, [policy_id])).get(policy_id, {})
    return reading(opened, reached)
