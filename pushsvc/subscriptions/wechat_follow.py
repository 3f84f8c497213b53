"""What the Official Account's events do, and the signed links and scenes behind them.

- TEMPLATESENDJOBFINISH: the template message whose msgid our send got back (the ledger's
  `provider_ref`) was delivered (`success`) or not (`failed:user block`, `failed: system failed`),
  applied like any receipt: only a `sent` row moves, so a repeat or a late one changes nothing.
- unsubscribe: the follower left the account. The WeChat channel of every subscription sending
  to that openid stops, as the person's own withdrawal (consents and the audit log say so); a
  subscription whose WeChat messages go to a group robot keeps them.
- subscribe through a parametric QR code (`qrscene_<scene>`) or SCAN of one: a pending
  subscription for the openid with the poster's domains and audience groups, and a reply that
  links to the subscribe page to finish it, the openid carried in a signed token (nobody types it).

Scenes are ours: the scene string is a signed token naming a `wechat_scenes` row (department,
domains, audience groups). A scene we did not sign is some other use of the account's codes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pushsvc.channels.wechat.events import Event
from pushsvc.core.clock import now
from pushsvc.core.msgid import N_
from pushsvc.core.subscribers import Contacts, NewSubscriber
from pushsvc.core.tokens import BadToken
from pushsvc.delivery import receipts
from pushsvc.i18n import words
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store.self_service import channels_on, erase, replace_wishes, wanted_channels, withdraw
from pushsvc.store.subscribers import insert_subscribers
from pushsvc.store.wechat_follow import followers, load_scene

CHANNEL = "wechat"
SCENE_PURPOSE = "wechat-scene"
OPENID_PURPOSE = "wechat-openid"
UNFOLLOW_SOURCE = "wechat-event:unsubscribe"
OPENID_LINK_TTL = timedelta(hours=48)  # a scan's reply link, like an e-mailed confirmation link
OPENID_PAGE_TTL = timedelta(hours=2)  # the web authorisation's openid on the form being filled in
# A job-finished event can beat the worker's write of the msgid it names; the platform wants an
# answer within 5 s, so look again a few times within that.
_RECEIPT_WAITS = (0.5, 1.0, 1.5)

_FINISH = N_("Thank you for following. To finish subscribing to policy updates, open this link: %(url)s")
_ALREADY = N_("You already receive policy updates from this account. To change them, open: %(url)s")
_EXPIRED = N_("Thank you for following. This poster's code is no longer valid; to subscribe, open: %(url)s")


@dataclass(frozen=True)
class JobFinished:
    """A TEMPLATESENDJOBFINISH event as a receipt (pushsvc.store.receipts.Receipt)."""

    message_id: str
    delivered: bool
    error_code: str | None
    reported_at: datetime | None = None
    out_id: str | None = None
    phone_number: str | None = None


def job_receipt(msg_id: str, status: str) -> JobFinished:
    """`failed:user block` keeps `user-block` as its code: the ledger keeps codes without spaces."""
    if status == "success":
        return JobFinished(msg_id, True, None, now())
    reason = status.partition(":")[2] or status or "unknown"
    return JobFinished(msg_id, False, "-".join(reason.split())[:40] or "unknown", now())


async def job_finished(svc: Services, msg_id: str, status: str) -> bool:
    """Record the event; False when no message has that msgid (yet, or at all)."""
    receipt = job_receipt(msg_id, status)
    for wait in (*_RECEIPT_WAITS, None):
        if not await receipts.record(svc, CHANNEL, [receipt]):
            return True
        if wait is None:
            return False
        await asyncio.sleep(wait)
    return False


async def unfollowed(svc: Services, openid: str) -> int:
    """The follower left: their WeChat channel stops. Returns the subscriptions it stopped."""
    stopped = 0
    async with svc.db.write() as conn:
        for follower in await followers(conn, openid):
            sid = follower["id"]
            if follower["wechat_webhook"]:
                continue  # their WeChat messages go to a group's robot, which they did not leave
            if CHANNEL not in await channels_on(conn, sid) | await wanted_channels(conn, sid):
                continue
            await withdraw(conn, sid, {CHANNEL}, UNFOLLOW_SOURCE)
            await audit.record(conn, audit.person(sid), "subscriber.unsubscribe", sid, channel=CHANNEL,
                               via=UNFOLLOW_SOURCE)
            stopped += 1
    return stopped


def scene_string(svc: Services, scene_id: int) -> str:
    """The scene a QR code carries (the platform allows 64 characters; this is about 40)."""
    return svc.signer.sign(SCENE_PURPOSE, {"s": scene_id})


def _scene_id(svc: Services, scene: str) -> int | None:
    try:
        sid = svc.signer.verify(SCENE_PURPOSE, scene).get("s")
    except BadToken:
        return None
    return sid if type(sid) is int else None


def openid_token(svc: Services, openid: str, scene_id: int | None, ttl: timedelta) -> str:
    """What the subscribe form carries instead of an OpenID typed in. Raises nothing."""
    return svc.signer.sign(OPENID_PURPOSE, {"o": openid, "c": scene_id}, ttl=ttl)


def read_openid_token(svc: Services, token: str) -> tuple[str, int | None]:
    """(openid, scene id or None); raises BadToken."""
    payload = svc.signer.verify(OPENID_PURPOSE, token)
    openid, scene_id = payload.get("o"), payload.get("c")
    if not isinstance(openid, str) or not openid or not (scene_id is None or type(scene_id) is int):
        raise BadToken("invalid")
    return openid, scene_id


async def scene_choices(svc: Services, scene_id: int) -> tuple[list[str], list[str]] | None:
    """(audience groups, domains) of a scene still valid, for pre-filling the subscribe form."""
    async with svc.db.read() as conn:
        scene = await load_scene(conn, scene_id)
    if scene is None or _expired(scene):
        return None
    return list(scene["audiences"]), list(scene["domains"])


def _expired(scene: dict[str, Any]) -> bool:
    return scene["expires_at"] is not None and scene["expires_at"] < now()


async def followed_through(svc: Services, event: Event, scene: str, locale: str = "zh-CN") -> str | None:
    """A follow or scan through a QR code: the reply's text, or None for a scene not ours."""
    scene_id = _scene_id(svc, scene)
    if scene_id is None:
        return None
    said = words(locale)
    public = svc.settings.public_url
    async with svc.db.write() as conn:
        row = await load_scene(conn, scene_id)
        if row is None or _expired(row):
            return said.gettext(_EXPIRED, url=f"{public}/subscribe?lang={locale}")
        existing = await followers(conn, event.openid)
        for follower in existing:
            if follower["status"] == "active" and CHANNEL in await channels_on(conn, follower["id"]):
                return said.gettext(_ALREADY, url=f"{public}/manage?lang={locale}")
        sub = NewSubscriber(name=None, contacts=Contacts(wechat_openid=event.openid), uscc=None,
                            audiences={group: {} for group in row["audiences"]}, domains=tuple(row["domains"]),
                            channels=(CHANNEL,), locale=locale)
        source = f"wechat-event:scene:{scene_id}"
        waiting = [f["id"] for f in existing if _scene_made(f)]
        if waiting:  # a scan again (this poster or another): its choices replace the last one's
            sid = waiting[0]
            await replace_wishes(conn, sid, sub, source)
        else:
            [sid] = await insert_subscribers(conn, [sub], status="pending", source=source, department_id=None,
                                             by_person=True)
        await audit.record(conn, audit.person(sid), "subscriber.wechat_scene", sid, scene=scene_id,
                           department=row["department_id"])
    token = openid_token(svc, event.openid, scene_id, OPENID_LINK_TTL)
    return said.gettext(_FINISH, url=f"{public}/subscribe?wechat={token}&lang={locale}")


def _scene_made(follower: dict[str, Any]) -> bool:
    """A pending subscription a scan made: the person's, with no contact proven or given yet."""
    return follower["status"] == "pending" and follower["supplied_by"] == "person" and not follower["has_contact"]


async def finished_on_page(svc: Services, openid: str) -> None:
    """The subscribe form was sent with this openid: the subscription a scan made for it waits
    no longer (the form's own, with its contacts to prove, replaces it)."""
    async with svc.db.write() as conn:
        for follower in await followers(conn, openid):
            if _scene_made(follower):
                await erase(conn, follower["id"], "web:/subscribe")
                await audit.record(conn, audit.person(follower["id"]), "subscriber.erase", follower["id"],
                                   replaced_by="web:/subscribe")


async def on_event(svc: Services, event: Event) -> str | None:
    """Act on one event; the text of a passive reply to the follower, if any."""
    if event.event == "templatesendjobfinish" and event.msg_id:
        await job_finished(svc, event.msg_id, event.status)
        return None
    if event.event == "unsubscribe" and event.openid:
        await unfollowed(svc, event.openid)
        return None
    if event.scene is not None and event.openid:
        return await followed_through(svc, event, event.scene)
    return None
