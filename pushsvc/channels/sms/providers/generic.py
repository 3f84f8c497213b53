"""The generic gateway protocol pushsvc spoke first, unchanged on the wire (`pushsvc stub sms
--provider generic` speaks the gateway's side):

    POST {PUSHSVC_SMS_URL}/v1/sms/send-batch
    X-Sms-Timestamp: <unix seconds>   X-Sms-Nonce: <random hex>
    X-Sms-Signature: hex(HMAC-SHA256(PUSHSVC_SMS_SECRET, "<timestamp>\\n<nonce>\\n" + body))
    {"sign_name": "广州政务公开", "template_code": "PUSHSVC_POLICY",
     "template_param": {"content": "...", "url": "https://…/s/AbCdEfG", "opt_out": "拒收请回复R"},
     "phone_numbers": ["13800138000", ...],            (1 to 1,000 numbers, one text for all)
     "out_id": "<our id of this request>"}
    200 {"code": "OK", "request_id": "...",
         "results": [{"phone_number": "13800138000", "code": "OK", "message_id": "..."},
                     {"phone_number": "...", "code": "isv.MOBILE_NUMBER_ILLEGAL", "message": "..."}]}
    429 / 5xx {"code": "isv.BUSINESS_LIMIT_CONTROL" | "isp.SYSTEM_ERROR", "message": "..."}

    GET {PUSHSVC_SMS_URL}/v1/sms/query?out_id=<id>    (signed the same way, over the query string)
    200 {"code": "OK", "found": true, "results": [...as the send's reply...]} | {"code": "OK", "found": false}

The gateway's callbacks to us (receipts to /v1/receipts/sms, replies to /v1/inbound/sms,
`pushsvc.api.gateways`) are signed the same way with the same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import date
from typing import Any

import aiohttp

from pushsvc.channels.sms.providers.base import Batch, NoReply, Refused, SmsProvider, Unreachable, Verdict, reason
from pushsvc.core.messages import UNKNOWN_REF_SEPARATOR

log = logging.getLogger(__name__)

SEND_PATH = "/v1/sms/send-batch"
QUERY_PATH = "/v1/sms/query"
MAX_NUMBERS = 1000  # per request
SIGNATURE_MAX_AGE = 300  # seconds a signed call stays acceptable (clock skew and replays)
HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE = "X-Sms-Timestamp", "X-Sms-Nonce", "X-Sms-Signature"

OK = "OK"
RATE_LIMITED = "isv.BUSINESS_LIMIT_CONTROL"
SERVER_ERROR = "isp.SYSTEM_ERROR"
ILLEGAL_NUMBER = "isv.MOBILE_NUMBER_ILLEGAL"
REFUSED_NUMBER = "isv.MOBILE_IN_BLACKLIST"
# Per-number codes that no retry can change.
PERMANENT_CODES = frozenset({ILLEGAL_NUMBER, REFUSED_NUMBER})


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


def pending_ref(secret: str, out_id: str, number: str) -> str:
    """An `unknown` row's provider_ref: the request's id and a keyed mark of the (national) number,
    so receipts and queries find the row without the ledger holding the number."""
    mark = hmac.new(secret.encode(), number.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{out_id}{UNKNOWN_REF_SEPARATOR}{mark}"


def per_number(results: list[Any]) -> dict[str, Verdict]:
    """The gateway's per-number results as verdicts (a number it left out gets none)."""
    verdicts: dict[str, Verdict] = {}
    for item in results:
        if not isinstance(item, dict):
            continue
        code = str(item.get("code", ""))
        if code == OK and item.get("message_id"):
            verdicts[str(item.get("phone_number"))] = Verdict("sent", ref=str(item["message_id"])[:100])
        else:
            verdicts[str(item.get("phone_number"))] = Verdict(
                "failed" if code in PERMANENT_CODES else "retry", error=reason(code, str(item.get("message", ""))))
    return verdicts


class GenericGateway(SmsProvider):
    name = "generic"
    max_numbers = MAX_NUMBERS

    @property
    def mark_key(self) -> str:
        return self.settings.sms_secret

    def unknown_request(self, out_id: str) -> str:
        return out_id  # refs written before there were several providers stay valid

    def missing(self) -> str | None:
        return None if self.settings.sms_secret else "PUSHSVC_SMS_SECRET"

    @property
    def _base(self) -> str:
        return self.settings.sms_url.rstrip("/")

    async def send_batch(self, session: aiohttp.ClientSession, batch: Batch) -> dict[str, Verdict]:
        s = self.settings
        body = json.dumps(
            {"sign_name": s.sms_sign_name, "template_code": s.sms_template_code,
             "template_param": {"content": batch.content, "url": batch.url, "opt_out": batch.opt_out},
             "phone_numbers": batch.numbers, "out_id": batch.out_id},
            ensure_ascii=False, separators=(",", ":"),
        ).encode()
        try:
            async with session.post(self._base + SEND_PATH, data=body, headers=signed_headers(s.sms_secret, body)) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{type(exc).__name__} {exc}".strip()) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NoReply(f"{type(exc).__name__} {exc}".strip()) from None
        try:
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except ValueError:
            reply = {"code": f"HTTP {status}", "message": "unreadable reply"}
        if status != 200 or not isinstance(reply.get("results"), list):
            code, message = str(reply.get("code", f"HTTP {status}")), str(reply.get("message", ""))
            # Rate limits, server errors and refused credentials (our configuration, not the
            # recipients') may pass; a request rejected as malformed will not.
            temporary = status in (401, 403, 408, 429) or status >= 500 or status == 200
            raise Refused(code, message, failover=temporary, permanent=not temporary)
        return per_number(reply["results"])

    async def query(self, session: aiohttp.ClientSession, out_id: str, numbers: list[str],
                    sent_on: date) -> dict[str, Verdict] | None:
        query = f"out_id={out_id}"
        try:
            async with session.get(f"{self._base}{QUERY_PATH}?{query}",
                                   headers=signed_headers(self.settings.sms_secret, query.encode())) as resp:
                status, reply = resp.status, await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("SMS gateway query for request %s failed: %s", out_id, type(exc).__name__)
            return None
        if status != 200 or not isinstance(reply, dict) or reply.get("code") != OK:
            log.warning("SMS gateway query for request %s refused: HTTP %d", out_id, status)
            return None
        if not reply.get("found"):
            return {}
        results = reply.get("results")
        return per_number(results) if isinstance(results, list) and results else None
