"""The Official Account's calls made for a person or a department rather than for a message: the
web authorisation (snsapi_base: a page opened inside WeChat learns the reader's openid, with no
prompt) and parametric QR codes (a poster whose code, scanned and followed, names its scene).

The web authorisation is a redirect to `<PUSHSVC_WECHAT_OAUTH_URL>/connect/oauth2/authorize`,
which sends the browser back to our `redirect_uri` with `code` and our `state`; the code is
exchanged at `<PUSHSVC_WECHAT_API_URL>/sns/oauth2/access_token` for the openid. The state is
letters and digits (the platform's rule, at most 128 bytes): an expiry and an HMAC over the
page's own query, which rides in the redirect_uri.

These calls are rare (a page view, a poster), so each opens a short HTTP session of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from redis.asyncio import Redis

from pushsvc.channels.wechat import http
from pushsvc.channels.wechat.template import TOKEN_ERRCODES
from pushsvc.channels.wechat.token import AccessTokens, TokenUnavailable, fetch_token
from pushsvc.settings import Settings

AUTHORIZE_PATH = "/connect/oauth2/authorize"
CODE_PATH = "/sns/oauth2/access_token"
QR_PATH = "/cgi-bin/qrcode/create"
QR_IMAGE_URL = "https://mp.weixin.qq.com/cgi-bin/showqrcode"
STATE_SECONDS = 600  # from the redirect to the platform until back with the code
TEMPORARY_QR_MAX_SECONDS = 30 * 86400  # the platform's longest temporary code
_STATE_LABEL = b"pushsvc/wechat-oauth/v1"


class AccountError(Exception):
    """The platform could not be reached or refused the call (its errcode and errmsg)."""


def _state_mac(secret: str, expires: int, query: Iterable[tuple[str, str]]) -> str:
    key = hmac.new(secret.encode("utf-8"), _STATE_LABEL, hashlib.sha256).digest()
    canonical = f"{expires}\x00{urlencode(sorted(query))}".encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()[:32]


def oauth_state(secret: str, query: Iterable[tuple[str, str]], now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + STATE_SECONDS)
    return f"{expires:x}z{_state_mac(secret, expires, query)}"


def oauth_state_valid(secret: str, state: str, query: Iterable[tuple[str, str]], now: float | None = None) -> bool:
    head, _, mac = state.partition("z")
    try:
        expires = int(head, 16)
    except ValueError:
        return False
    fresh = expires >= (time.time() if now is None else now)
    return fresh and hmac.compare_digest(mac.encode("ascii", "replace"), _state_mac(secret, expires, query).encode())


def authorize_url(settings: Settings, redirect_uri: str, state: str) -> str:
    query = urlencode({"appid": settings.wechat_appid, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state})
    return f"{settings.wechat_oauth_url.rstrip('/')}{AUTHORIZE_PATH}?{query}#wechat_redirect"


@dataclass(frozen=True)
class QrCode:
    ticket: str
    url: str  # what the code encodes: print it as a QR code, or show image_url
    expire_seconds: int | None  # None: permanent

    @property
    def image_url(self) -> str:
        return f"{QR_IMAGE_URL}?{urlencode({'ticket': self.ticket})}"


class OfficialAccount:
    """`OfficialAccount(settings, redis)`: the account of `settings.wechat_appid`; `redis` holds the
    access token shared with the workers (pushsvc.channels.wechat.token)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._api = settings.wechat_api_url.rstrip("/")

    @property
    def configured(self) -> bool:
        return bool(self._settings.wechat_appid and self._settings.wechat_secret)

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._settings.wechat_timeout))

    async def openid_for_code(self, code: str) -> str:
        """The openid of the person the web authorisation's `code` was issued for (once)."""
        s = self._settings
        params = {"appid": s.wechat_appid, "secret": s.wechat_secret, "code": code, "grant_type": "authorization_code"}
        try:
            async with self._session() as session:
                reply = await http.call(session, "GET", self._api + CODE_PATH, params=params)
        except http.Unavailable as exc:
            raise AccountError(str(exc)) from None
        openid = reply.data.get("openid")
        if reply.errcode != 0 or not isinstance(openid, str) or not openid:
            raise AccountError(reply.reason)
        return openid

    async def create_qr(self, scene: str, *, permanent: bool, expire_seconds: int) -> QrCode:
        """A parametric QR code for `scene` (at most 64 characters): temporary for `expire_seconds`,
        or permanent (the platform keeps at most 100,000 permanent codes per account)."""
        body: dict[str, Any] = {"action_name": "QR_LIMIT_STR_SCENE" if permanent else "QR_STR_SCENE",
                                "action_info": {"scene": {"scene_str": scene}}}
        if not permanent:
            body["expire_seconds"] = expire_seconds
        async with self._session() as session:
            s = self._settings

            async def fetch() -> tuple[str, int]:
                return await fetch_token(session, self._api, s.wechat_appid, s.wechat_secret)

            tokens = AccessTokens(self._redis, s.wechat_appid, fetch, s.wechat_timeout)
            try:
                token = await tokens.get()
                reply = await http.call(session, "POST", self._api + QR_PATH, params={"access_token": token}, body=body)
                if reply.errcode in TOKEN_ERRCODES:
                    token = await tokens.refresh(stale=token)
                    reply = await http.call(session, "POST", self._api + QR_PATH, params={"access_token": token},
                                            body=body)
            except (TokenUnavailable, http.Unavailable) as exc:
                raise AccountError(str(exc)) from None
        ticket, url = reply.data.get("ticket"), reply.data.get("url")
        if reply.errcode != 0 or not isinstance(ticket, str) or not isinstance(url, str):
            raise AccountError(reply.reason)
        return QrCode(ticket, url, None if permanent else int(reply.data.get("expire_seconds") or expire_seconds))
