"""The Official Account's server URL (`/v1/wechat/server`) and its parametric QR codes.

The platform checks the URL with a signed GET whose `echostr` we echo, then posts each event
there, signed with the Token (`signature` over sorted token, timestamp, nonce). In compatible and
safe modes (`encrypt_type=aes`) the message is in `Encrypt`, signed with `msg_signature` over the
encrypted text too, and the appid inside it is checked; a reply then goes back encrypted. A
bad signature is 401 and nothing of the request is echoed. The platform waits 5 s for an answer
and retries twice: `success` says "received", whatever we made of it, and every event is safe to
receive again.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from pushsvc.channels.wechat import crypto, events
from pushsvc.channels.wechat.account import TEMPORARY_QR_MAX_SECONDS, AccountError, OfficialAccount
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem, invalid
from pushsvc.http.routing import Param, endpoint, json_body, json_response, parse_model, read_body, services
from pushsvc.services import Services
from pushsvc.store import wechat_follow as store
from pushsvc.subscriptions import wechat_follow

SERVER_PATH = "/v1/wechat/server"
_MAX_EVENT_BYTES = 64 << 10  # an event is well under 2 KB
_SIGNED = (Param("signature", "SHA-1 over the sorted Token, timestamp and nonce", required=True),
           Param("timestamp", "seconds since the epoch", required=True), Param("nonce", "random", required=True))
_ECHOSTR = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UNSIGNED = "not signed by the Official Account (or signed with another Token)"


def _token(svc: Services) -> str:
    token = svc.settings.wechat_token
    if not token:
        raise Problem(404, "no Official Account server is configured here (PUSHSVC_WECHAT_TOKEN)")
    return token


def _check_signature(request: web.Request, token: str) -> tuple[str, str]:
    """(timestamp, nonce) of a request the platform signed; else 401."""
    q = request.query
    timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
    if not (timestamp and nonce and crypto.signature_valid(q.get("signature", ""), token, timestamp, nonce)):
        raise Problem(401, _UNSIGNED)
    return timestamp, nonce


@endpoint("GET", SERVER_PATH, summary="The Official Account's check of its server URL: the signed echostr echoed",
          tag="gateways", query=(*_SIGNED, Param("echostr", "echoed when the signature is right", required=True)),
          errors=(400, 401, 404))
async def server_check(request: web.Request) -> web.Response:
    _check_signature(request, _token(services(request)))
    # The signature does not cover echostr: echo only what the platform sends (a string of digits).
    echostr = request.query.get("echostr", "")
    if not _ECHOSTR.fullmatch(echostr):
        raise Problem(400, "echostr must be 1 to 128 letters, digits, hyphens or underscores")
    return web.Response(text=echostr, content_type="text/plain")


def _message(request: web.Request, raw: bytes, token: str, timestamp: str, nonce: str) -> tuple[dict[str, str], bool]:
    """The message's fields, decrypted when it came encrypted, and whether it did."""
    try:
        outer = events.fields(raw)
    except events.BadXml as exc:
        raise Problem(400, f"the body is not a message: {exc}") from None
    if request.query.get("encrypt_type", "raw") != "aes":
        return outer, False
    svc = services(request)
    encrypt = outer.get("Encrypt", "")
    if not crypto.signature_valid(request.query.get("msg_signature", ""), token, timestamp, nonce, encrypt):
        raise Problem(401, _UNSIGNED)
    if not svc.settings.wechat_encoding_aes_key:
        raise Problem(400, "an encrypted message, but no EncodingAESKey is set (PUSHSVC_WECHAT_ENCODING_AES_KEY)")
    try:
        plain = crypto.MessageCrypto(svc.settings.wechat_encoding_aes_key, svc.settings.wechat_appid).decrypt(encrypt)
        return events.fields(plain), True
    except (crypto.BadMessage, events.BadXml) as exc:
        raise Problem(400, f"the encrypted message is not one for this account: {exc}") from None


@endpoint("POST", SERVER_PATH, summary="Events from the Official Account (plain, compatible or safe mode)",
          tag="gateways", body_media="text/xml",
          query=(*_SIGNED, Param("encrypt_type", "`aes` in compatible and safe modes"),
                 Param("msg_signature", "safe mode: SHA-1 over the Token, timestamp, nonce and Encrypt")),
          errors=(400, 401, 404, 413))
