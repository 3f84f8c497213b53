"""A digest's page (`digest_url` in every digest): the period's policies that matched, each linked
to its own page, and the page's QR for WeChat news cards."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.core.links import policy_path, short_url, tagged
from pushsvc.core.tokens import BadToken
from pushsvc.delivery.digest import DIGEST_PURPOSE, digest_path
from pushsvc.http.pages import message_page, page
from pushsvc.http.routing import endpoint, services
from pushsvc.policies.reading import via_of
from pushsvc.store.digests import get_digest
from pushsvc.store.policies import listing
from pushsvc.store.short_links import code_for
from pushsvc.web.qr_pages import image_response


async def _digest(request: web.Request) -> dict[str, Any] | None:
    svc = services(request)
    try:
        digest_id = svc.signer.verify(DIGEST_PURPOSE, request.match_info["token"]).get("d")
    except BadToken:
        return None
    if type(digest_id) is not int:
        return None
    async with svc.db.read() as conn:
        return await get_digest(conn, digest_id)


def _not_found(request: web.Request) -> web.Response:
    return message_page(request, 404, "未找到 Not found", "这个摘要链接无效。This digest link is not valid.")


@endpoint("GET", "/d/{token}", summary="A digest's page: the policies it listed", tag="pages", html=True,
          errors=(404,))
async def digest_page(request: web.Request) -> web.Response:
    digest = await _digest(request)
    if digest is None:
        return _not_found(request)
    ids = list(digest["policy_ids"])
    async with services(request).db.read() as conn:
        found = await listing(conn, {pid: policy_path(pid) for pid in ids})
    # Reached by a message's link naming its channel: the policies' links name it too, so that
    # opening one counts under the channel that brought the reader.
    via = via_of(request.query.get("via"), None)
    policies = [{**found[pid], "path": tagged(policy_path(pid), via) if via else policy_path(pid)}
                for pid in ids if pid in found]
    return page(request, "digest.html", digest=digest, policies=policies)


@endpoint("GET", "/d/{token}/qr.png", summary="The QR code of a digest's page (PNG), encoding its short link",
          tag="pages", errors=(404,))
async def digest_qr_png(request: web.Request) -> web.Response:
    svc = services(request)
    if await _digest(request) is None:
        return _not_found(request)
    async with svc.db.read() as conn:
        path = digest_path(request.match_info["token"])
        # What QR codes carry: the page's short link for QR readers (digests sent before those were: its one).
        code = await code_for(conn, tagged(path, "qr")) or await code_for(conn, path)
    if code is None:  # issued with every digest before it is sent
        return _not_found(request)
    return image_response(request, "png", short_url(svc.settings.public_url, code))
