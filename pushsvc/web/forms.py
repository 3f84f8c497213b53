"""What every self-service page shares: the page's language (zh-CN unless `lang` says otherwise,
the other two one click away), reading a posted form, and rendering in the page's language (words
from the catalogues, `pushsvc.i18n`) with the service's fixed figures, the language links and a
CSRF token for the page's forms."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from redis.exceptions import RedisError

from pushsvc.core.msgid import N_
from pushsvc.core.rendering import DEFAULT_LOCALE
from pushsvc.core.verification import CODE_TTL, CONFIRM_TTL, MANAGE_TTL

# The pages import these from here with the self-service words; they live in http for the console too.
from pushsvc.http.forms import FORM_MEDIA as FORM_MEDIA
from pushsvc.http.forms import LANG as LANG
from pushsvc.http.forms import LANGUAGE_NAMES as LANGUAGE_NAMES
from pushsvc.http.forms import LOCALES, form_pairs, language_links
from pushsvc.http.pages import page
from pushsvc.http.routing import Handler
from pushsvc.i18n import words
from pushsvc.subscriptions.codes import MESSAGES_PER_CONTACT
from pushsvc.web import csrf

log = logging.getLogger(__name__)
_FORM_BYTES = 64 * 1024  # the largest form (every group's attributes filled in) is a few KiB
_FORM_FIELDS = 400
# The durations and limits the pages' words state, from the code so the text cannot drift from them.
FIGURES = {
    "confirm_hours": int(CONFIRM_TTL.total_seconds() // 3600),
    "code_minutes": int(CODE_TTL.total_seconds() // 60),
    "link_minutes": int(MANAGE_TTL.total_seconds() // 60),
    "limit": MESSAGES_PER_CONTACT.limit,
}
CHANNEL_LABELS = {"email": N_("E-mail"), "sms": N_("SMS"), "wechat": N_("WeChat")}
# Words several pages say (msgids).
EXPIRED_FORM = N_("This page had expired, or your browser kept no cookie: please send it again.")
FORM_ERROR = N_("Please correct the marked fields and send the form again.")
INVALID_PHONE = N_("Give a mainland China mobile number")
USCC_TAKEN = N_("This organisation is already subscribed. Use the e-mail address or number it subscribed with "
                "on the manage page to change it.")
GONE_TITLE, GONE_TEXT = N_("No such subscription"), N_("This subscription no longer exists (it may have been deleted).")
SUBSCRIBE_TITLE = N_("Subscribe to policy updates")


def locale_of(request: web.Request, fields: MultiDictProxy[str] | MultiDict[str] | None = None,
              fallback: str = DEFAULT_LOCALE) -> str:
    """The page's language: `lang` of the posted form or the query, else `fallback`."""
    wanted = (fields.get("lang") if fields is not None else None) or request.query.get("lang")
    return wanted if wanted in LOCALES else fallback


async def read_form(request: web.Request) -> MultiDict[str]:
    """The posted urlencoded fields. Anything else (or a malformed body) reads as no fields, which
    the CSRF check then refuses with the form shown again."""
    return MultiDict(await form_pairs(request, _FORM_BYTES, _FORM_FIELDS))


def render(request: web.Request, template: str, *, locale: str, status: int = 200, form: str | None = None,
           **context: Any) -> web.Response:
    """A self-service page in `locale`; `form` names the CSRF form its forms post as."""
    response = page(
        request, template, status=status, lang=locale, languages=language_links(request, locale),
        csrf_field=csrf.FIELD, csrf=csrf.form_token(request, form) if form else "", **FIGURES, **context,
    )
    csrf.set_cookie(request, response)
    # Personal data and one-time links: nothing here belongs in a shared cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def notice(request: web.Request, locale: str, status: int, title: str, text: str,
           links: tuple[tuple[str, str], ...] = ()) -> web.Response:
    """A page that only says something (`title`, `text` and the links' labels are msgids), such as
    an expired link."""
    said = words(locale)
    return render(request, "notice.html", locale=locale, status=status, title=said.gettext(title),
                  text=said.gettext(text), links=[(href, said.gettext(label)) for href, label in links])


def minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def listed(items: list[str], locale: str) -> str:
    """"电子邮件、短信" / "E-mail, SMS"."""
    return (", " if locale == "en" else "、").join(items)


def redis_needed(handler: Handler) -> Handler:
    """For a form whose answer needs Redis (codes, limits, the send queue): while Redis is away,
    a page saying to try again later (503) instead of an error."""
    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RedisError as exc:
            log.warning("a self-service page answered 503: Redis unavailable (%s)", type(exc).__name__)
            return notice(request, locale_of(request), 503, N_("Temporarily unavailable"),
                          N_("The service cannot handle this request just now: please try again in a few minutes."))

    return run
