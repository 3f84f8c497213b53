"""A stand-in for the WeChat endpoints (`pushsvc stub wechat`): the Official Account's token and
template-message API and WeCom group robot webhooks, on loopback, for tests and the demo.

    GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=   a new token (the old one retires)
    POST /cgi-bin/message/template/send?access_token=                 a template message to an openid
    POST /cgi-bin/webhook/send?key=                                   a robot message (any key is a robot)

    GET /_stub/messages     one entry per accepted message, oldest first:
                            {"kind": "webhook"|"template", "target": robot key | openid, "body", "at"}
    DELETE /_stub/messages  clear (the counters too)
    GET /_stub/stats        {"requests", "accepted", "errcodes": {code: n}, "http_errors", "timeouts",
                             "tokens_issued"}: cheap to poll
    POST /_stub/faults      {"rate_limit": 0.3, "server_error": 0.1, "timeout": 0.0,
                             "expire_token": true, "expire_token_after": 50,
                             "invalid_keys": [...], "not_following": [...], "refused": [...]}; {} clears

It checks what the platform checks: appid and secret; the access token (missing 41001, expired
42001, retired by a newer one 40001, unknown 40014); robot keys (93000); at most
PUSHSVC_WECHAT_ROBOT_MAX_MESSAGES per robot key in any PUSHSVC_WECHAT_ROBOT_WINDOW_SECONDS
(45009 beyond); markdown within 4,096 bytes and news card sizes (40058); template fields within
20 characters (47003); openids that don't follow (43004) or refused messages (43101).
Injected faults refuse a whole request before it is accepted: rate_limit answers 45009,
server_error HTTP 500, timeout hangs until the client has given up. `expire_token` expires the
current token now; `expire_token_after: n` expires it after n more accepted template messages
(a token expiry in the middle of a fan-out, on cue).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
import time
from collections import Counter, deque
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pushsvc.channels.wechat.robot import MARKDOWN_MAX_BYTES, NEWS_DESCRIPTION_MAX_BYTES, NEWS_TITLE_MAX_BYTES
from pushsvc.channels.wechat.template import FIELD_MAX_CHARS
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

TOKEN_PATH = "/cgi-bin/token"
TEMPLATE_PATH = "/cgi-bin/message/template/send"
WEBHOOK_PATH = "/cgi-bin/webhook/send"
TOKEN_SECONDS = 7200
_NEWS_MAX_ARTICLES = 8


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    expire_token: bool = False
    expire_token_after: int | None = Field(default=None, ge=0)
    invalid_keys: list[str] = Field(default_factory=list)
    not_following: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shares(self) -> Faults:
        if self.rate_limit + self.server_error + self.timeout > 1:
            raise ValueError("rate_limit + server_error + timeout must not exceed 1")
        return self


def _error(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


class WechatStub:
    """`WechatStub(appid, secret, robot_max_messages, robot_window_seconds, hang_seconds)`; `app` is
    the aiohttp application; `start(host, port)` serves it and returns its base URL."""

    def __init__(
        self, appid: str, secret: str, robot_max_messages: int, robot_window_seconds: float, hang_seconds: float
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.robot_max = robot_max_messages
        self.robot_window = robot_window_seconds
        self.hang_seconds = hang_seconds
        self.faults = Faults()
        self.messages: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self.errcodes: Counter[int] = Counter()
        self.current_token: str | None = None
        self.retired: set[str] = set()  # replaced by a newer token: 40001
        self.expired: set[str] = set()  # expired on request: 42001
        self._until_expiry: int | None = None
        self._robot_calls: dict[str, deque[float]] = {}
        self._msgids = itertools.count(1_000_000)
        self._rng = random.Random()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.add_routes([
            web.get(TOKEN_PATH, self._token),
            web.post(TEMPLATE_PATH, self._template),
            web.post(WEBHOOK_PATH, self._webhook),
            web.get("/_stub/messages", self._list),
            web.delete("/_stub/messages", self._clear),
            web.get("/_stub/stats", self._stats),
            web.post("/_stub/faults", self._set_faults),
        ])

    @classmethod
    def from_settings(cls, settings: Settings) -> WechatStub:
        return cls(
            settings.wechat_appid,
            settings.wechat_secret,
            settings.wechat_robot_max_messages,
            settings.wechat_robot_window_seconds,
            hang_seconds=settings.wechat_timeout + 1,  # the client has given up by then
        )

    async def start(self, host: str, port: int) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the platform ----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        if not self.appid or q.get("appid") != self.appid:
            return _error(40013, "invalid appid")
        if q.get("secret") != self.secret:
            return _error(40125, "invalid appsecret")
        if self.current_token is not None:
            self.retired.add(self.current_token)
        self.current_token = secrets.token_urlsafe(24)
        self.stats["tokens_issued"] += 1
        return web.json_response({"access_token": self.current_token, "expires_in": TOKEN_SECONDS})

    def _token_error(self, token: str | None) -> web.Response | None:
        if not token:
            return _error(41001, "access_token missing")
        if token in self.expired:
            return _error(42001, "access_token expired")
        if token in self.retired:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if token != self.current_token:
            return _error(40014, "invalid access_token")
        return None

    async def _injected(self) -> web.Response | None:
        """A drawn fault, or None to go on."""
        draw = self._rng.random()
        f = self.faults
        if draw < f.timeout:
            self.stats["timeouts"] += 1
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504)
        if draw < f.timeout + f.server_error:
            self.stats["http_errors"] += 1
            return web.json_response({"errcode": -1, "errmsg": "system error"}, status=500)
        if draw < f.timeout + f.server_error + f.rate_limit:
            return _error(45009, "api freq out of limit")
        return None

    async def _template(self, request: web.Request) -> web.Response:
        return self._counted(await self._template_reply(request))

    async def _template_reply(self, request: web.Request) -> web.Response:
        refused = self._token_error(request.query.get("access_token")) or await self._injected()
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if body is None:
            return _error(47001, "data format error")
        touser, data = body.get("touser"), body.get("data")
        if not isinstance(touser, str) or not touser:
            return _error(40003, "invalid openid")
        if not body.get("template_id"):
            return _error(40037, "invalid template_id")
        if touser in self.faults.not_following:
            return _error(43004, "require subscribe")
        if touser in self.faults.refused:
            return _error(43101, "user refuse to accept the msg")
        if not isinstance(data, dict) or not data:
            return _error(47001, "data format error")
        for name, field in data.items():
            value = field.get("value") if isinstance(field, dict) else None
            if not isinstance(value, str) or len(value) > FIELD_MAX_CHARS:
                return _error(47003, f"argument invalid! data.{name}.value")
        msgid = next(self._msgids)
        self._record("template", touser, body)
        self._count_towards_expiry()
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def _webhook(self, request: web.Request) -> web.Response:
        return self._counted(await self._webhook_reply(request))

    async def _webhook_reply(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        if not key or key in self.faults.invalid_keys:
            return _error(93000, "invalid webhook url")
        if not self._robot_slot(key):
            return _error(45009, "api freq out of limit")
        refused = await self._injected()
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if body is None:
            return _error(47001, "data format error")
        problem = _robot_body_problem(body)
        if problem is not None:
            return problem
        self._record("webhook", key, body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def _robot_slot(self, key: str) -> bool:
        """Admit a call if the key had fewer than the limit in the last window (sliding)."""
        now = time.monotonic()
        calls = self._robot_calls.setdefault(key, deque())
        while calls and calls[0] <= now - self.robot_window:
            calls.popleft()
        if len(calls) >= self.robot_max:
            return False
        calls.append(now)
        return True

    def _count_towards_expiry(self) -> None:
        if self._until_expiry is None:
            return
        self._until_expiry -= 1
        if self._until_expiry <= 0:
            self._until_expiry = None
            self._expire_current()

    def _expire_current(self) -> None:
        if self.current_token is not None:
            self.expired.add(self.current_token)
            self.current_token = None

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    def _record(self, kind: str, target: str, body: dict[str, Any]) -> None:
        self.messages.append({"kind": kind, "target": target, "body": body, "at": time.time()})

    def _counted(self, response: web.Response) -> web.Response:
        self.stats["requests"] += 1
        if response.status == 200 and response.text is not None:
            errcode = json.loads(response.text).get("errcode", 0)
            if errcode == 0:
                self.stats["accepted"] += 1
            else:
                self.errcodes[errcode] += 1
        return response

    # -- control ---------------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages)

    async def _clear(self, request: web.Request) -> web.Response:
        self.messages.clear()
        self.stats.clear()
        self.errcodes.clear()
        return web.json_response({"cleared": True})

    async def _stats(self, request: web.Request) -> web.Response:
        counters = {name: self.stats[name] for name in ("requests", "accepted", "http_errors", "timeouts", "tokens_issued")}
        return web.json_response(counters | {"errcodes": {str(k): v for k, v in sorted(self.errcodes.items())}})

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            faults = Faults.model_validate(await self._json_body(request) or {})
        except ValidationError as exc:
            return web.json_response({"errors": json.loads(exc.json())}, status=422)
        self.faults = faults
        self._until_expiry = faults.expire_token_after
        if faults.expire_token:
            self._expire_current()
        return web.json_response(faults.model_dump())


def _robot_body_problem(body: dict[str, Any]) -> web.Response | None:
    msgtype = body.get("msgtype")
    if msgtype == "markdown":
        content = (body.get("markdown") or {}).get("content")
        if not isinstance(content, str) or not content:
            return _error(40058, "markdown.content exceed max length or empty")
        if len(content.encode("utf-8")) > MARKDOWN_MAX_BYTES:
            return _error(40058, "markdown.content exceed max length 4096")
        return None
    if msgtype == "news":
        articles = (body.get("news") or {}).get("articles")
        if not isinstance(articles, list) or not 1 <= len(articles) <= _NEWS_MAX_ARTICLES:
            return _error(40058, "news.articles must hold 1 to 8 articles")
        for article in articles:
            if not isinstance(article, dict) or not article.get("title") or not article.get("url"):
                return _error(40058, "news article needs title and url")
            if len(str(article["title"]).encode("utf-8")) > NEWS_TITLE_MAX_BYTES or len(
                str(article.get("description", "")).encode("utf-8")
            ) > NEWS_DESCRIPTION_MAX_BYTES:
                return _error(40058, "news article title or description too long")
        return None
    return _error(40008, "invalid message type")


async def serve_wechat_stub(settings: Settings, host: str, port: int) -> None:
    """Run the stub until cancelled (the `pushsvc stub wechat` command)."""
    stub = WechatStub.from_settings(settings)
    url = await stub.start(host, port)
    log.info("WeChat stub on %s (robot %s, template %s)", url, WEBHOOK_PATH, TEMPLATE_PATH)
    try:
        await asyncio.Event().wait()
    finally:
        await stub.stop()
