"""SMS through a gateway's HTTP batch API, modelled on the mainland providers' send API.

The wire protocol (the stand-in in `pushsvc.dev.stubs.sms_gateway` speaks the gateway's side):

    POST {PUSHSVC_SMS_URL}/v1/sms/send-batch
    X-Sms-Timestamp: <unix seconds>   X-Sms-Nonce: <random hex>
    X-Sms-Signature: hex(HMAC-SHA256(PUSHSVC_SMS_SECRET, "<timestamp>\\n<nonce>\\n" + body))
    {"sign_name": "广州政务公开", "template_code": "PUSHSVC_POLICY",
     "template_param": {"content": "...", "url": "https://…/s/AbCdEfG", "opt_out": "拒收请回复R"},
     "phone_numbers": ["13800138000", ...],            (1 to 1,000 numbers, one text for all)
     "out_id": "<our id of this request>"}

    GET {PUSHSVC_SMS_URL}/v1/sms/query?out_id=<id>    (signed the same way, over the query string)
    200 {"code": "OK", "found": true, "results": [...as the send's reply...]} | {"code": "OK", "found": false}

    200 {"code": "OK", "request_id": "...",
         "results": [{"phone_number": "13800138000", "code": "OK", "message_id": "..."},
                     {"phone_number": "...", "code": "isv.MOBILE_NUMBER_ILLEGAL", "message": "..."}]}
    429 / 5xx {"code": "isv.BUSINESS_LIMIT_CONTROL" | "isp.SYSTEM_ERROR", "message": "..."}

The gateway's callbacks to us (receipts, replies) are signed the same way with the same secret.

Outcomes: a number's `OK` is `sent` with its message id as provider_ref; an illegal number or one
that refused messages is `failed` at once with the code kept; any other per-number code, a
rate-limit or server error, or a connection that could not be opened is `retry` (the deliver step
backs off). A timeout or a connection dropped once the request was on its way is ambiguous: the
gateway may have taken it. Sending it again could send up to 1,000 texts twice, so the channel asks
the gateway by the request's out_id instead: taken (its per-number results, as if the reply had
come), not taken (`retry`), or, when the query fails too, `unknown` with provider_ref
"<out_id>#<number's mark>" (`pending_ref`), which a receipt naming the out_id and the number, or
the sweeper's later query (`resolve`), settles. A request the gateway rejects as malformed (other 4xx: an unapproved template or sign name)
fails its numbers, since sending it again cannot succeed. Requests are paced to
PUSHSVC_SMS_REQUESTS_PER_SECOND across all workers; a request whose slot is further off than
half the job's time is not made, and its numbers are `held` until the slot (not an attempt). No
request starts after the send's deadline (the job's send budget): its numbers are `untried`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from pushsvc.channels.base import Channel, Report, no_report, send_deadline
from pushsvc.core.messages import UNKNOWN_REF_SEPARATOR, HasContacts, Message, Outcome, Recipient
from pushsvc.core.rendering import Renderer
from pushsvc.core.sms_text import SmsText, assemble, one_line
from pushsvc.core.tokens import TokenSigner
from pushsvc.ratelimit import ProviderPace
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

SEND_PATH = "/v1/sms/send-batch"
QUERY_PATH = "/v1/sms/query"
MAX_NUMBERS = 1000  # per request, the providers' limit
SIGNATURE_MAX_AGE = 300  # seconds a signed call stays acceptable (clock skew and replays)
HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE = "X-Sms-Timestamp", "X-Sms-Nonce", "X-Sms-Signature"

OK = "OK"
RATE_LIMITED = "isv.BUSINESS_LIMIT_CONTROL"
SERVER_ERROR = "isp.SYSTEM_ERROR"
ILLEGAL_NUMBER = "isv.MOBILE_NUMBER_ILLEGAL"
REFUSED_NUMBER = "isv.MOBILE_IN_BLACKLIST"
# Per-number codes that no retry can change.
PERMANENT_CODES = frozenset({ILLEGAL_NUMBER, REFUSED_NUMBER})

_CACHE_SIZE = 32
_ERROR_MAX = 300


# -- signing (both directions) ---------------------------------------------------------------------


def _mac(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}\n{nonce}\n".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    """The headers that sign `body`: a timestamp, a nonce and the HMAC over both and the body."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    return {
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: _mac(secret, timestamp, nonce, body),
        "Content-Type": "application/json",
    }


