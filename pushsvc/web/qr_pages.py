"""QR codes and what carries them: short-link redirects, a policy's QR as PNG and SVG, its printable
A4 poster for service-hall public-information zones, and the subscribe QR for a domain or audience."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from pushsvc.core.errors import FieldError
from pushsvc.core.links import policy_path, policy_target, short_url, via_path
from pushsvc.core.qr import qr_png, qr_svg
from pushsvc.http.pages import SECURITY_HEADERS, message_page, page
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, path_id, services
from pushsvc.policies.reading import UNTAGGED_SHORT_LINK, count_visit, via_of
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import get_policy
from pushsvc.store.short_links import code_for, target_of
from pushsvc.web.pages import PUBLIC_STATUSES
from pushsvc.web.proofs import client_of

ImageKind = Literal["png", "svg"]
_MEDIA: dict[ImageKind, str] = {"png": "image/png", "svg": "image/svg+xml"}
# A QR's bytes depend only on the URL it encodes, and a short link never changes: cache hard.
_IMAGE_CACHE = "public, max-age=86400, immutable"
_MAX_CODE = 64  # far above any code we issue; longer is not worth a database look-up


@lru_cache(maxsize=512)
def qr_image(kind: ImageKind, url: str) -> tuple[bytes, str]:
    """(bytes, entity tag) of the QR for `url`; made once per URL and kind while it stays in the LRU."""
    body = qr_png(url) if kind == "png" else qr_svg(url).encode("ascii")
    return body, hashlib.sha256(body).hexdigest()[:32]


def image_response(request: web.Request, kind: ImageKind, url: str) -> web.Response:
    body, etag = qr_image(kind, url)
    headers = {**SECURITY_HEADERS, "Cache-Control": _IMAGE_CACHE}
    if any(tag.value in (etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=body, content_type=_MEDIA[kind], headers=headers)
    response.etag = etag
    return response


def _no_policy(request: web.Request) -> web.Response:
    return message_page(request, 404, "未找到 Not found", "没有这项政策。No such policy.")


@dataclass(frozen=True)
class _PublicPolicy:
    policy: dict[str, Any]
    department: str
    short_url: str


async def _public_policy(request: web.Request) -> _PublicPolicy | None:
    """The policy named in the path with its short link, or None unless the public may see it."""
    svc = services(request)
    try:
        policy_id = path_id(request)
    except Problem:
        return None
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        if policy is None or policy["status"] not in PUBLIC_STATUSES:
            return None
        department = await department_by_id(conn, policy["department_id"])
        # What QR codes carry: the policy's short link for QR readers (policies published before
        # those were issued: its one short link).
        code = await code_for(conn, via_path(policy_id, "qr")) or await code_for(conn, policy_path(policy_id))
    if code is None:  # issued with every policy at publish; a policy without one has no QR to show
        return None
    return _PublicPolicy(policy, department["name"] if department else "", short_url(svc.settings.public_url, code))


@endpoint("GET", "/s/{code}", summary="Short link: 302 to the page it stands for (an HTML page if unknown)",
          tag="pages", status=302, errors=(404,))
async def follow_short_link(request: web.Request) -> web.Response:
    svc = services(request)
    code = request.match_info["code"]
    target = None
    if len(code) <= _MAX_CODE:
        async with svc.db.read() as conn:
            target = await target_of(conn, code)
    if target is None:
        return message_page(request, 404, "未找到 Not found", "这个短链接不存在。This short link does not exist.")
    policy = policy_target(target)
    if policy is not None:
        # Counted here under the channel the code was issued for (or the one the link names), and
        # sent on to the bare page, which counts nothing again and whose address, passed on, names
        # no channel.
        policy_id, via = policy
        channel = via_of(via, None) or via_of(request.query.get("via"), UNTAGGED_SHORT_LINK)
        await count_visit(svc, policy_id, channel, client_of(request), request.headers.get("User-Agent", ""))
        target = policy_path(policy_id)
    return web.Response(status=302, headers={"Location": svc.settings.public_url + target})


async def _policy_qr(request: web.Request, kind: ImageKind) -> web.Response:
    found = await _public_policy(request)
    if found is None:
        return _no_policy(request)
    return image_response(request, kind, found.short_url)


@endpoint("GET", "/p/{id}/qr.png", summary="The policy's QR code (PNG), encoding its short link", tag="pages",
          errors=(404,))
async def policy_qr_png(request: web.Request) -> web.Response:
    return await _policy_qr(request, "png")


@endpoint("GET", "/p/{id}/qr.svg", summary="The policy's QR code (SVG), encoding its short link", tag="pages",
          errors=(404,))
async def policy_qr_svg(request: web.Request) -> web.Response:
    return await _policy_qr(request, "svg")


@endpoint("GET", "/p/{id}/poster", summary="A printable A4 poster of the policy with its QR code", tag="pages",
          html=True, errors=(404,))
async def policy_poster(request: web.Request) -> web.Response:
    found = await _public_policy(request)
    if found is None:
        return _no_policy(request)
    domain = services(request).catalogue.domains.get(found.policy["domain"])
    # Inline SVG: vector for print, no second request, and nothing the page's CSP has to allow.
    # Our own markup, made from our own short link: safe to mark as such.
    qr = Markup(qr_image("svg", found.short_url)[0].decode("ascii"))
    return page(request, "poster.html", policy=found.policy, department=found.department,
                domain=domain.label.get("zh-CN") if domain else found.policy["domain"],
                short_url=found.short_url, qr=qr)


@endpoint("GET", "/static/poster.css", summary="The poster's stylesheet (screen and A4 print)", tag="pages",
          html=True)
async def poster_stylesheet(request: web.Request) -> web.Response:
    css = (services(request).settings.templates_dir / "web" / "poster.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def _slugs(request: web.Request, name: str, known: Any) -> list[str]:
    values = list(dict.fromkeys(request.query.getall(name, [])))
    unknown = [v for v in values if v not in known]
    if unknown:
        raise Problem(422, f"unknown {name}: {', '.join(unknown)[:200]}",
                      [FieldError(name, f"'{v[:100]}' is not in the catalogue") for v in unknown[:10]])
    return values


@endpoint("GET", "/subscribe/qr.png", summary="A QR code leading to the subscribe page for domains and audiences",
          tag="pages", errors=(422,),
          query=(Param("domain", "a domain slug (repeatable)"), Param("audience", "an audience group slug (repeatable)")))
async def subscribe_qr_png(request: web.Request) -> web.Response:
    svc = services(request)
    query = [("domain", d) for d in _slugs(request, "domain", svc.catalogue.domains)]
    query += [("audience", a) for a in _slugs(request, "audience", svc.catalogue.groups)]
    url = f"{svc.settings.public_url}/subscribe" + (f"?{urlencode(query)}" if query else "")
    return image_response(request, "png", url)
