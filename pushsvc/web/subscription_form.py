"""The subscription form of /subscribe and /manage/{token}: made from the audience catalogue (its
groups and attributes, labels and choices in the page's language; the domains by category),
read back from the posted fields, checked with the API's own validation, and shown again with
each error beside its field and everything typed kept.

Field names: `group` (repeated), `<group>.<attribute>`, `domain` (repeated) or `all_domains=*`,
`channel` (repeated), `name`, `email`, `phone`, `wechat_openid`, `wechat_webhook`, `frequency`,
`locale`, `quiet_start`, `quiet_end`, `agree=yes`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from multidict import MultiMapping

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.catalogue import Attribute, Catalogue
from pushsvc.core.errors import FieldError
from pushsvc.core.models import Frequency
from pushsvc.core.msgid import N_
from pushsvc.core.subscribers import ALL_DOMAINS, NewSubscriber, validate_subscriber
from pushsvc.i18n import Words
from pushsvc.web.forms import CHANNEL_LABELS, INVALID_PHONE, LANGUAGE_NAMES, LOCALES

# The form field that holds each channel's contact, where "this channel needs a contact" is shown.
CONTACT_FIELD = {"email": "email", "sms": "phone", "wechat": "wechat_openid"}
_NEED_CONTACT = {"email": N_("E-mail needs an e-mail address."), "sms": N_("SMS needs a mobile number."),
                 "wechat": N_("WeChat needs an OpenID or a group robot URL.")}
_INVALID = {"email": N_("This is not a valid e-mail address"), "phone": INVALID_PHONE,
            "wechat_webhook": N_("Only WeCom group robot URLs are accepted")}
_QUIET_BOTH = N_("Give both the start and the end (HH:MM).")
FREQUENCY_LABELS = {"immediate": N_("As soon as a policy is published"), "daily": N_("A daily digest"),
                    "weekly": N_("A weekly digest (Mondays)")}
_TEXT_FIELDS = ("name", "email", "phone", "wechat_openid", "wechat_webhook", "frequency", "locale",
                "quiet_start", "quiet_end")
_MAX_TEXT = 600  # longer than any field accepts: validation names the field instead of truncating silently
_INDEX = re.compile(r"\[(\d+)\]")


@dataclass
class Typed:
    """What the person chose and typed, as text: validated from here, and shown again as it was."""

    groups: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)  # "<group>.<attribute>" -> text
    domains: list[str] = field(default_factory=list)
    all_domains: bool = False
    channels: list[str] = field(default_factory=list)
    name: str = ""
    email: str = ""
    phone: str = ""
    wechat_openid: str = ""
    wechat_webhook: str = ""
    frequency: str = "immediate"
    locale: str = "zh-CN"
    quiet_start: str = ""
    quiet_end: str = ""
    agree: bool = False


def read_typed(fields: MultiMapping[str], catalogue: Catalogue) -> Typed:
    """The posted fields; slugs the catalogue does not know are dropped (the form offers none)."""
    def text(name: str) -> str:
        return fields.get(name, "")[:_MAX_TEXT].strip()

    def known(name: str, among: Mapping[str, Any]) -> list[str]:
        return [v for v in dict.fromkeys(fields.getall(name, [])) if v in among]

    attrs = {f"{g.slug}.{a}": text(f"{g.slug}.{a}") for g in catalogue.groups.values() for a in g.attributes}
    return Typed(
        groups=known("group", catalogue.groups),
        attrs={k: v for k, v in attrs.items() if v},
        domains=known("domain", catalogue.domains),
        all_domains=fields.get("all_domains") == ALL_DOMAINS,
        channels=known("channel", CHANNEL_CONTACTS),
        agree=fields.get("agree") == "yes",
        **{name: text(name) for name in _TEXT_FIELDS},
    )


def prefilled(query: MultiMapping[str], catalogue: Catalogue, locale: str) -> Typed:
    """A subscribe QR's choices (`?audience=…&domain=…`); unknown slugs are ignored."""
    return Typed(
        groups=[a for a in dict.fromkeys(query.getall("audience", [])) if a in catalogue.groups],
        domains=[d for d in dict.fromkeys(query.getall("domain", [])) if d in catalogue.domains],
        locale=locale,
    )


def _as_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _hhmm(minutes: int | None) -> str:
    return "" if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


def stored(sub: dict[str, Any], channels: set[str]) -> Typed:
    """A stored subscriber (load_subscriber) as the form shows it, with `channels` ticked."""
    return Typed(
        groups=list(sub["audiences"]),
        attrs={f"{g}.{a}": _as_text(v) for g, values in sub["audiences"].items() for a, v in values.items()},
        domains=[d for d in sub["domains"] if d != ALL_DOMAINS],
        all_domains=ALL_DOMAINS in sub["domains"],
        channels=[c for c in CHANNEL_CONTACTS if c in channels],
        name=sub["name"] or "", email=sub["email"] or "", phone=sub["phone"] or "",
        wechat_openid=sub["wechat_openid"] or "", wechat_webhook=sub["wechat_webhook"] or "",
        frequency=sub["frequency"], locale=sub["locale"],
        quiet_start=_hhmm(sub["quiet_start"]), quiet_end=_hhmm(sub["quiet_end"]),
    )


