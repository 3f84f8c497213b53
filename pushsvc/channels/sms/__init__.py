"""SMS through one or several providers' batch APIs (`providers/`: the generic gateway, Aliyun,
Tencent Cloud), chosen per batch by weight and health (`providers/failover.py`).

Outcomes: a number a provider took is `sent` with its message's ref as provider_ref, and the
provider's name on the row; an illegal number or one that refused messages is `failed` at once with
the code kept. A whole request the provider refused for its own reasons (down, throttled, out of
credit, our credentials there), or that never reached it, goes to the next provider; a number one
provider refused for now goes to the next one too; when none is left they are `retry` (the deliver
step backs off), or `failed` when every provider called the request malformed (an unapproved
template or sign name). A timeout or a connection dropped once the request was on its way is
ambiguous: the provider may have taken it, and sending it again could send up to 1,000 texts twice,
so the channel asks that provider about the request (by our out_id): taken (its verdicts, as if the
reply had come), not taken (the next provider), or, when the query cannot tell, `unknown` with
provider_ref "<request>#<number's mark>" (`pending_ref`), which a receipt naming the request and
the number, or the sweeper's later query (`resolve`), settles. Requests are paced to
PUSHSVC_SMS_REQUESTS_PER_SECOND across all workers; a request whose slot is further off than half
the job's time is not made, and its numbers are `held` until the slot (not an attempt). No request
starts after the send's deadline (the job's send budget): its numbers are `untried`.

Quotas: at most PUSHSVC_SMS_DAILY_PER_NUMBER messages a local day to one number, counted across
all workers (`DailyQuota`, under the number's keyed mark); a number beyond it, or one whose
provider says its daily limit for the number is reached (a `held` verdict), is `held` until
local midnight, spending no attempt. Numbers counted but not taken by any provider are given back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import aiohttp

from pushsvc.channels.base import Channel, Report, no_report, send_deadline
from pushsvc.channels.sms.providers.base import (
    Batch,
    NoReply,
    ReceiptIn,
    Refused,
    SmsProvider,
    Unreachable,
    Verdict,
    national_number,
    number_mark,
)
from pushsvc.channels.sms.providers.failover import Health, Route, build_routes, order, provider_named
from pushsvc.channels.sms.providers.generic import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ILLEGAL_NUMBER,
    MAX_NUMBERS,
    OK,
    QUERY_PATH,
    RATE_LIMITED,
    REFUSED_NUMBER,
    SEND_PATH,
    SERVER_ERROR,
    SIGNATURE_MAX_AGE,
    pending_ref,
    signature_valid,
    signed_headers,
)
from pushsvc.core.clock import now
from pushsvc.core.messages import HasContacts, Message, Outcome, Recipient
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.rendering import Renderer
from pushsvc.core.sms_text import SmsText, assemble, one_line
from pushsvc.core.tokens import TokenSigner
from pushsvc.ratelimit import DailyQuota, ProviderPace
from pushsvc.settings import Settings

__all__ = [
    "HEADER_NONCE", "HEADER_SIGNATURE", "HEADER_TIMESTAMP", "ILLEGAL_NUMBER", "MAX_NUMBERS", "OK", "QUERY_PATH",
    "RATE_LIMITED", "REFUSED_NUMBER", "SEND_PATH", "SERVER_ERROR", "SIGNATURE_MAX_AGE", "Rendered", "SmsChannel",
    "national_number", "pending_ref", "provider_named", "render_text", "signature_valid", "signed_headers",
]

log = logging.getLogger(__name__)

_CACHE_SIZE = 32
_ERROR_MAX = 300


@dataclass(frozen=True)
class Rendered:
    content: str  # the template's part; the provider adds the signature, link and opt-out
    sms: SmsText


def render_text(settings: Settings, renderer: Renderer, message: Message, locale: str) -> Rendered:
    """The text for one message × locale; raises RenderError."""
    content = one_line(renderer.render(message.kind, SmsChannel.name, "txt", locale, message.fields_for("sms")))
    text = assemble(settings.sms_sign_name, content, message.link_for("sms"), settings.sms_opt_out)
    return Rendered(content, SmsText.of(text))


def unknown_ref(provider: SmsProvider, out_id: str, number: str) -> str:
    """An `unknown` row's provider_ref for `number` in request `out_id` of `provider`."""
    return pending_ref(provider.mark_key, provider.unknown_request(out_id), number)


