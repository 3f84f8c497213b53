"""What the cloud SMS stand-ins share: the key pair they check signatures with, the record of
accepted requests, injected faults, and receipts and replies pushed to our callbacks as the
clouds push them (JSON, retried until answered as the cloud expects).

    GET /_stub/messages   one entry per accepted request, oldest first: numbers (national),
                          sign_name, template_code, params {content, url, opt_out}, text, out_id,
                          results (per number: phone_number, code, message_id)
    DELETE /_stub/messages  clear (the counters too)
    GET /_stub/stats      {"requests", "numbers", "refused_requests", "receipts_posted"}
    POST /_stub/faults    as the generic stand-in's (`sms_gateway.Faults`), and
                          "duplicate_receipts": true to push every receipt twice,
                          "fail_after": n to answer every request after the next n with a server
                          error (a provider failing midway, on cue); {} clears
    POST /_stub/inbound   {"phone_number": "+8613800138000", "content": "R"}: a reply, pushed
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from pydantic import Field, ValidationError

from pushsvc.channels.sms.providers.base import national_number
from pushsvc.dev.stubs.sms_gateway import Faults, InboundIn

log = logging.getLogger(__name__)

TIMEOUT_HANG = 120.0  # longer than any sensible client timeout
SIGNATURE_MAX_AGE = 300
_RECEIPT_TICK = 0.1
_PUSH_TRIES = 5


class CloudFaults(Faults):
    duplicate_receipts: bool = False
    fail_after: int | None = Field(default=None, ge=0)


class CloudSmsStub(ABC):
    """`await start(host, port)`, `await stop()`; `url` once started."""

    provider: ClassVar[str]
    max_receipts_per_push: ClassVar[int] = 100

    def __init__(self, key_id: str, secret: str, report_url: str, reply_url: str, receipt_delay: float = 1.0,
                 template_code: str = "PUSHSVC_POLICY") -> None:
        if not (key_id and secret):
            raise ValueError(f"the {self.provider} stand-in needs --key-id and --secret to check signatures")
        self.key_id, self.secret = key_id, secret
        self.report_url, self.reply_url = report_url, reply_url
        self.receipt_delay = receipt_delay
        self.template_code = template_code
        self.messages: list[dict[str, Any]] = []
        self.stats = {"requests": 0, "numbers": 0, "refused_requests": 0, "receipts_posted": 0}
        self.faults = CloudFaults()
        self.fault_sets: dict[str, frozenset[str]] = {}
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._receipts: deque[tuple[float, dict[str, Any]]] = deque()
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._pushes: set[asyncio.Task[None]] = set()  # pushes under way, cancelled at stop
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    # -- what each cloud does -------------------------------------------------------------------

    @abstractmethod
    async def api(self, request: web.Request) -> web.Response:
        """POST /: the cloud's API (the action in a header), signature checked first."""

    @abstractmethod
    def reply_payload(self, number: str, content: str) -> Any:
        """A reply from a phone as the cloud pushes it."""

    @abstractmethod
    def answered(self, answer: Any) -> bool:
        """Whether our answer to a push is the one the cloud expects (else it pushes again)."""

    # -- shared -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/", self.api)
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
        for task in [self._flusher, *self._pushes]:
            if task is not None:
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def fresh_nonce(self, nonce: str) -> bool:
        now = time.monotonic()
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * SIGNATURE_MAX_AGE:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = now
        return True

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._ids):09x}"

    def roll(self) -> str | None:
        """The whole-request fault this request draws: rate_limit, server_error, timeout or None."""
        f, roll = self.faults, random.random()
        if f.fail_after is not None:
            if f.fail_after == 0:
                self.stats["refused_requests"] += 1
                return "server_error"
            f.fail_after -= 1
        for name, share in (("rate_limit", f.rate_limit), ("server_error", f.server_error), ("timeout", f.timeout)):
            if roll < share:
                self.stats["refused_requests"] += 1
                return name
            roll -= share
        return None

    def query_fails(self) -> bool:
        return random.random() < self.faults.query_error

    def number_fault(self, number: str) -> str | None:
        """invalid, refused or None for one (national) number."""
        if number in self.fault_sets.get("invalid", frozenset()) or not (len(number) == 11 and number.isdigit()
                                                                            and number[0] == "1" and number[1] in "3456789"):
            return "invalid"
        return "refused" if number in self.fault_sets.get("refused", frozenset()) else None

    def delivered(self, number: str) -> bool:
        return number not in self.fault_sets.get("undelivered", frozenset())

    def record(self, numbers: list[str], sign_name: str, template_code: str, params: dict[str, str], out_id: str,
               results: list[dict[str, str]]) -> None:
        text = f"【{sign_name}】{params.get('content', '')} {params.get('url', '')} {params.get('opt_out', '')}"
        self.messages.append({"numbers": numbers, "sign_name": sign_name, "template_code": template_code,
                              "params": params, "text": text, "out_id": out_id, "results": results,
                              "received_at": datetime.now(UTC).isoformat()})
        self.stats["requests"] += 1
        self.stats["numbers"] += sum(1 for r in results if r.get("message_id"))

    def push_receipt(self, receipt: dict[str, Any]) -> None:
        """A receipt to push after receipt_delay (twice when told to)."""
        due = time.monotonic() + self.receipt_delay
        for _ in range(2 if self.faults.duplicate_receipts else 1):
            self._receipts.append((due, receipt))

    async def hang_if_accept_timeout(self) -> None:
        if random.random() < self.faults.accept_timeout:
            await asyncio.sleep(TIMEOUT_HANG)  # taken and sent, but the client never hears so

    async def _flush_receipts(self) -> None:
        while True:
            await asyncio.sleep(_RECEIPT_TICK)
            now, due = time.monotonic(), []
            while self._receipts and self._receipts[0][0] <= now and len(due) < self.max_receipts_per_push:
                due.append(self._receipts.popleft()[1])
            if due:  # a slow callback must not delay the next
                task = asyncio.create_task(self._push_receipts(due))
                self._pushes.add(task)
                task.add_done_callback(self._pushes.discard)

    async def _push_receipts(self, receipts: list[dict[str, Any]]) -> None:
        if await self._push(self.report_url, receipts):
            self.stats["receipts_posted"] += len(receipts)

    async def _push(self, url: str, payload: Any) -> bool:
        """POST JSON as the clouds do, again with a growing pause until answered as expected."""
        assert self._session is not None
        body = json.dumps(payload, ensure_ascii=False).encode()
        for attempt in range(_PUSH_TRIES):
            try:
                async with self._session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    answer = await resp.json(content_type=None) if resp.status == 200 else None
                if self.answered(answer):
                    return True
                log.warning("%s push to %s not acknowledged (try %d): HTTP %d", self.provider, url, attempt + 1,
                            resp.status)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.warning("%s push to %s failed (try %d): %s", self.provider, url, attempt + 1, exc)
            await asyncio.sleep(min(2**attempt, 10))
        return False

    async def list_messages(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    async def clear(self, request: web.Request) -> web.Response:
        self.messages.clear()
        self.stats.update(dict.fromkeys(self.stats, 0))
        return web.json_response({"cleared": True})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            faults = CloudFaults.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            return web.json_response({"error": exc.errors(include_url=False)}, status=422)
        self.faults = faults
        self.fault_sets = {name: frozenset(national_number(n.replace(" ", "").replace("-", "")) for n in numbers)
                           for name, numbers in (("invalid", faults.invalid_numbers),
                                                 ("refused", faults.refused_numbers),
                                                 ("undelivered", faults.undelivered_numbers))}
        return web.json_response(faults.model_dump())

    async def inbound(self, request: web.Request) -> web.Response:
        try:
            msg = InboundIn.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": exc.errors(include_url=False)}, status=422)
        ok = await self._push(self.reply_url, self.reply_payload(national_number(msg.phone_number), msg.content))
        return web.json_response({"forwarded_to": self.reply_url, "acknowledged": ok})