async def server_event(request: web.Request) -> web.Response:
    svc = services(request)
    token = _token(svc)
    timestamp, nonce = _check_signature(request, token)
    raw = await read_body(request, _MAX_EVENT_BYTES)
    message, was_encrypted = _message(request, raw, token, timestamp, nonce)
    event = events.event_of(message)
    reply = None if event is None else await wechat_follow.on_event(svc, event)
    if reply is None or event is None:
        return web.Response(text="success", content_type="text/plain")
    xml = events.text_reply(event.openid, event.account, reply)
    if was_encrypted:
        sealer = crypto.MessageCrypto(svc.settings.wechat_encoding_aes_key, svc.settings.wechat_appid)
        xml = events.encrypted(sealer, token, xml, str(int(time.time())), secrets.token_hex(8))
    return web.Response(text=xml, content_type="text/xml")


# -- parametric QR codes -------------------------------------------------------------------------


Slug = Annotated[str, Field(min_length=1, max_length=64)]


class SceneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domains: list[Slug] = Field(min_length=1, max_length=30, description="domain slugs of the department")
    audiences: list[Slug] = Field(default_factory=list, max_length=10, description="audience group slugs")
    permanent: bool = Field(default=False, description="a permanent code (QR_LIMIT_STR_SCENE) instead of a temporary one")
    expire_seconds: int = Field(default=TEMPORARY_QR_MAX_SECONDS, ge=60, le=TEMPORARY_QR_MAX_SECONDS,
                                description="a temporary code's life")


class SceneOut(BaseModel):
    id: int
    scene: str = Field(description="the scene string the code carries")
    ticket: str
    url: str = Field(description="what the code encodes: print it as a QR code")
    image_url: str = Field(description="the platform's image of the code")
    expires_at: datetime | None
    domains: list[str]
    audiences: list[str]


def _checked(svc: Services, body: SceneIn, department_domains: list[str]) -> None:
    errors = [FieldError(f"domains[{i}]", f"unknown domain '{d}'")
              for i, d in enumerate(body.domains) if d != ALL_DOMAINS and d not in svc.catalogue.domains]
    errors += [FieldError(f"audiences[{i}]", f"unknown audience group '{a}'")
               for i, a in enumerate(body.audiences) if a not in svc.catalogue.groups]
    if errors:
        raise invalid(errors)
    others = [d for d in body.domains if d not in department_domains]
    if others:
        raise Problem(403, f"not the department's domains: {', '.join(others)}",
                      errors=[FieldError("domains", "not one of the department's domains")])


@endpoint("POST", "/v1/wechat/scenes", summary="A parametric QR code of the Official Account for a poster: "
          "whoever scans and follows it gets a pending subscription to its domains", tag="wechat",
          auth="department", body=SceneIn, response=SceneOut, status=201, errors=(400, 401, 403, 413, 422, 502, 503))
async def create_scene(request: web.Request) -> web.Response:
    svc = services(request)
    who = caller(request)
    body = parse_model(SceneIn, await json_body(request))
    assert who.department is not None and who.department_id is not None
    _checked(svc, body, list(who.department["domains"]))
    account = OfficialAccount(svc.settings, svc.redis)
    if not account.configured or not svc.settings.wechat_token:
        raise Problem(503, "the Official Account is not configured here "
                           "(PUSHSVC_WECHAT_APPID, PUSHSVC_WECHAT_SECRET, PUSHSVC_WECHAT_TOKEN)")
    domains, audiences = list(dict.fromkeys(body.domains)), list(dict.fromkeys(body.audiences))
    async with svc.db.write() as conn:
        scene_id = await store.insert_scene(conn, who.department_id, domains, audiences)
    scene = wechat_follow.scene_string(svc, scene_id)
    try:
        code = await account.create_qr(scene, permanent=body.permanent, expire_seconds=body.expire_seconds)
    except AccountError as exc:
        async with svc.db.write() as conn:
            await store.delete_scene(conn, scene_id)
        raise Problem(502, f"the platform gave no QR code: {exc}") from None
    expires_at = None if code.expire_seconds is None else now() + timedelta(seconds=code.expire_seconds)
    async with svc.db.write() as conn:
        await store.set_code(conn, scene_id, code.ticket, code.url, expires_at)
    out = SceneOut(id=scene_id, scene=scene, ticket=code.ticket, url=code.url, image_url=code.image_url,
                   expires_at=expires_at, domains=domains, audiences=audiences)
    return json_response(out, status=201)
