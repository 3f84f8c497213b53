"""A stand-in SMS gateway (`pushsvc stub sms`): the provider's side of the protocol described in
`pushsvc.channels.sms`, on loopback, for tests, the demo and the bench.

It checks each request's signature (and refuses a replayed nonce), fills the approved template
in, records what it accepted, answers per number with a message id, and after `receipt_delay`
seconds posts signed delivery receipts, batched, to the receipts URL. A reply from a phone is
simulated with POST /_stub/inbound, which the stub forwards, signed, to pushsvc.

    GET /_stub/messages   one entry per accepted request, oldest first: numbers, sign_name,
                          template_code, params, text, results (per number: code, message_id)
    DELETE /_stub/messages  clear (the counters too)
    GET /_stub/stats      {"requests", "numbers", "refused_requests", "receipts_posted"}: cheap to poll
    POST /_stub/faults    {"rate_limit": 0.3, "server_error": 0.1, "timeout": 0.0,
                           "accept_timeout": 0.0, "query_error": 0.0,
                           "invalid_numbers": [...], "refused_numbers": [...],
                           "undelivered_numbers": [...]}; {} clears
    POST /_stub/inbound   {"phone_number": "+8613800138000", "content": "R"}

Faults are those of a real batch API: rate_limit, server_error and timeout refuse a whole request
(nothing is sent; a timeout hangs until the client gives up); accept_timeout takes the request
(sends it, posts its receipts) and then hangs the same way, the ambiguous case; invalid and
refused numbers fail one number each; undelivered numbers are accepted but their receipt says not
delivered. The query (GET /v1/sms/query?out_id=, signed over the query string) answers what a
request with that out_id got, or found=false; query_error makes it answer 500 instead.
Receipts carry the request's out_id and the number as well as the message id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import secrets
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from pushsvc.channels.sms import (
    HEADER_NONCE,
    ILLEGAL_NUMBER,
    MAX_NUMBERS,
    OK,
    QUERY_PATH,
    RATE_LIMITED,
    REFUSED_NUMBER,
    SEND_PATH,
    SERVER_ERROR,
    SIGNATURE_MAX_AGE,
    national_number,
    signature_valid,
    signed_headers,
)
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

_MOBILE = re.compile(r"1[3-9]\d{9}")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_TIMEOUT_HANG = 120.0  # longer than any sensible client timeout
_RECEIPT_TICK = 0.1
_RECEIPT_TRIES = 3


class Faults(BaseModel):
    rate_limit: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    accept_timeout: float = Field(default=0.0, ge=0, le=1)
    query_error: float = Field(default=0.0, ge=0, le=1)
    invalid_numbers: list[str] = Field(default_factory=list)
    refused_numbers: list[str] = Field(default_factory=list)
    undelivered_numbers: list[str] = Field(default_factory=list)


class SendRequest(BaseModel):
    sign_name: str
    template_code: str
    template_param: dict[str, str]
    phone_numbers: list[str] = Field(min_length=1)
    out_id: str | None = Field(default=None, max_length=64)


class InboundIn(BaseModel):
    phone_number: str
    content: str


def _numbers(raw: list[str]) -> frozenset[str]:
    return frozenset(national_number(n.replace(" ", "").replace("-", "")) for n in raw)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "request_id": secrets.token_hex(8)}, status=status)


class SmsGatewayStub:
    """The stub's state and routes. `await start(host, port)`, `await stop()`; `url` once started."""

    def __init__(self, secret: str, template_code: str, receipts_url: str, receipt_delay: float) -> None:
        if not secret:
            raise ValueError("the SMS stub needs PUSHSVC_SMS_SECRET to check signatures")
        self.secret = secret
        # The one approved template: the service's text goes in whole, the link and opt-out after.
        self.templates = {template_code: "${content} ${url} ${opt_out}"}
        self.receipts_url = receipts_url
        self.inbound_url = urljoin(receipts_url, "/v1/inbound/sms")
        self.receipt_delay = receipt_delay
        self.messages: list[dict[str, Any]] = []
        self.taken: dict[str, list[dict[str, str]]] = {}  # out_id -> per-number results, for the query
        self.stats = {"requests": 0, "numbers": 0, "refused_requests": 0, "receipts_posted": 0}
        self.faults = Faults()
        self._fault_sets: dict[str, frozenset[str]] = {}
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._receipts: deque[tuple[float, dict[str, Any]]] = deque()
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post(SEND_PATH, self.send)
        app.router.add_get(QUERY_PATH, self.query)
        app.router.add_get("/_stub/messages", self.list_messages)
        app.router.add_delete("/_stub/messages", self.clear)
        app.router.add_get("/_stub/stats", self.get_stats)
        app.router.add_post("/_stub/faults", self.set_faults)
        app.router.add_post("/_stub/inbound", self.inbound)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound}"
        self._flusher = asyncio.create_task(self._flush_receipts())
        return self.url

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- the provider's API --------------------------------------------------------------------

    def _fresh_nonce(self, nonce: str) -> bool:
        now = time.monotonic()
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * SIGNATURE_MAX_AGE:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = now
        return True

    def _unsigned(self, request: web.Request, signed: bytes) -> web.Response | None:
        """The refusal of a call whose signature (over `signed`) is wrong or replayed, else None."""
        if not signature_valid(self.secret, request.headers, signed):
            return _error(401, "isv.SIGNATURE_INVALID", "missing, stale or wrong signature")
        if not self._fresh_nonce(request.headers[HEADER_NONCE]):
            return _error(401, "isv.SIGNATURE_REPLAYED", "this nonce was used already")
        return None

    async def send(self, request: web.Request) -> web.Response:
        body = await request.read()
        refusal = self._unsigned(request, body)
        if refusal is not None:
            return refusal
        try:
            req = SendRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error(400, "isv.INVALID_PARAMETERS", str(exc.errors()[0]["msg"]))
        if len(req.phone_numbers) > MAX_NUMBERS:
            return _error(400, "isv.MOBILE_COUNT_OVER_LIMIT", f"at most {MAX_NUMBERS} numbers per request")
        if not 2 <= len(req.sign_name) <= 12:
            return _error(400, "isv.SMS_SIGNATURE_ILLEGAL", "sign name not approved")
        template = self.templates.get(req.template_code)
        if template is None:
            return _error(400, "isv.SMS_TEMPLATE_ILLEGAL", "template code not approved")
        missing = [m for m in _PLACEHOLDER.findall(template) if m not in req.template_param]
        if missing:
            return _error(400, "isv.TEMPLATE_MISSING_PARAMETERS", f"missing: {', '.join(missing)}")

        faults, roll = self.faults, random.random()
        if roll < faults.rate_limit:
            return self._refused(429, RATE_LIMITED, "too many requests")
        if roll < faults.rate_limit + faults.server_error:
            return self._refused(500, SERVER_ERROR, "system error")
        if roll < faults.rate_limit + faults.server_error + faults.timeout:
            self.stats["refused_requests"] += 1
            await asyncio.sleep(_TIMEOUT_HANG)
            return _error(504, SERVER_ERROR, "timed out")

        text = f"【{req.sign_name}】" + _PLACEHOLDER.sub(lambda m: req.template_param[m.group(1)], template)
        invalid, refused = self._fault_sets.get("invalid", frozenset()), self._fault_sets.get("refused", frozenset())
        undelivered = self._fault_sets.get("undelivered", frozenset())
        due = time.monotonic() + self.receipt_delay
        results: list[dict[str, str]] = []
        accepted = 0
        for number in req.phone_numbers:
            if number in invalid or not _MOBILE.fullmatch(number):
                results.append({"phone_number": number, "code": ILLEGAL_NUMBER, "message": "illegal mobile number"})
            elif number in refused:
                results.append({"phone_number": number, "code": REFUSED_NUMBER, "message": "the number refuses messages"})
            else:
                message_id = f"{self._prefix}{next(self._ids):09x}"
                accepted += 1
                results.append({"phone_number": number, "code": OK, "message_id": message_id})
                ok = number not in undelivered
                self._receipts.append((due, {"message_id": message_id, "phone_number": number, "delivered": ok,
                                             "error_code": "DELIVRD" if ok else "UNDELIV", "out_id": req.out_id}))
        self.messages.append({
            "numbers": req.phone_numbers,
            "sign_name": req.sign_name,
            "template_code": req.template_code,
            "params": req.template_param,
            "text": text,
            "results": results,
            "received_at": datetime.now(timezone.utc).isoformat(),
        })
        self.stats["requests"] += 1
        self.stats["numbers"] += accepted
        if req.out_id:
            self.taken[req.out_id] = results
        if random.random() < faults.accept_timeout:
            await asyncio.sleep(_TIMEOUT_HANG)  # taken and sent, but the client never hears so
        return web.json_response({"code": OK, "request_id": secrets.token_hex(8), "results": results})

    async def query(self, request: web.Request) -> web.Response:
        refusal = self._unsigned(request, request.query_string.encode())
        if refusal is not None:
            return refusal
        if random.random() < self.faults.query_error:
            return self._refused(500, SERVER_ERROR, "system error")
        results = self.taken.get(request.query.get("out_id", ""))
        if results is None:
            return web.json_response({"code": OK, "found": False})
        return web.json_response({"code": OK, "found": True, "results": results})

    def _refused(self, status: int, code: str, message: str) -> web.Response:
        self.stats["refused_requests"] += 1
        return _error(status, code, message)

    # -- callbacks to pushsvc ------------------------------------------------------------------

    async def _post_signed(self, url: str, payload: dict[str, Any]) -> tuple[int, Any]:
        assert self._session is not None
        body = json.dumps(payload, ensure_ascii=False).encode()
        async with self._session.post(url, data=body, headers=signed_headers(self.secret, body)) as resp:
            return resp.status, await resp.json(content_type=None) if resp.status == 200 else None

    async def _flush_receipts(self) -> None:
        while True:
            await asyncio.sleep(_RECEIPT_TICK)
            now, due = time.monotonic(), []
            while self._receipts and self._receipts[0][0] <= now and len(due) < MAX_NUMBERS:
                due.append(self._receipts.popleft()[1])
            if due:
                asyncio.create_task(self._post_receipts(due))  # a slow callback must not delay the next

    async def _post_receipts(self, receipts: list[dict[str, Any]]) -> None:
        reported = datetime.now(timezone.utc).isoformat()
        payload = {"receipts": [{**{k: v for k, v in r.items() if k != "round"}, "reported_at": reported}
                                for r in receipts]}
        for attempt in range(_RECEIPT_TRIES):
            try:
                status, answer = await self._post_signed(self.receipts_url, payload)
                if status < 500:
                    self.stats["receipts_posted"] += len(receipts)
                    if status != 200:
                        log.warning("receipts refused by %s: HTTP %d", self.receipts_url, status)
                    self._again(receipts, (answer or {}).get("unknown", []))
                    return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("posting receipts failed (try %d): %s", attempt + 1, exc)
            await asyncio.sleep(2**attempt)

    def _again(self, receipts: list[dict[str, Any]], unknown: list[str]) -> None:
        """Receipts the service did not know yet (it had not written the message ids) are posted
        again later, as providers do, a few times at most."""
        wanted = set(unknown)
        due = time.monotonic() + max(self.receipt_delay, 0.5)
        for r in receipts:
            if r["message_id"] in wanted and r.get("round", 0) < _RECEIPT_TRIES:
                self._receipts.append((due, {**r, "round": r.get("round", 0) + 1}))

    # -- control -------------------------------------------------------------------------------

    async def list_messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    async def clear(self, request: web.Request) -> web.Response:
        self.messages.clear()
        self.taken.clear()
        self.stats.update(dict.fromkeys(self.stats, 0))
        return web.json_response({"cleared": True})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            faults = Faults.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            return web.json_response({"error": exc.errors(include_url=False)}, status=422)
        self.faults = faults
        self._fault_sets = {
            "invalid": _numbers(faults.invalid_numbers),
            "refused": _numbers(faults.refused_numbers),
            "undelivered": _numbers(faults.undelivered_numbers),
        }
        return web.json_response(faults.model_dump())

    async def inbound(self, request: web.Request) -> web.Response:
        try:
            msg = InboundIn.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": exc.errors(include_url=False)}, status=422)
        payload = {"messages": [{"phone_number": national_number(msg.phone_number), "content": msg.content,
                                 "received_at": datetime.now(timezone.utc).isoformat()}]}
        status, _ = await self._post_signed(self.inbound_url, payload)
        return web.json_response({"forwarded_to": self.inbound_url, "status": status})


async def serve_sms_stub(settings: Settings, host: str, port: int, receipts_url: str, receipt_delay: float) -> None:
    """Run the stub until cancelled (the `pushsvc stub sms` command)."""
    stub = SmsGatewayStub(settings.sms_secret, settings.sms_template_code, receipts_url, receipt_delay)
    url = await stub.start(host, port)
    log.info("SMS gateway stub on %s%s, receipts to %s after %.1fs", url, SEND_PATH, receipts_url, receipt_delay)
    try:
        await asyncio.Event().wait()
    finally:
        await stub.stop()
