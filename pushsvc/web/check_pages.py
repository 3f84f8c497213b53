"""/check, which policies apply to me (政策计算器): the subscribe form's groups and attributes
(pushsvc.web.subscription_form), posted so that the profile stays out of addresses and logs,
matched by pushsvc.policies.self_check against the policies in force; nothing is stored. The
answer lists each policy with the clauses the profile met, and a button that opens the subscribe
form filled in with the profile and the matching policies' domains."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.msgid import N_
from pushsvc.http.routing import endpoint, services
from pushsvc.i18n import Words
from pushsvc.i18n import words as page_words
from pushsvc.policies.self_check import Applies, Met, applicable, read_profile
from pushsvc.web import csrf
from pushsvc.web.forms import EXPIRED_FORM, FORM_ERROR, FORM_MEDIA, LANG, locale_of, read_form, render
from pushsvc.web.subscribe_pages import SUBSCRIBE_FORM
from pushsvc.web.subscription_form import Typed, read_typed, view

CHECK_FORM = "check"
# How a clause reads, by its operator; under a `not` it reads as its opposite.
_SAID = {"eq": N_("%(attribute)s: %(value)s"), "ne": N_("%(attribute)s: not %(value)s"),
         "in": N_("%(attribute)s: one of %(value)s"), "not_in": N_("%(attribute)s: none of %(value)s"),
         "gte": N_("%(attribute)s: at least %(value)s"), "lt": N_("%(attribute)s: less than %(value)s"),
         "lte": N_("%(attribute)s: at most %(value)s"), "gt": N_("%(attribute)s: more than %(value)s"),
         "given": N_("%(attribute)s: given"), "not_given": N_("%(attribute)s: not given")}
_OPPOSITE = {"eq": "ne", "in": "not_in", "not_in": "in", "gte": "lt", "lte": "gt", "given": "not_given",
             "not_given": "given"}


def _value(met: Met, locale: str, words: Words) -> str:
    attribute = met.clause.attribute
    labels = {c.value: c.label.get(locale) for c in attribute.choices or ()}

    def one(v: Any) -> str:
        if isinstance(v, bool):
            return words.gettext("Yes") if v else words.gettext("No")
        return labels.get(v, str(v))

    values = met.clause.value
    return (", " if locale == "en" else "、").join(one(v) for v in values) if isinstance(values, tuple) else one(values)


def said(met: Met, catalogue: Catalogue, locale: str, words: Words) -> str:
    """A clause the profile met, in the page's words: "Enterprises · District: Tianhe"."""
    c = met.clause
    op = ("given" if c.value else "not_given") if c.op == "exists" else c.op
    if met.negated:
        op = _OPPOSITE[op]
    attribute = f"{catalogue.groups[c.group].label.get(locale)} · {c.attribute.label.get(locale)}"
    return words.gettext(_SAID[op], attribute=attribute, value=_value(met, locale, words))


def _result(found: Applies, catalogue: Catalogue, locale: str, words: Words) -> dict[str, Any]:
    policy = found.policy
    domain = catalogue.domains.get(policy["domain"])
    return {
        "id": policy["id"], "title": policy["title"], "doc_number": policy["doc_number"],
        "department": policy["department"], "domain": domain.label.get(locale) if domain else policy["domain"],
        "expires_on": policy["expires_on"],
        "groups": [catalogue.groups[g].label.get(locale) for g in found.groups],
        "met": list(dict.fromkeys(said(m, catalogue, locale, words) for m in found.met)),
    }


def _check_page(request: web.Request, locale: str, typed: Typed, errors: dict[str, str], *,
                results: list[dict[str, Any]] | None = None, status: int = 200) -> web.Response:
    svc, words = services(request), page_words(locale)
    if errors:
        errors.setdefault("form", words.gettext(FORM_ERROR))
    form = view(typed, svc.catalogue, locale, words, errors)
    for group in form["groups"]:  # a profile is as complete as the person likes: nothing is required
        for a in group["attrs"]:
            a["required"] = False
    return render(request, "check.html", locale=locale, status=status, form=CHECK_FORM, results=results, **form)


@endpoint("GET", "/check", summary="Which policies apply to me: a profile form (nothing is stored)", tag="pages",
          html=True, query=(LANG,))
async def check_page(request: web.Request) -> web.Response:
    locale = locale_of(request)
    return _check_page(request, locale, Typed(locale=locale), {})


@endpoint("POST", "/check", summary="Which policies apply to me: the policies in force matching the profile, with "
          "the clauses it met (action=check), or the subscribe form filled in with it (action=subscribe)",
          tag="pages", html=True, body_media=FORM_MEDIA, errors=(403, 413, 422))
async def check(request: web.Request) -> web.Response:
    svc = services(request)
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    typed = read_typed(fields, svc.catalogue)
    if not csrf.valid(request, CHECK_FORM, fields):
        return _check_page(request, locale, typed, {"form": words.gettext(EXPIRED_FORM)}, status=403)
    if not typed.groups:
        return _check_page(request, locale, typed, {"group": words.gettext("Choose at least one group.")}, status=422)
    raw = {g: {a: typed.attrs.get(f"{g}.{a}", "") for a in svc.catalogue.groups[g].attributes} for g in typed.groups}
    profile, problems = read_profile(raw, svc.catalogue)
    if problems:
        errors = {e.field: f"{words.gettext('Not valid')} ({e.message})" for e in reversed(problems)}
        return _check_page(request, locale, typed, errors, status=422)
    found = await applicable(svc, profile)
    if fields.get("action") == "subscribe":
        domains = list(dict.fromkeys(f.policy["domain"] for f in found))
        filled = Typed(groups=typed.groups, attrs=typed.attrs, domains=domains, locale=locale)
        return render(request, "subscribe.html", locale=locale, form=SUBSCRIBE_FORM, wechat_token=None,
                      **view(filled, svc.catalogue, locale, words, {}))
    return _check_page(request, locale, typed, {},
                       results=[_result(f, svc.catalogue, locale, words) for f in found])