class SmsChannel(Channel):
    """`SmsChannel(settings, renderer, signer)`: the providers (PUSHSVC_SMS_PROVIDERS) and their
    settings, sign name and opt-out wording come from `settings.sms_*`; the renderer reads
    `templates/sms/<kind>.<locale>.txt`. `start()` opens one long-lived HTTP session (at most
    `sms_connections` requests in flight); `close()` releases it."""

    name: ClassVar[str] = "sms"

    def __init__(self, settings: Settings, renderer: Renderer, signer: TokenSigner) -> None:
        self._settings = settings
        self._renderer = renderer
        self._routes = build_routes(settings)
        self._health = Health(settings)
        # One batch size for all: a batch that fails over must fit the next provider.
        self._batch_size = min(r.provider.max_numbers for r in self._routes)
        self._texts: OrderedDict[tuple[int, str, str, str], Rendered] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._pace = ProviderPace(settings.redis_url, "sms", settings.sms_requests_per_second)
        self._quota = DailyQuota(settings.redis_url, "sms-number", settings.sms_daily_per_number)

    @staticmethod
    def address(contacts: HasContacts) -> str | None:
        return contacts.phone or None

    def honours_quiet_hours(self, recipient: Recipient) -> bool:
        return True

    def _text(self, message: Message, locale: str) -> Rendered:
        key = (message.key, message.kind, message.version, locale)
        rendered = self._texts.get(key)
        if rendered is None:
            rendered = self._texts[key] = render_text(self._settings, self._renderer, message, locale)
            if len(self._texts) > _CACHE_SIZE:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(key)
        return rendered

    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        sms = self._text(message, locale).sms
        return {"text": sms.text, "parts": sms.parts, "chars": sms.chars}

    def measure(self, message: Message, locale: str) -> SmsText:
        """The whole text a recipient in `locale` would get (signature, link and opt-out wording
        included) with its size in characters and parts; raises RenderError. Not cached: rules
        measure messages that are not stored yet and share no key."""
        return render_text(self._settings, self._renderer, message, locale).sms

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._settings.sms_connections),
                timeout=aiohttp.ClientTimeout(total=self._settings.sms_timeout),
            )
            await self._pace.start()
            await self._health.start()
            await self._quota.start()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            await self._pace.close()
            await self._health.close()
            await self._quota.close()

    def _ready_routes(self) -> tuple[list[Route], str | None]:
        """The providers that can send, and what the first one that cannot still needs."""
        ready = [r for r in self._routes if r.provider.missing() is None]
        missing = next((m for r in self._routes if (m := r.provider.missing())), None)
        return ready, missing

    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        session = self._session
        if session is None:
            raise RuntimeError("SmsChannel.send() called before start()")
        outcomes: list[Outcome] = []
        by_locale: dict[str, list[Recipient]] = {}
        for r in recipients:
            if self.address(r) is None:
                outcomes.append(Outcome(r.delivery_id, "failed", "no phone number"))
            else:
                by_locale.setdefault(r.locale, []).append(r)
        # Render every locale first: a template error stops the batch before anything is sent.
        texts = {locale: self._text(message, locale) for locale in by_locale}
        routes, missing = self._ready_routes()
        if not routes:
            return outcomes + [Outcome(r.delivery_id, "retry", f"{missing} is not set")
                               for group in by_locale.values() for r in group]
        until = send_deadline(self._settings) if deadline is None else deadline
        # The connector's limit, kept here too so that the deadline is checked when a request's
        # turn comes rather than when it starts waiting for a connection.
        turns = asyncio.Semaphore(self._settings.sms_connections)

        async def request(content: str, group: list[Recipient]) -> list[Outcome]:
            async with turns:
                if asyncio.get_running_loop().time() >= until:
                    result = [Outcome(r.delivery_id, "untried", "the job's send budget ran out") for r in group]
                else:
                    result = await self._request(session, routes, content, message.link_for("sms"), group, until)
            for outcome in result:
                report(outcome)
            return result

        requests = [
            request(texts[locale].content, group[i : i + self._batch_size])
            for locale, group in by_locale.items()
            for i in range(0, len(group), self._batch_size)
        ]
        for result in await asyncio.gather(*requests):
            outcomes += result
        return outcomes

    async def _request(self, session: aiohttp.ClientSession, routes: list[Route], content: str, short_url: str,
                       recipients: list[Recipient], deadline: float) -> list[Outcome]:
        """One batch of one text, through as many providers as it takes; never raises."""
        later = await self._pace.turn(deadline - asyncio.get_running_loop().time())
        if later is not None:
            return [Outcome(r.delivery_id, "held", "SMS gateway rate limit reached", not_before=later) for r in recipients]
        numbers = [national_number(r.phone or "") for r in recipients]
        unique = list(dict.fromkeys(numbers))  # a number is sent once a batch, whoever shares it
        within, reset = await self._quota.take([self._quota_key(n) for n in unique])
        said: dict[str, tuple[Any, ...]] = {
            n: ("held", f"the number's daily SMS quota ({self._quota.limit}) is spent", None, reset)
            for n, ok in zip(unique, within) if not ok}
        ready = [n for n in unique if n not in said]
        if ready:
            healthy = await self._health.healthy([r.provider.name for r in routes])
            said |= await self._via(session, order(routes, healthy), ready, content, short_url, deadline)
            said |= await self._settle_quota(ready, said)
        return [Outcome(r.delivery_id, *said.get(n, ("retry", "no provider answered for this number")))
                for r, n in zip(recipients, numbers)]

    def _quota_key(self, number: str) -> str:
        return number_mark(self._settings.secret_key, number)

    async def _settle_quota(self, numbers: list[str], said: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        """After a request: numbers no provider took give their message back to the quota; numbers a
        provider held (its daily limit for them reached) spend ours too, and wait until it resets.
        Returns the held numbers' fields with that time."""
        status = {n: said.get(n, ("retry",))[0] for n in numbers}
        await self._quota.give_back([self._quota_key(n) for n in numbers if status[n] not in ("sent", "unknown", "held")])
        held = [n for n in numbers if status[n] == "held"]
        if not held:
            return {}
        reset = await self._quota.spend([self._quota_key(n) for n in held])
        return {n: ("held", said[n][1], None, reset, said[n][4]) for n in held}

    async def _via(self, session: aiohttp.ClientSession, providers: Sequence[SmsProvider], numbers: list[str],
                   content: str, short_url: str, deadline: float) -> dict[str, tuple[Any, ...]]:
        """Number -> the Outcome's fields after delivery_id (status, error, provider_ref, not_before,
        provider): the first provider takes what it can, the next ones what it refused for now."""
        said: dict[str, tuple[Any, ...]] = {}
        left, why, permanent = list(numbers), "no SMS provider is configured", True
        for i, provider in enumerate(providers):
            if not left:
                break
            if asyncio.get_running_loop().time() >= deadline:
                return said | {n: ("untried", "the job's send budget ran out") for n in left}
            batch = Batch(secrets.token_hex(12), left, content, short_url, self._settings.sms_opt_out)
            start = asyncio.get_running_loop().time()
            try:
                verdicts = await provider.send_batch(session, batch)
            except Refused as exc:
                await self._health.record(provider.name, len(left), 0, exc.failover,
                                          asyncio.get_running_loop().time() - start)
                if exc.per_number:  # one number's fault: each alone, the rest of the list after
                    for n in left:
                        said |= await self._via(session, providers[i:], [n], content, short_url, deadline)
                    return said
                if not exc.failover:
                    return said | {n: ("failed", str(exc), None, None, provider.name) for n in left}
                log.warning("SMS provider %s refused a request for %d numbers: %s", provider.name, len(left), exc)
                why, permanent = str(exc), permanent and exc.permanent
                continue
            except Unreachable as exc:
                await self._health.record(provider.name, len(left), 0, True, asyncio.get_running_loop().time() - start)
                why, permanent = f"{provider.name} unreachable: {exc}", False
                continue
            except NoReply as exc:
                await self._health.record(provider.name, len(left), 0, True, asyncio.get_running_loop().time() - start)
                answer = await provider.query(session, batch.out_id, left, now().astimezone(LOCAL_ZONE).date())
                if answer is None:
                    log.warning("SMS request %s to %s for %d numbers: no reply and no answer to the query (%s): "
                                "unknown", batch.out_id, provider.name, len(left), exc)
                    reason = f"no reply, acceptance unknown: {exc}"[:_ERROR_MAX]
                    return said | {n: ("unknown", reason, unknown_ref(provider, batch.out_id, n), None, provider.name)
                                   for n in left}
                verdicts = answer  # {}: it took none, and the next provider may
                why, permanent = f"{provider.name} did not take the request: {exc}", False
            else:
                taken = sum(v.status == "sent" for v in verdicts.values())
                await self._health.record(provider.name, len(left), taken, False,
                                          asyncio.get_running_loop().time() - start)
            again: list[str] = []
            for n in left:
                v = verdicts.get(n)
                if v is None or v.status == "retry":
                    again.append(n)
                    if v is not None:
                        why, permanent = v.error or "retry", False
                elif v.status == "unknown":
                    said[n] = ("unknown", "no reply, acceptance unknown", unknown_ref(provider, batch.out_id, n),
                               None, provider.name)
                else:
                    said[n] = _fields(v, provider.name)
            left = again
        status = "failed" if permanent and providers else "retry"
        return said | {n: (status, why[:_ERROR_MAX]) for n in left}

    def reporting_providers(self) -> list[str]:
        """The providers in use that can tell of a message's fate after it was sent (Aliyun, Tencent)."""
        return [r.provider.name for r in self._routes if r.provider.can_report]

    async def reports(self, provider: str, asked: list[tuple[str, str, date]]) -> list[ReceiptIn] | None:
        """What `provider` can tell of messages whose receipt never came (`SmsProvider.reports`)."""
        session = self._session
        if session is None:
            raise RuntimeError("SmsChannel.reports() called before start()")
        named = provider_named(self._settings, provider)
        return None if named.missing() is not None else await named.reports(session, asked)

    async def resolve(self, request: str, numbers: Sequence[str] = ()) -> dict[str, Outcome] | None:
        """What became of request `request` (an `unknown` ref's part before the separator): an
        outcome per row ref its provider reports. `numbers`: the national numbers of its rows,
        which Aliyun and Tencent need to look a request up (the generic gateway answers by out_id
        alone)."""
        session = self._session
        if session is None:
            raise RuntimeError("SmsChannel.resolve() called before start()")
        name, _, out_id = request.rpartition(":")
        provider = provider_named(self._settings, name or "generic")
        if provider.missing() is not None:
            return None
        answer = await provider.query(session, out_id, list(numbers), now().astimezone(LOCAL_ZONE).date())
        if answer is None:
            return None
        outcomes: dict[str, Outcome] = {}
        for n, v in answer.items():
            ref = unknown_ref(provider, out_id, n)
            outcomes[ref] = (Outcome(0, "unknown", "no answer yet", ref, None, provider.name) if v.status == "unknown"
                             else Outcome(0, *_fields(v, provider.name)))
        return outcomes

def _fields(v: Verdict, provider: str) -> tuple[Any, ...]:
    return (v.status, v.error, v.ref, None, provider)