def _data(t: Typed, catalogue: Catalogue) -> dict[str, Any]:
    """The API's subscriber body (SubscriberIn) for what was typed."""
    data: dict[str, Any] = {
        "name": t.name or None, "email": t.email or None, "phone": t.phone or None,
        "audiences": {g: {a: t.attrs.get(f"{g}.{a}", "") for a in catalogue.groups[g].attributes} for g in t.groups},
        "domains": [ALL_DOMAINS] if t.all_domains else t.domains,
        "channels": t.channels, "frequency": t.frequency, "locale": t.locale,
    }
    if t.wechat_openid or t.wechat_webhook:
        data["wechat"] = {"openid": t.wechat_openid or None, "webhook_url": t.wechat_webhook or None}
    if t.quiet_start and t.quiet_end:
        data["quiet_hours"] = {"start": t.quiet_start, "end": t.quiet_end}
    return data


def _placed(error: FieldError, t: Typed, words: Words) -> tuple[str, str]:
    """(form field, message in the page's language) for one validation error. The detail, from
    the shared validation, is kept after the page's own words: it says exactly what is wrong."""
    path, detail = error.field, error.message

    def invalid(msgid: str = N_("Not valid")) -> str:
        return f"{words.gettext(msgid)} ({detail})"

    if path.startswith("audiences."):
        group, _, attribute = path.removeprefix("audiences.").partition(".")
        if attribute:
            required = detail == "a value is required"
            return f"{group}.{attribute}", words.gettext("Please fill this in.") if required else invalid()
        return "group", invalid()
    if path == "audiences":
        return "group", words.gettext("Choose at least one group.") if not t.groups else invalid()
    if path.startswith("domains"):
        if t.domains or t.all_domains:
            return "domain", invalid()
        return "domain", words.gettext("Choose at least one domain, or all domains.")
    if path.startswith("channels"):
        index = _INDEX.search(path)
        if not t.channels or index is None or int(index[1]) >= len(t.channels):
            return "channel", words.gettext("Choose at least one way to receive updates.")
        channel = t.channels[int(index[1])]
        return CONTACT_FIELD[channel], words.gettext(_NEED_CONTACT[channel])
    if path in ("email", "phone"):
        return path, invalid(_INVALID[path])
    if path.startswith("wechat.webhook_url"):
        return "wechat_webhook", invalid(_INVALID["wechat_webhook"])
    if path.startswith("wechat"):
        return "wechat_openid", words.gettext("Not a valid OpenID (6 to 64 letters, digits, underscores or hyphens)")
    if path.startswith("quiet_hours"):
        return "quiet", words.gettext(_QUIET_BOTH)
    return (path if path in _TEXT_FIELDS else "form"), invalid()


def check(t: Typed, catalogue: Catalogue, webhook_origins: tuple[str, ...],
          words: Words) -> tuple[NewSubscriber | None, dict[str, str]]:
    """The subscriber to store, or the errors by form field (the first for each field)."""
    sub, errors = validate_subscriber(_data(t, catalogue), catalogue, CHANNEL_CONTACTS, webhook_origins)
    shown: dict[str, str] = {}
    for error in errors:
        key, message = _placed(error, t, words)
        shown.setdefault(key, message)
    if not (t.email or t.phone):  # the contact a person proves, now and to manage it later
        shown.setdefault("email",
                         words.gettext("Give an e-mail address or a mobile number, to confirm your subscription."))
    if bool(t.quiet_start) != bool(t.quiet_end):
        shown.setdefault("quiet", words.gettext(_QUIET_BOTH))
    return (None if shown else sub), shown


def uscc_field(sub: NewSubscriber) -> str:
    """The form field of the organisation's USCC, where "someone else subscribed it" is shown."""
    return next((f"{g}.uscc" for g in sub.audiences if "uscc" in sub.audiences[g]), "form")


def _control(attribute: Attribute) -> str:
    if attribute.choices is not None:
        return "select"
    return {"boolean": "bool", "integer": "integer", "date": "date"}.get(attribute.type, "text")


def view(t: Typed, catalogue: Catalogue, locale: str, words: Words, errors: dict[str, str]) -> dict[str, Any]:
    """What the form template draws: every group with its attributes, the domains by category,
    the channels, frequencies and languages, each with what was chosen and any error."""
    groups = []
    for group in catalogue.groups.values():
        attrs = []
        for attribute in group.attributes.values():
            name = f"{group.slug}.{attribute.name}"
            attrs.append({
                "name": name, "id": "f-" + re.sub(r"[^a-z0-9]+", "-", name), "label": attribute.label.get(locale),
                "required": attribute.required, "control": _control(attribute), "value": t.attrs.get(name, ""),
                "choices": [(c.value, c.label.get(locale)) for c in attribute.choices or ()],
                "min": attribute.min, "max": attribute.max, "error": errors.get(name),
            })
        failing = any(a["error"] for a in attrs)
        groups.append({"slug": group.slug, "label": group.label.get(locale), "checked": group.slug in t.groups,
                       "open": group.slug in t.groups or failing, "attrs": attrs})
    categories = [
        {"slug": slug, "label": label.get(locale),
         "domains": [{"slug": d.slug, "label": d.label.get(locale), "checked": d.slug in t.domains}
                     for d in catalogue.domains.values() if d.category == slug]}
        for slug, label in catalogue.categories.items()
    ]
    return {
        "v": t, "errors": errors, "groups": groups, "categories": categories,
        "channels": [{"name": c, "label": words.gettext(CHANNEL_LABELS[c]), "checked": c in t.channels}
                     for c in CHANNEL_CONTACTS],
        "frequencies": [(f, words.gettext(FREQUENCY_LABELS[f])) for f in get_args(Frequency)],
        "locales": [(code, LANGUAGE_NAMES[code]) for code in LOCALES],
    }
