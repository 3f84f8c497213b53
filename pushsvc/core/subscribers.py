"""Validation of a subscriber against the catalogue and the channels: normalised, or errors by field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.errors import FieldError
from pushsvc.core.identifiers import normalise_email, normalise_phone
from pushsvc.core.models import SubscriberIn, pydantic_errors

ALL_DOMAINS = "*"
# The attribute that identifies an organisation across groups: one USCC per subscriber.
IDENTITY_ATTRIBUTE = "uscc"


@dataclass(frozen=True)
class Contacts:
    """What a channel may address; `channel_contacts` maps each channel to the one it needs."""

    email: str | None = None
    phone: str | None = None
    wechat_openid: str | None = None
    wechat_webhook: str | None = None


ChannelContacts = Mapping[str, Callable[[Contacts], str | None]]


@dataclass(frozen=True)
class NewSubscriber:
    name: str | None
    contacts: Contacts
    uscc: str | None
    audiences: dict[str, dict[str, Any]]
    domains: tuple[str, ...]
    channels: tuple[str, ...]
    frequency: str = "immediate"
    locale: str = "zh-CN"
    quiet_start: int | None = None
    quiet_end: int | None = None
    external_id: str | None = None  # the supplying department's reference


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def check_webhook_url(url: str, allowed_origins: tuple[str, ...]) -> str:
    """Robot webhooks are called by our workers: only https to an allow-listed origin, never an
    address of the operator's own network. Plain http only to an origin listed with http://
    (a local stand-in server)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an https:// URL")
    origin = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    if parts.scheme == "http" and origin not in allowed_origins:
        raise ValueError("must be an https:// URL")
    if origin not in allowed_origins:
        raise ValueError(f"host is not allowed for robot webhooks (allowed: {', '.join(allowed_origins)})")
    return url


def validate_subscriber(
    data: Any,
    catalogue: Catalogue,
    channel_contacts: ChannelContacts,
    webhook_origins: tuple[str, ...],
) -> tuple[NewSubscriber | None, list[FieldError]]:
    try:
        sub = SubscriberIn.model_validate(data)
    except ValidationError as exc:
        return None, pydantic_errors(exc)
    errors: list[FieldError] = []

    def checked(path: str, fn: Callable[[str], str], raw: str | None) -> str | None:
        if raw is None or raw.strip() == "":
            return None
        try:
            return fn(raw)
        except ValueError as exc:
            errors.append(FieldError(path, str(exc)))
            return None

    wechat = sub.wechat
    contacts = Contacts(
        email=checked("email", normalise_email, sub.email),
        phone=checked("phone", normalise_phone, sub.phone),
        wechat_openid=wechat.openid if wechat else None,
        wechat_webhook=checked(
            "wechat.webhook_url", lambda u: check_webhook_url(u, webhook_origins), wechat.webhook_url if wechat else None
        ),
    )

    audiences: dict[str, dict[str, Any]] = {}
    usccs: set[str] = set()
    for slug, attrs in sub.audiences.items():
        group = catalogue.groups.get(slug)
        if group is None:
            errors.append(FieldError(f"audiences.{slug}", f"unknown audience group '{slug}'"))
            continue
        clean, group_errors = group.validate(attrs)
        errors.extend(FieldError(f"audiences.{slug}.{e.field}", e.message) for e in group_errors)
        audiences[slug] = clean
        if isinstance(clean.get(IDENTITY_ATTRIBUTE), str):
            usccs.add(clean[IDENTITY_ATTRIBUTE])
    if len(usccs) > 1:
        errors.append(FieldError("audiences", "the groups give different USCCs for one subscriber"))

    domains = list(dict.fromkeys(sub.domains))
    if ALL_DOMAINS in domains and len(domains) > 1:
        errors.append(FieldError("domains", "'*' (all domains) cannot be combined with other domains"))
    for i, slug in enumerate(domains):
        if slug != ALL_DOMAINS and slug not in catalogue.domains:
            errors.append(FieldError(f"domains[{i}]", f"unknown policy domain '{slug}'"))

    channels = list(dict.fromkeys(sub.channels))
    for i, name in enumerate(channels):
        contact_of = channel_contacts.get(name)
        if contact_of is None:
            errors.append(FieldError(f"channels[{i}]", f"unknown channel '{name}' (known: {', '.join(channel_contacts)})"))
        elif contact_of(contacts) is None:
            errors.append(FieldError(f"channels[{i}]", f"channel '{name}' needs a contact for it"))

    if errors:
        return None, errors
    quiet = sub.quiet_hours
    return (
        NewSubscriber(
            name=sub.name.strip() if sub.name else None,
            contacts=contacts,
            uscc=next(iter(usccs), None),
            audiences=audiences,
            domains=tuple(domains),
            channels=tuple(channels),
            frequency=sub.frequency,
            locale=sub.locale,
            quiet_start=_minutes(quiet.start) if quiet else None,
            quiet_end=_minutes(quiet.end) if quiet else None,
            external_id=sub.external_id.strip() if sub.external_id else None,
        ),
        [],
    )


def csv_row_to_subscriber(row: Mapping[str, str | None]) -> dict[str, Any]:
    """Map one CSV row to the JSON shape of POST /v1/subscribers.

    Columns: name, email, phone, wechat_openid, wechat_webhook, domains, channels (both
    separated by ';'), frequency, locale, quiet_hours (HH:MM-HH:MM), external_id, and `<group>.<attribute>`
    for audience attributes: a non-empty one makes the row a member of that group.
    """
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        return value or None

    def listed(name: str) -> list[str]:
        return [part.strip() for part in (cell(name) or "").split(";") if part.strip()]

    data: dict[str, Any] = {"audiences": {}, "domains": listed("domains"), "channels": listed("channels")}
    for name in ("name", "email", "phone", "frequency", "locale", "external_id"):
        if cell(name) is not None:
            data[name] = cell(name)
    if cell("wechat_openid") or cell("wechat_webhook"):
        data["wechat"] = {"openid": cell("wechat_openid"), "webhook_url": cell("wechat_webhook")}
    if cell("quiet_hours"):
        start, _, end = (cell("quiet_hours") or "").partition("-")
        data["quiet_hours"] = {"start": start.strip(), "end": end.strip()}
    for column, value in row.items():
        if column and "." in column and value is not None and value.strip():
            group, attr = column.split(".", 1)
            data["audiences"].setdefault(group.strip(), {})[attr.strip()] = value.strip()
    return data
