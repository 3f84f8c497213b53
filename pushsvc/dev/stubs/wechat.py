"""A stand-in for the WeChat endpoints (`pushsvc stub wechat`): the Official Account's token and
template-message API and WeCom group robot webhooks, on loopback, for tests and the demo.

    GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=   a new token (the old one retires)
    POST /cgi-bin/message/template/send?access_token=                 a template message to an openid
    POST /cgi-bin/webhook/send?key=                                   a robot message (any key is a robot)
    GET  /connect/oauth2/authorize?appid=&redirect_uri=&scope=snsapi_base&state=
                                        the web authorisation: back to redirect_uri with a code and the state
    GET  /sns/oauth2/access_token?appid=&secret=&code=&grant_type=authorization_code
                                        the code (once, within 5 minutes) for the reader's openid
    POST /cgi-bin/qrcode/create?access_token=                         a parametric QR code (its ticket and URL)

    GET /_stub/messages     one entry per accepted message, oldest first:
                            {"kind": "webhook"|"template", "target": robot key | openid, "body", "at"}
                            (a template message also its "msgid", which its TEMPLATESENDJOBFINISH names)
    DELETE /_stub/messages  clear (the counters too)
    GET /_stub/stats        {"requests", "accepted", "errcodes": {code: n}, "http_errors", "timeouts",
                             "tokens_issued"}: cheap to poll
    POST /_stub/faults      {"rate_limit": 0.3, "server_error": 0.1, "timeout": 0.0,
                             "expire_token": true, "expire_token_after": 50, "template_quota": 100,
                             "invalid_keys": [...], "not_following": [...], "refused": [...]}; {} clears
    POST /_stub/reader      {"openid"}: whose WeChat the authorisation speaks for from now on
    GET  /_stub/qrcodes     the QR codes made: {"ticket", "action_name", "scene", "expire_seconds"}
    POST /_stub/events      {"type": "templatesendjobfinish"|"subscribe"|"scan"|"unsubscribe", "openid",
                             "msgid", "status", "scene" (or "ticket" of a code made here), "encrypted",
                             "server_url"}: the event posted to our server URL as the platform posts it,
                             signed with the Token, encrypted with the EncodingAESKey (by default when
                             one is set); answers {"status", "body", "reply": the reply's fields, decrypted,
                             "reply_signed": whether an encrypted reply's msg_signature is right}

It checks what the platform checks: appid and secret; the access token (missing 41001, expired
42001, retired by a newer one 40001, unknown 40014); robot keys (93000); at most
PUSHSVC_WECHAT_ROBOT_MAX_MESSAGES per robot key in any PUSHSVC_WECHAT_ROBOT_WINDOW_SECONDS
(45009 beyond); markdown within 4,096 bytes and news card sizes (40058); template fields within
20 characters (47003); openids that don't follow (43004) or refused messages (43101).
Injected faults refuse a whole request before it is accepted: rate_limit answers 45009 to a robot
(its 20 a minute) and 45011 to a template message (the minute's quota), server_error HTTP 500, timeout hangs until the client has given up. `expire_token` expires the
current token now; `expire_token_after: n` expires it after n more accepted template messages
(a token expiry in the middle of a fan-out, on cue). `template_quota: n`: the account's daily quota
has n template messages left; beyond them every template message is refused with 45009 ("reach max
api daily quota limit").

Events go to `server_url` (`pushsvc stub wechat` uses $PUSHSVC_PUBLIC_URL/v1/wechat/server) signed
with PUSHSVC_WECHAT_TOKEN and, in safe mode, encrypted with PUSHSVC_WECHAT_ENCODING_AES_KEY.
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
from urllib.parse import urlencode

from aiohttp import ClientSession, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pushsvc.channels.wechat import crypto, events
from pushsvc.channels.wechat.account import AUTHORIZE_PATH, CODE_PATH, QR_PATH
from pushsvc.channels.wechat.robot import MARKDOWN_MAX_BYTES, NEWS_DESCRIPTION_MAX_BYTES, NEWS_TITLE_MAX_BYTES
from pushsvc.channels.wechat.template import FIELD_MAX_CHARS
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

TOKEN_PATH = "/cgi-bin/token"
TEMPLATE_PATH = "/cgi-bin/message/template/send"
WEBHOOK_PATH = "/cgi-bin/webhook/send"
TOKEN_SECONDS = 7200
CODE_SECONDS = 300
ACCOUNT_ID = "gh_0123456789ab"  # the account's original id: ToUserName of its events
_NEWS_MAX_ARTICLES = 8
_QR_ACTIONS = {"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"}
_SCENE_MAX_CHARS = 64


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    expire_token: bool = False
    expire_token_after: int | None = Field(default=None, ge=0)
    template_quota: int | None = Field(default=None, ge=0)
    invalid_keys: list[str] = Field(default_factory=list)
    not_following: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shares(self) -> Faults:
        if self.rate_limit + self.server_error + self.timeout > 1:
            raise ValueError("rate_limit + server_error + timeout must not exceed 1")
        return self


class StubEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=r"^(templatesendjobfinish|subscribe|scan|unsubscribe)$")
    openid: str = Field(min_length=1, max_length=64)
    msgid: str | None = None
    status: str = "success"
    scene: str | None = Field(default=None, max_length=_SCENE_MAX_CHARS)
    ticket: str | None = None
    encrypted: bool | None = None  # None: when the stand-in has an EncodingAESKey
    server_url: str | None = None


class Reader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    openid: str = Field(min_length=1, max_length=64)


def _error(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


class WechatStub:
    """`WechatStub(appid, secret, robot_max_messages, robot_window_seconds, hang_seconds)`; `app` is
    the aiohttp application; `start(host, port)` serves it and returns its base URL."""

    def __init__(
        self, appid: str, secret: str, robot_max_messages: int, robot_window_seconds: float, hang_seconds: float,
        *, server_token: str = "", encoding_aes_key: str = "", server_url: str = "",
    ) -> None:
        self.appid = appid
        self.server_token = server_token
        self.encoding_aes_key = encoding_aes_key
        self.server_url = server_url
        self.reader_openid = "o_stub_reader_" + secrets.token_hex(7)
        self.codes: dict[str, tuple[str, float]] = {}  # web authorisation code -> (openid, expiry)
        self.qr_codes: dict[str, dict[str, Any]] = {}  # ticket -> what was asked
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
            web.get(AUTHORIZE_PATH, self._authorize),
            web.get(CODE_PATH, self._code),
            web.post(QR_PATH, self._qrcode),
            web.post("/_stub/reader", self._set_reader),
            web.get("/_stub/qrcodes", self._qrcodes),
            web.post("/_stub/events", self._send_event),
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
            server_token=settings.wechat_token,
            encoding_aes_key=settings.wechat_encoding_aes_key,
            server_url=f"{settings.public_url}/v1/wechat/server",
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

    async def _injected(self, rate_limited: int = 45009) -> web.Response | None:
        """A drawn fault, or None to go on; `rate_limited`: the errcode of a drawn rate limit."""
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
            return _error(rate_limited, "api freq out of limit" if rate_limited == 45009
                          else "api minute-quota reach limit  mustslower  retry next minute")
        return None

    async def _template(self, request: web.Request) -> web.Response:
        return self._counted(await self._template_reply(request))

    async def _template_reply(self, request: web.Request) -> web.Response:
        refused = self._token_error(request.query.get("access_token")) or await self._injected(45011)
        if refused is not None:
            return refused
        if self.faults.template_quota == 0:
            return _error(45009, "reach max api daily quota limit")
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
        self._record("template", touser, body, msgid=msgid)
        self._count_towards_expiry()
        if self.faults.template_quota is not None:
            self.faults.template_quota -= 1
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

    def _record(self, kind: str, target: str, body: dict[str, Any], **more: Any) -> None:
        self.messages.append({"kind": kind, "target": target, "body": body, "at": time.time(), **more})

    def _counted(self, response: web.Response) -> web.Response:
        self.stats["requests"] += 1
        if response.status == 200 and response.text is not None:
            errcode = json.loads(response.text).get("errcode", 0)
            if errcode == 0:
                self.stats["accepted"] += 1
            else:
                self.errcodes[errcode] += 1
        return response

    # -- the web authorisation and QR codes ------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        """The page WeChat shows for snsapi_base: none; straight back with a code for the reader."""
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("appid") != self.appid or not self.appid:
            return web.Response(status=400, text="invalid appid (40013)")
        if q.get("scope") != "snsapi_base" or q.get("response_type") != "code" or not redirect_uri.startswith("http"):
            return web.Response(status=400, text="invalid scope, response_type or redirect_uri")
        code = secrets.token_urlsafe(16)
        self.codes[code] = (self.reader_openid, time.monotonic() + CODE_SECONDS)
        sep = "&" if "?" in redirect_uri else "?"
        target = f"{redirect_uri}{sep}{urlencode({'code': code, 'state': q.get('state', '')})}"
        return web.Response(status=302, headers={"Location": target})

    async def _code(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("appid") != self.appid or not self.appid:
            return _error(40013, "invalid appid")
        if q.get("secret") != self.secret:
            return _error(40125, "invalid appsecret")
        if q.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        found = self.codes.pop(q.get("code", ""), None)  # a code is good once
        if found is None or found[1] < time.monotonic():
            return _error(40029, "invalid code")
        return web.json_response({"access_token": secrets.token_urlsafe(24), "expires_in": TOKEN_SECONDS,
                                  "refresh_token": secrets.token_urlsafe(24), "openid": found[0],
                                  "scope": "snsapi_base"})

    async def _qrcode(self, request: web.Request) -> web.Response:
        refused = self._token_error(request.query.get("access_token"))
        if refused is not None:
            return refused
        body = await self._json_body(request) or {}
        action = body.get("action_name")
        info = body.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        value = scene.get("scene_str") if isinstance(scene, dict) else None
        if action not in _QR_ACTIONS:
            return _error(40003, "invalid action_name")
        if not isinstance(value, str) or not 1 <= len(value) <= _SCENE_MAX_CHARS:
            return _error(40003, "invalid scene_str")
        permanent = action.startswith("QR_LIMIT")
        expire = None if permanent else int(body.get("expire_seconds") or 60)
        ticket = "gQ" + secrets.token_urlsafe(24)
        self.qr_codes[ticket] = {"ticket": ticket, "action_name": action, "scene": value, "expire_seconds": expire}
        answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(12)}"}
        if expire is not None:
            answer["expire_seconds"] = expire
        return web.json_response(answer)

    # -- events to the account's server URL ------------------------------------------------------

    def _event_xml(self, event: StubEvent, scene: str | None) -> str:
        parts = {"ToUserName": ACCOUNT_ID, "FromUserName": event.openid, "CreateTime": str(int(time.time())),
                 "MsgType": "event"}
        if event.type == "templatesendjobfinish":
            parts |= {"Event": "TEMPLATESENDJOBFINISH", "MsgID": event.msgid or "", "Status": event.status}
        elif event.type == "scan":
            parts |= {"Event": "SCAN", "EventKey": scene or ""}
        elif event.type == "subscribe":
            parts |= {"Event": "subscribe", "EventKey": events.SCENE_PREFIX + scene if scene else ""}
        else:
            parts |= {"Event": "unsubscribe", "EventKey": ""}
        return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in parts.items()) + "</xml>"

    async def _send_event(self, request: web.Request) -> web.Response:
        try:
            event = StubEvent.model_validate(await self._json_body(request) or {})
        except ValidationError as exc:
            return web.json_response({"errors": json.loads(exc.json())}, status=422)
        scene = event.scene or (self.qr_codes.get(event.ticket or "", {}).get("scene"))
        xml = self._event_xml(event, scene)
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        query = {"signature": crypto.signature(self.server_token, timestamp, nonce), "timestamp": timestamp,
                 "nonce": nonce, "openid": event.openid}
        sealer = None
        if event.encrypted or (event.encrypted is None and self.encoding_aes_key):
            sealer = crypto.MessageCrypto(self.encoding_aes_key, self.appid)
            encrypt = sealer.encrypt(xml)
            query |= {"encrypt_type": "aes", "msg_signature": crypto.signature(self.server_token, timestamp, nonce, encrypt)}
            xml = f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        async with ClientSession() as session, session.post(
            event.server_url or self.server_url, params=query, data=xml.encode(), headers={"Content-Type": "text/xml"}
        ) as resp:
            status, text = resp.status, await resp.text()
        answer: dict[str, Any] = {"status": status, "body": text, "reply": None, "reply_signed": None}
        if status == 200 and text.startswith("<xml>"):
            reply = events.fields(text)
            if sealer is not None:
                answer["reply_signed"] = crypto.signature_valid(
                    reply.get("MsgSignature", ""), self.server_token, reply.get("TimeStamp", ""),
                    reply.get("Nonce", ""), reply.get("Encrypt", ""))
                reply = events.fields(sealer.decrypt(reply.get("Encrypt", "")))
            answer["reply"] = reply
        return web.json_response(answer)

    # -- control ---------------------------------------------------------------------------------

    async def _set_reader(self, request: web.Request) -> web.Response:
        try:
            reader = Reader.model_validate(await self._json_body(request) or {})
        except ValidationError as exc:
            return web.json_response({"errors": json.loads(exc.json())}, status=422)
        self.reader_openid = reader.openid
        return web.json_response({"openid": reader.openid})

    async def _qrcodes(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.qr_codes.values()))

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
