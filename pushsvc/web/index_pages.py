"""`/policies`: the public index of policies, searched by words and filtered by domain, audience,
district, department and state, newest first, a page at a time. A GET form and links only: no
script, nothing stored, the same page for everyone (so no CSRF token and a short shared cache)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.search_terms import MAX_QUERY_CHARS, MAX_QUERY_WORDS, STATES, shown_state
from pushsvc.core.timeliness import went_public
from pushsvc.http.forms import LANG, language_links
from pushsvc.http.pages import page
from pushsvc.http.routing import Param, endpoint, services
from pushsvc.i18n import Words, words
from pushsvc.policies.search import COUNT_UP_TO, Results, checked, find
from pushsvc.web.forms import locale_of

FILTERS = ("domain", "audience", "district", "department", "status")
_SUMMARY_CHARS = 120  # a listing shows the start of a summary; the policy's page has all of it
_ERRORS = {
    "q": N_("Type at most %(chars)s characters and %(words)s words."),
    "page": N_("There is no such page of results."),
}
_NOT_A_CHOICE = N_("Choose one of the listed values.")
_CACHE = "public, max-age=60"  # the same for everyone; a new policy shows within a minute


def _label(said: Words, catalogue: Catalogue, kind: str, slug: str) -> str:
    known = {"domain": catalogue.domains, "audience": catalogue.groups, "district": catalogue.districts}[kind]
    return known[slug].label.get(said.locale) if slug in known else slug


def listing_item(said: Words, catalogue: Catalogue, row: dict[str, Any]) -> dict[str, Any]:
    """A policy as the index (and the feeds) show it, in `said`'s language."""
    state = shown_state(row["status"], row["revision"])
    summary = row["summary"]
    return {
        **row,
        "href": f"/p/{row['id']}",
        "state": state,
        "state_label": said.gettext(STATES[state]),
        "domain_label": _label(said, catalogue, "domain", row["domain"]),
        "public_on": local_date(went_public(row["publish_at"], row["created_at"])),
        "excerpt": summary if len(summary) <= _SUMMARY_CHARS else summary[:_SUMMARY_CHARS].rstrip() + "…",
    }


def _choices(said: Words, catalogue: Catalogue, results: Results | None) -> dict[str, Any]:
    locale = said.locale
    categories = [
        {"label": label.get(locale),
         "options": [(d.slug, d.label.get(locale)) for d in catalogue.domains.values() if d.category == slug]}
        for slug, label in catalogue.categories.items()
    ]
    return {
        "domain": [c for c in categories if c["options"]],
        "audience": [(g.slug, g.label.get(locale)) for g in catalogue.groups.values()],
        "district": [(d.slug, d.label.get(locale)) for d in catalogue.districts.values()],
        "department": [(str(d["id"]), d["name"]) for d in results.departments] if results else [],
        "status": [(slug, said.gettext(label)) for slug, label in STATES.items()],
    }


def _href(params: dict[str, str], **changes: str | int) -> str:
    query = {k: v for k, v in {**params, **{k: str(v) for k, v in changes.items()}}.items() if v}
    return "/policies" + (f"?{urlencode(query)}" if query else "")


def _feeds(params: dict[str, str], lang: str) -> list[tuple[str, str]]:
    """The feeds of what the filters allow a feed to be of: a domain, a department, or everything."""
    of = {k: params[k] for k in ("domain", "department") if params.get(k)}
    query = f"?{urlencode(of)}" if of else ""
    return [("Atom", f"/policies/feed.atom{query}"), ("RSS", f"/policies/feed.rss{query}")]


@endpoint("GET", "/policies", summary="The public index of policies: search, filters, pages", tag="pages",
          html=True, errors=(400,),
          query=(Param("q", "words of the title, document number or summary"), Param("domain", "a domain slug"),
                 Param("audience", "an audience group slug"), Param("district", "a district slug"),
                 Param("department", "a department id"),
                 Param("status", "in_force | revised | repealed | lapsed"), Param("page", "1, 2, …"), LANG))
async def policy_index(request: web.Request) -> web.Response:
    svc = services(request)
    locale = locale_of(request)
    said = words(locale)
    typed = {name: request.query.get(name, "") for name in ("q", *FILTERS)}
    wanted, problems = await checked(svc, request.query)
    errors = {e.field: said.gettext(_ERRORS.get(e.field, _NOT_A_CHOICE), chars=MAX_QUERY_CHARS,
                                    words=MAX_QUERY_WORDS) for e in problems}
    results = None if errors else await find(svc, wanted)
    params = {**typed, "lang": locale if locale != "zh-CN" else ""}
    response = page(
        request, "policies.html", status=400 if errors else 200, lang=locale,
        languages=language_links(request, locale), v=typed, errors=errors, choices=_choices(said, svc.catalogue, results),
        results=results, count_up_to=COUNT_UP_TO,
        items=[listing_item(said, svc.catalogue, row) for row in results.items] if results else [],
        previous=_href(params, page=wanted.page - 1) if results and wanted.page > 1 else None,
        next=_href(params, page=wanted.page + 1) if results and wanted.page < results.pages else None,
        clear=_href({"lang": params["lang"]}), feeds=_feeds(typed, locale),
        filtered=any(typed.values()),
    )
    response.headers["Cache-Control"] = _CACHE
    return response

