"""The WeChat channel: WeCom group robots for organisations, Official Account template messages
for people.

Which contact a message goes to: a subscriber has one ledger row for `wechat` and gets one
message. When it has both a robot webhook and an openid, the webhook wins: the group chat is the
organisation's own channel, it takes the whole text (a template message holds 20 characters a
field) and it is not held for quiet hours. Only a subscriber without a webhook gets a template
message, and only those messages wait out quiet hours.

Time: a deliver job must end well within PUSHSVC_JOB_TIMEOUT_SECONDS. Until the send's deadline
(the job's send budget) the channel starts calls and waits for robot slots; a slot further off
than that is not waited for: the message is `held` until the slot opens (held rows are claimed
again when due and are never given up on; a `retry` would back off blindly and might give up on
a message that only had to wait its turn). A recipient whose turn comes after the deadline is
`untried` (no attempt spent); a call still out at the send step's cutoff is cut off there.

Outcomes, never an exception for one recipient:
- robot: errcode 0 `sent`; 93000 (invalid key) `failed`; 45009 and other codes `retry`; a webhook
  URL no longer on the allow-list (checked again at send time) `failed`.
- template: 0 `sent` (provider_ref = msgid); 40001/40014/42001 refresh the shared token and send
  once more; 43004 (not following), 43101 (refused), 40003 (bad openid) `failed`; others `retry`.
  Calls are paced to PUSHSVC_WECHAT_TEMPLATE_PER_SECOND across all workers; no slot in the first
  half of the job: `held` until the next one. At most PUSHSVC_WECHAT_TEMPLATE_DAILY a local day per
  account, counted across all workers: beyond it, or on 45009 (the platform's own daily quota
  spent, which spends ours too), `held` until local midnight, no attempt spent.
- no answer (connection, timeout, HTTP error status): `retry`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.channels.base import Channel, Report, no_report, send_deadline
from pushsvc.channels.wechat import http, robot, template
from pushsvc.channels.wechat.token import AccessTokens, TokenUnavailable, fetch_token
from pushsvc.core.clock import now
from pushsvc.core.messages import HasContacts, Message, Outcome, Recipient
from pushsvc.core.rendering import Renderer
from pushsvc.core.subscribers import check_webhook_url
from pushsvc.core.tokens import TokenSigner, unsubscribe_token
from pushsvc.ratelimit import DailyQuota, ProviderPace, Rate, RateLimiter
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

_CACHE_SIZE = 32  # policy × version × locale renderings kept
# Our slot and the platform's count are a network trip apart, and trips vary: spacing slots a
# little wider than the window keeps a slow request and a fast one from landing in one window.
_ARRIVAL_GUARD_SECONDS = 0.5
OPENID_PLACEHOLDER = "{openid}"
UNSUBSCRIBE_PLACEHOLDER = "{unsubscribe_url}"  # previews show where each subscriber's own link goes


@dataclass(frozen=True)
class _Rendering:
    """One policy version in one locale: the robot body as sent, the template body but `touser`."""

    robot: dict[str, Any]
    template: dict[str, Any]
    markdown: tuple[str, str] | None  # the robot markdown's content and cut ending, for a subscriber's own link


@dataclass
class _Batch:
    """What the lanes of one send() share."""

    deadline: float  # loop.time(): no call starts, and no slot is waited for, after it
    token_problem: list[str] = field(default_factory=list)  # set once: the rest retry at once


class WechatChannel(Channel):
    """`WechatChannel(settings, renderer, signer)`: endpoints, credentials and limits from
    `settings.wechat_*`, the webhook allow-list from `settings.webhook_origins`; templates
    `templates/wechat/<kind>.<locale>.{md,more.md,news.txt,fields.txt}`. `start()` opens the HTTP
    session and the Redis connection (the robot pace and the access token are shared through it)."""

    name: ClassVar[str] = "wechat"

    def __init__(self, settings: Settings, renderer: Renderer, signer: TokenSigner) -> None:
        self._settings = settings
        self._renderer = renderer
        self._signer = signer
        self._api = settings.wechat_api_url.rstrip("/")
        self._rate = Rate(
            settings.wechat_robot_max_messages, settings.wechat_robot_window_seconds + _ARRIVAL_GUARD_SECONDS
        )
        self._renderings: OrderedDict[tuple[int, str, str], _Rendering] = OrderedDict()
        self._http: aiohttp.ClientSession | None = None
        self._redis: Redis | None = None
        self._limiter: RateLimiter | None = None
        self._tokens: AccessTokens | None = None
        self._template_pace = ProviderPace(settings.redis_url, "wechat-template", settings.wechat_template_per_second)
        self._template_quota = DailyQuota(settings.redis_url, "wechat-template", settings.wechat_template_daily)

    @staticmethod
    def address(contacts: HasContacts) -> str | None:
        return contacts.wechat_webhook or contacts.wechat_openid or None

    def honours_quiet_hours(self, recipient: Recipient) -> bool:
        return not recipient.wechat_webhook and bool(recipient.wechat_openid)

    async def start(self) -> None:
        if self._http is not None:
            return
        s = self._settings
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.wechat_timeout),
            connector=aiohttp.TCPConnector(limit=s.wechat_connections),
        )
        self._redis = Redis.from_url(s.redis_url)
        self._limiter = RateLimiter(self._redis, redis_keys.WECHAT_ROBOT_LIMITS)
        self._tokens = AccessTokens(self._redis, s.wechat_appid, self._fetch_token, s.wechat_timeout)
        await self._template_pace.start()
        await self._template_quota.start()

    async def close(self) -> None:
        session, self._http = self._http, None
        redis, self._redis = self._redis, None
        if session is not None:
            await session.close()
        if redis is not None:
            await redis.aclose()
        await self._template_pace.close()
        await self._template_quota.close()

    # -- composing -----------------------------------------------------------------------------

    def _rendering(self, message: Message, locale: str) -> _Rendering:
        key = (message.key, message.version, locale)
        rendering = self._renderings.get(key)
        if rendering is not None:
            self._renderings.move_to_end(key)
            return rendering
        rendering = self._renderings[key] = self._render(message, locale)
        if len(self._renderings) > _CACHE_SIZE:
            self._renderings.popitem(last=False)
        return rendering

    def _render(self, message: Message, locale: str) -> _Rendering:
        s = self._settings
        link = message.link_for("wechat")
        context = message.fields_for("wechat") | {"qr_url": message.qr_url}

        def part(name: str, values: dict[str, Any] = context) -> str:
            return self._renderer.render(message.kind, self.name, name, locale, values).strip()

        markdown = None
        if s.wechat_robot_message == "news":
            body = robot.news_body(message.title, part("news.txt"), link, context["qr_url"])
        else:
            markdown = (part("md"), "\n" + part("more.md"))
            body = robot.markdown_body(*markdown)
        # One line per field: supplied text is made single-line so it can't start a field of its own.
        single_line = {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in context.items()}
        data = template.parse_fields(part("fields.txt", single_line))
        return _Rendering(body, template.template_body(s.wechat_template_id, link, data), markdown)

    def _robot_body(self, message: Message, locale: str, rendering: _Rendering, subscriber_id: int | None) -> dict[str, Any]:
        """A subscriber's markdown ends with their own unsubscribe link (a news card has room for one
        link only, the page's, and a case's messages go to no subscriber). `subscriber_id` None:
        a preview, with a placeholder for the link."""
        if rendering.markdown is None or not message.to_subscriber:
            return rendering.robot
        unsubscribe_url = UNSUBSCRIBE_PLACEHOLDER
        if subscriber_id is not None:
            unsubscribe_url = f"{self._settings.public_url}/u/{unsubscribe_token(self._signer, subscriber_id, self.name)}"
        footer = "\n\n" + self._renderer.render("_unsubscribe", self.name, "md", locale,
                                                  {"unsubscribe_url": unsubscribe_url}).strip()
        return robot.markdown_body(*rendering.markdown, footer)

    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        rendering = self._rendering(message, locale)
        # Both bodies: which one a subscriber gets depends on its contacts (see the module doc).
        return {"webhook": self._robot_body(message, locale, rendering, None),
                "template": {"touser": OPENID_PLACEHOLDER, **rendering.template}}

    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        if self._http is None:
            raise RuntimeError("WechatChannel.send() called before start()")
        # Render every locale first: a template error stops the batch before anything is sent.
        for locale in {r.locale for r in recipients}:
            self._rendering(message, locale)
        batch = _Batch(send_deadline(self._settings) if deadline is None else deadline)
        outcomes: list[Outcome] = []
        pending = iter(recipients)

        async def lane() -> None:
            for recipient in pending:  # lanes share one iterator: each takes the next recipient
                outcome = await self._deliver(message, recipient, batch)
                report(outcome)
                outcomes.append(outcome)

        await asyncio.gather(*(lane() for _ in range(min(len(recipients), self._settings.wechat_connections))))
        return outcomes

    async def _deliver(self, message: Message, recipient: Recipient, batch: _Batch) -> Outcome:
        did = recipient.delivery_id
        if asyncio.get_running_loop().time() >= batch.deadline:
            return Outcome(did, "untried", "the job's send budget ran out")
        rendering = self._rendering(message, recipient.locale)
        try:
            if recipient.wechat_webhook:
                body = self._robot_body(message, recipient.locale, rendering, recipient.subscriber_id)
                return await self._to_robot(did, recipient.wechat_webhook, body, batch)
            if recipient.wechat_openid:
                return await self._to_openid(did, recipient.wechat_openid, rendering, batch)
            return Outcome(did, "failed", "no WeChat contact")
        except http.Unavailable as exc:
            return Outcome(did, "retry", str(exc))
        except RedisError as exc:  # the pace and the token live there: wait for it to come back
            return Outcome(did, "retry", f"Redis unavailable ({type(exc).__name__})")
        except Exception as exc:  # one recipient must never sink the batch
            log.exception("unexpected error sending a WeChat message")
            return Outcome(did, "retry", f"{type(exc).__name__}: {exc}"[: http.ERROR_MAX])

    async def _to_robot(self, did: int, url: str, body: dict[str, Any], batch: _Batch) -> Outcome:
        assert self._http is not None and self._limiter is not None
        try:  # the allow-list may have changed since the subscriber was stored
            check_webhook_url(url, self._settings.webhook_origins)
        except ValueError as exc:
            return Outcome(did, "failed", f"webhook URL refused: {exc}")
        key = robot.robot_key(url)
        if key is None:
            return Outcome(did, "failed", "webhook URL has no robot key")
        # The key is a secret: Redis sees only its digest.
        pace_key = hashlib.sha256(key.encode()).hexdigest()[:32]
        max_wait = batch.deadline - asyncio.get_running_loop().time()
        slot = await self._limiter.acquire(pace_key, self._rate, max_wait=max_wait)
        if not slot.granted:
            return Outcome(
                did, "held", f"robot key at its limit; next slot in {slot.wait:.0f} s",
                not_before=now() + timedelta(seconds=slot.wait),
            )
        reply = await http.call(self._http, "POST", url, body=body)
        return robot.robot_outcome(did, reply)

    async def _to_openid(self, did: int, openid: str, rendering: _Rendering, batch: _Batch) -> Outcome:
        assert self._http is not None and self._tokens is not None
        s = self._settings
        if not (s.wechat_appid and s.wechat_secret and s.wechat_template_id):
            return Outcome(did, "failed", "official account not configured (PUSHSVC_WECHAT_APPID, _SECRET, _TEMPLATE_ID)")
        if batch.token_problem:
            return Outcome(did, "retry", batch.token_problem[0])
        (within,), reset = await self._template_quota.take([s.wechat_appid])
        if not within:
            return Outcome(did, "held", f"daily template message quota ({s.wechat_template_daily}) reached",
                           not_before=reset)
        try:
            outcome, quota_spent = await self._template_message(did, openid, rendering, batch)
        except Exception:
            await self._template_quota.give_back([s.wechat_appid])
            raise
        if quota_spent:  # the platform's count is the one that holds: ours is spent too
            reset = await self._template_quota.spend([s.wechat_appid])
            return Outcome(did, "held", outcome.error, not_before=reset)
        if outcome.status != "sent":  # the quota counts the messages the platform took
            await self._template_quota.give_back([s.wechat_appid])
        return outcome

    async def _template_message(self, did: int, openid: str, rendering: _Rendering,
                                batch: _Batch) -> tuple[Outcome, bool]:
        """The outcome of one template message, and whether the platform said the day's quota is spent."""
        assert self._tokens is not None
        body = {"touser": openid, **rendering.template}
        url = f"{self._api}/cgi-bin/message/template/send"
        try:
            token = await self._tokens.get()
            reply = await self._template_call(url, token, body, batch)
            if isinstance(reply, http.Reply) and reply.errcode in template.TOKEN_ERRCODES:
                token = await self._tokens.refresh(stale=token)
                reply = await self._template_call(url, token, body, batch)
        except TokenUnavailable as exc:
            batch.token_problem.append(f"no access token: {exc}"[: http.ERROR_MAX])
            return Outcome(did, "retry", batch.token_problem[0]), False
        if not isinstance(reply, http.Reply):
            return Outcome(did, "held", "template message rate limit reached", not_before=reply), False
        if reply.errcode == template.QUOTA_ERRCODE:
            return Outcome(did, "held", reply.reason), True
        return template.template_outcome(did, reply), False

    async def _template_call(self, url: str, token: str, body: dict[str, Any], batch: _Batch) -> http.Reply | datetime:
        """The platform's reply, or, when the shared pace has no slot in time, when to try again."""
        assert self._http is not None
        later = await self._template_pace.turn(batch.deadline - asyncio.get_running_loop().time())
        if later is not None:
            return later
        return await http.call(self._http, "POST", url, params={"access_token": token}, body=body)

    async def _fetch_token(self) -> tuple[str, int]:
        assert self._http is not None
        s = self._settings
        return await fetch_token(self._http, self._api, s.wechat_appid, s.wechat_secret)