def signature_valid(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> bool:
    """True when the call is signed with `secret` and the timestamp is recent. An empty secret
    accepts nothing, nor does a header beyond ASCII: compare_digest raises on non-ASCII text, and
    str.isdigit() accepts digits int() refuses ("²")."""
    timestamp, nonce = headers.get(HEADER_TIMESTAMP, ""), headers.get(HEADER_NONCE, "")
    given = headers.get(HEADER_SIGNATURE, "")
    if not (secret and timestamp.isascii() and timestamp.isdigit() and nonce.isascii() and nonce and given.isascii()
            and given):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    return hmac.compare_digest(given, _mac(secret, timestamp, nonce, body))


def national_number(phone: str) -> str:
    """'+8613800138000' → '13800138000': the gateway takes mainland numbers without the prefix."""
    return phone[3:] if phone.startswith("+86") else phone


def pending_ref(secret: str, out_id: str, number: str) -> str:
    """An `unknown` row's provider_ref: the request's out_id and a keyed mark of the (national)
    number, so receipts and queries find the row without the ledger holding the number."""
    mark = hmac.new(secret.encode(), number.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{out_id}{UNKNOWN_REF_SEPARATOR}{mark}"


# -- the text --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    content: str  # the template's part; the gateway adds the signature, link and opt-out
    sms: SmsText


def render_text(settings: Settings, renderer: Renderer, message: Message, locale: str) -> Rendered:
    """The text for one message × locale; raises RenderError."""
    content = one_line(renderer.render(message.kind, SmsChannel.name, "txt", locale, dict(vars(message))))
    text = assemble(settings.sms_sign_name, content, message.short_url, settings.sms_opt_out)
    return Rendered(content, SmsText.of(text))


# -- the channel -----------------------------------------------------------------------------------


class SmsChannel(Channel):
    """`SmsChannel(settings, renderer, signer)`: the gateway's URL, secret, sign name, template code
    and opt-out wording come from `settings.sms_*`; the renderer reads
    `templates/sms/<kind>.<locale>.txt`. `start()` opens one long-lived HTTP session (at most
    `sms_connections` requests in flight); `close()` releases it."""

    name: ClassVar[str] = "sms"

    def __init__(self, settings: Settings, renderer: Renderer, signer: TokenSigner) -> None:
        self._settings = settings
        self._renderer = renderer
        self._url = settings.sms_url.rstrip("/") + SEND_PATH
        self._query_url = settings.sms_url.rstrip("/") + QUERY_PATH
        self._texts: OrderedDict[tuple[int, str, str, str], Rendered] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._pace = ProviderPace(settings.redis_url, "sms", settings.sms_requests_per_second)

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

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            await self._pace.close()

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
        if not self._settings.sms_secret:
            return outcomes + [Outcome(r.delivery_id, "retry", "PUSHSVC_SMS_SECRET is not set")
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
                    result = await self._request(session, content, message.short_url, group, until)
            for outcome in result:
                report(outcome)
            return result

        requests = [
            request(texts[locale].content, group[i : i + MAX_NUMBERS])
            for locale, group in by_locale.items()
            for i in range(0, len(group), MAX_NUMBERS)
        ]
        for result in await asyncio.gather(*requests):
            outcomes += result
        return outcomes

    async def _request(
        self, session: aiohttp.ClientSession, content: str, short_url: str, recipients: list[Recipient],
        deadline: float,
    ) -> list[Outcome]:
        """One gateway request for up to 1,000 recipients of one text; never raises."""
        later = await self._pace.turn(deadline - asyncio.get_running_loop().time())
        if later is not None:
            return [Outcome(r.delivery_id, "held", "SMS gateway rate limit reached", not_before=later) for r in recipients]
        s = self._settings
        numbers = [national_number(r.phone or "") for r in recipients]
        out_id = secrets.token_hex(12)
        body = json.dumps(
            {
                "sign_name": s.sms_sign_name,
                "template_code": s.sms_template_code,
                "template_param": {"content": content, "url": short_url, "opt_out": s.sms_opt_out},
                "phone_numbers": numbers,
                "out_id": out_id,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        try:
            async with session.post(self._url, data=body, headers=signed_headers(s.sms_secret, body)) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:  # never reached the gateway: safe to send again
            reason = f"gateway unreachable: {type(exc).__name__} {exc}".strip()
            return [Outcome(r.delivery_id, "retry", reason[:_ERROR_MAX]) for r in recipients]
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return await self._after_no_reply(out_id, recipients, numbers, f"{type(exc).__name__} {exc}".strip())
        try:
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except ValueError:
            reply = {"code": f"HTTP {status}", "message": "unreadable reply"}
        if status != 200 or not isinstance(reply.get("results"), list):
            return self._whole_request_failed(status, reply, recipients)
        return _per_number(reply["results"], recipients, numbers)

    async def query(self, out_id: str) -> list[Any] | None:
        """The gateway's per-number results of request `out_id`; [] when it took no such request;
        None when it cannot tell (unreachable, an error, a timeout). Never raises."""
        session = self._session
        if session is None:
            raise RuntimeError("SmsChannel.query() called before start()")
        query = f"out_id={out_id}"
        try:
            async with session.get(f"{self._query_url}?{query}",
                                   headers=signed_headers(self._settings.sms_secret, query.encode())) as resp:
                status, reply = resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("SMS gateway query for request %s failed: %s", out_id, type(exc).__name__)
            return None
        if status != 200 or not isinstance(reply, dict) or reply.get("code") != OK:
            log.warning("SMS gateway query for request %s refused: HTTP %d", out_id, status)
            return None
        if not reply.get("found"):
            return []
        results = reply.get("results")
        return results if isinstance(results, list) and results else None

    async def _after_no_reply(self, out_id: str, recipients: list[Recipient], numbers: list[str],
                              why: str) -> list[Outcome]:
        """The request went out and no reply came: ask the gateway rather than send it again."""
        results = await self.query(out_id)
        if results is None:
            log.warning("SMS request %s for %d numbers: no reply and no answer to the query (%s): unknown",
                        out_id, len(recipients), why)
            reason = f"no reply, acceptance unknown: {why}"[:_ERROR_MAX]
            return [Outcome(r.delivery_id, "unknown", reason, provider_ref=pending_ref(self._settings.sms_secret,
                                                                                        out_id, n))
                    for r, n in zip(recipients, numbers)]
        if not results:
            reason = f"gateway did not take the request: {why}"[:_ERROR_MAX]
            return [Outcome(r.delivery_id, "retry", reason) for r in recipients]
        return _per_number(results, recipients, numbers)

    async def resolve(self, request: str) -> dict[str, Outcome] | None:
        results = await self.query(request)
        if results is None:
            return None
        secret = self._settings.sms_secret
        numbers = [str(item.get("phone_number")) for item in results if isinstance(item, dict)]
        placeholders = [Recipient(0, 0, None, "", phone=n) for n in numbers]
        return {pending_ref(secret, request, n): o for n, o in zip(numbers, _per_number(results, placeholders, numbers))}

    @staticmethod
    def _whole_request_failed(status: int, reply: dict[str, Any], recipients: list[Recipient]) -> list[Outcome]:
        reason = f"{reply.get('code', f'HTTP {status}')}: {reply.get('message', '')}".strip(": ")[:_ERROR_MAX]
        # Rate limits, server errors and refused credentials (our configuration, not the
        # recipients') may pass; a request rejected as malformed will not.
        temporary = status in (401, 403, 408, 429) or status >= 500 or status == 200
        log.warning("SMS gateway refused a request for %d numbers: HTTP %d %s", len(recipients), status, reason)
        return [Outcome(r.delivery_id, "retry" if temporary else "failed", reason) for r in recipients]


def _per_number(results: list[Any], recipients: list[Recipient], numbers: list[str]) -> list[Outcome]:
    by_number = {item.get("phone_number"): item for item in results if isinstance(item, dict)}
    outcomes: list[Outcome] = []
    for r, number in zip(recipients, numbers):
        item = by_number.get(number)
        if item is None:
            outcomes.append(Outcome(r.delivery_id, "retry", "the gateway's reply left this number out"))
            continue
        code = str(item.get("code", ""))
        if code == OK and item.get("message_id"):
            outcomes.append(Outcome(r.delivery_id, "sent", provider_ref=str(item["message_id"])[:100]))
            continue
        reason = f"{code}: {item.get('message', '')}".strip(": ")[:_ERROR_MAX]
        outcomes.append(Outcome(r.delivery_id, "failed" if code in PERMANENT_CODES else "retry", reason))
    return outcomes
