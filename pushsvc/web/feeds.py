"""The index as feeds (`/policies/feed.atom`, `/policies/feed.rss`): the newest listed policies of
the city, of a domain (`?domain=`) or of a department (`?department=`), built with feedgen. Ids and
links are absolute (PUSHSVC_PUBLIC_URL) and stable: an entry is its policy page, the feed its own
URL; an entry's `updated` is the policy's last public change (published, revised, repealed, lapsed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from feedgen.feed import FeedGenerator

from pushsvc.core.clock import now
from pushsvc.core.msgid import N_
from pushsvc.core.timeliness import went_public
from pushsvc.http.forms import LANG
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, services
from pushsvc.i18n import words
from pushsvc.policies.search import checked, department_name, newest
from pushsvc.web.forms import locale_of
from pushsvc.web.index_pages import listing_item

Kind = Literal["atom", "rss"]
_MEDIA: dict[Kind, str] = {"atom": "application/atom+xml", "rss": "application/rss+xml"}
_CACHE = "public, max-age=300"
_QUERY = (Param("domain", "a domain slug: that domain's policies"),
          Param("department", "a department id: that department's policies"), LANG)
TITLE = N_("Policies of Guangzhou")
TITLE_OF = N_("Policies of Guangzhou: %(of)s")
DESCRIPTION = N_("The newest policies published by the city's departments, and the state of each.")


async def _feed(request: web.Request, kind: Kind) -> web.Response:
    svc = services(request)
    locale = locale_of(request)
    said = words(locale)
    chosen = {k: request.query[k] for k in ("domain", "department") if request.query.get(k)}
    wanted, errors = await checked(svc, chosen)
    if errors:
        raise Problem(422, "unknown filter: " + ", ".join(e.field for e in errors), errors)
    items = [listing_item(said, svc.catalogue, row) for row in await newest(svc, wanted)]
    base = svc.settings.public_url
    query = urlencode({**chosen, **({"lang": locale} if "lang" in request.query else {})})
    self_url = f"{base}{request.path}" + (f"?{query}" if query else "")
    index_url = f"{base}/policies" + (f"?{query}" if query else "")

    feed = FeedGenerator()
    feed.id(self_url)
    if wanted.domain:
        feed.title(said.gettext(TITLE_OF, of=svc.catalogue.domains[wanted.domain].label.get(locale)))
    elif wanted.department:
        feed.title(said.gettext(TITLE_OF, of=await department_name(svc, wanted.department) or ""))
    else:
        feed.title(said.gettext(TITLE))
    feed.description(said.gettext(DESCRIPTION))
    feed.link(href=index_url, rel="alternate")
    feed.link(href=self_url, rel="self")
    feed.language(locale)
    feed.updated(max((i["changed_at"] for i in items), default=None) or now())
    for item in items:
        _entry(feed, base, item)
    body = feed.atom_str(pretty=True) if kind == "atom" else feed.rss_str(pretty=True)
    return web.Response(body=body, content_type=_MEDIA[kind], charset="utf-8", headers={"Cache-Control": _CACHE})


def _entry(feed: FeedGenerator, base: str, item: dict[str, Any]) -> None:
    entry = feed.add_entry(order="append")
    url = base + item["href"]
    entry.id(url)
    entry.guid(url, permalink=True)
    shown = item["title"] if item["state"] in ("in_force", "revised") else f"{item['title']} ({item['state_label']})"
    entry.title(shown)
    entry.link(href=url, rel="alternate")
    entry.summary(item["summary"])
    entry.author({"name": item["department"]})
    entry.category(term=item["domain"], label=item["domain_label"])
    published: datetime = went_public(item["publish_at"], item["created_at"])
    entry.published(published)
    entry.updated(item["changed_at"])


@endpoint("GET", "/policies/feed.atom", summary="Atom feed of the newest listed policies", tag="pages",
          errors=(422,), query=_QUERY)
async def atom_feed(request: web.Request) -> web.Response:
    return await _feed(request, "atom")


@endpoint("GET", "/policies/feed.rss", summary="RSS 2.0 feed of the newest listed policies", tag="pages",
          errors=(422,), query=_QUERY)
async def rss_feed(request: web.Request) -> web.Response:
    return await _feed(request, "rss")
