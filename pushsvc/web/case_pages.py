"""The case page an applicant follows (`/c/{token}`, no login) and its QR code."""

from __future__ import annotations

from typing import Any, get_args

from aiohttp import web

from pushsvc.cases.messages import CASE_PURPOSE, urls
from pushsvc.core.case_states import LABELS
from pushsvc.core.identifiers import mask_name
from pushsvc.core.models import Locale
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.tokens import BadToken
from pushsvc.http.pages import message_page, page
from pushsvc.http.routing import endpoint, services
from pushsvc.i18n import words
from pushsvc.store.cases import case_with_department, timeline
from pushsvc.web.qr_pages import image_response


def _case_id(request: web.Request) -> int | web.Response:
    try:
        payload = services(request).signer.verify(CASE_PURPOSE, request.match_info["token"])
    except BadToken as exc:
        text = ("这个链接已过期。This link has expired." if exc.reason == "expired"
                else "这个链接无效或不完整。This link is not valid.")
        return message_page(request, 400, "链接无效 Invalid link", text)
    case_id = payload.get("c")
    if type(case_id) is not int:
        return message_page(request, 400, "链接无效 Invalid link", "这个链接无效。This link is not valid.")
    return case_id


async def _case(request: web.Request, with_events: bool) -> dict[str, Any] | web.Response:
    case_id = _case_id(request)
    if isinstance(case_id, web.Response):
        return case_id
    async with services(request).db.read() as conn:
        case = await case_with_department(conn, case_id)
        if case is not None and with_events:
            case["events"] = await timeline(conn, case_id)
    if case is None:
        return message_page(request, 404, "未找到 Not found", "没有这件办件。No such case.")
    return case


@endpoint("GET", "/c/{token}", summary="Case progress page (signed link, no login)", tag="pages", html=True,
          errors=(400, 404))
async def case_page(request: web.Request) -> web.Response:
    case = await _case(request, with_events=True)
    if isinstance(case, web.Response):
        return case
    # The page is in the applicant's language.
    locale = case["locale"] if case["locale"] in get_args(Locale) else "zh-CN"
    said = words(locale)
    for event in case["events"]:
        event["label"] = said.gettext(LABELS[event["status"]])
        event["local_time"] = event["occurred_at"].astimezone(LOCAL_ZONE)
    return page(request, "case.html", lang=locale, case=case, status_label=said.gettext(LABELS[case["status"]]),
                applicant=mask_name(case["applicant_name"]))


@endpoint("GET", "/c/{token}/qr.png", summary="The case page's QR code (PNG), encoding its short link",
          tag="pages", errors=(400, 404))
async def case_qr_png(request: web.Request) -> web.Response:
    case = await _case(request, with_events=False)
    if isinstance(case, web.Response):
        return case
    return image_response(request, "png", urls(services(request).settings.public_url, case)[1])
