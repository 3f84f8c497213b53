"""A department's roster: its own subscriber records searched, read, corrected and erased. One set
of functions behind both the API (`/v1/subscribers`) and the console (`/console/roster`).

Who sees what (README "Who sees what"): a department reads and changes only the records it
supplied; any other answers NotFound, as one that does not exist. The admin and the city's
overseers read every record (`everyone`); a change is the supplier's alone. Every record returned
is an audited read, every change and erasure an audited act.

A correction is checked as a new record is (`validate_subscriber`) once the fields given are laid
over the record, and the person's own choices win as they do for a re-import
(`pushsvc.store.subscribers`): once the person has used the self-service pages only the
department's reference (`external_id`) may change, and a channel anyone withdrew stays off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pushsvc.core.identifiers import normalise_phone
from pushsvc.core.models import SubscriberPatch, pydantic_errors
from pushsvc.core.subscribers import NewSubscriber, validate_subscriber
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store.subscribers import (
    REFERENCE_TAKEN,
    correct,
    find_duplicates,
    find_subscribers,
    load_subscriber,
    load_subscribers,
    person_choices,
    references_held,
    supplied_by_caller,
)
from pushsvc.subscriptions import changes
from pushsvc.subscriptions.subscribers import _held

# The statuses a listing may ask for; an erased record is never listed.
STATUSES = ("pending", "active", "paused", "unsubscribed")
MAX_QUERY = 200
PERSON_SET = "the person has set their own choices on the self-service pages; only they can change this"
WITHDRAWN = "was withdrawn by or for the person; only they can turn it back on"
_SEPARATORS = re.compile(r"[\s\-()]+")


@dataclass(frozen=True)
class Viewer:
    """Whose roster: a department (`department_id`), or the admin (None). `everyone`: may read every
    department's records (the admin, a city overseer). `actor` and `source` for the audit log and
    the consent records."""

    department_id: int | None
    actor: str
    source: str
    everyone: bool = False


def _minutes_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def stored_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record (load_subscriber) in the shape POST /v1/subscribers takes."""
    wechat = None
    if row["wechat_openid"] or row["wechat_webhook"]:
        wechat = {"openid": row["wechat_openid"], "webhook_url": row["wechat_webhook"]}
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = {"start": _minutes_text(row["quiet_start"]), "end": _minutes_text(row["quiet_end"])}
    return {
        "name": row["name"], "email": row["email"], "phone": row["phone"], "wechat": wechat,
        "audiences": row["audiences"], "domains": row["domains"], "channels": row["channels"],
        "frequency": row["frequency"], "locale": row["locale"], "quiet_hours": quiet,
        "external_id": row["external_id"],
    }


def _search_words(q: str) -> list[str]:
    """What `q` may be stored as: itself, without a phone number's separators, and as a whole
    phone number in the stored (E.164) form."""
    words = {q, _SEPARATORS.sub("", q)}
    try:
        words.add(normalise_phone(q))
    except ValueError:
        pass
    return sorted(w for w in words if w)


async def search(
    svc: Services, viewer: Viewer, *, q: str | None = None, audience: str | None = None, status: str | None = None,
    external_id: str | None = None, after_id: int = 0, limit: int = 100,
) -> list[dict[str, Any]]:
    """The viewer's records matching every filter given, in id order after `after_id`: `q` in the
    name, e-mail, phone or USCC. Raises ValidationFailed naming a bad filter."""
    errors = []
    q = (q or "").strip()
    if len(q) > MAX_QUERY:
        errors.append(FieldError("q", f"may be at most {MAX_QUERY} characters"))
    if audience and audience not in svc.catalogue.groups:
        errors.append(FieldError("audience", f"unknown audience group '{audience}'"))
    if status and status not in STATUSES:
        errors.append(FieldError("status", f"must be one of {', '.join(STATUSES)}"))
    if external_id is not None and len(external_id) > 100:
        errors.append(FieldError("external_id", "may be at most 100 characters"))
    if errors:
        raise ValidationFailed(errors)
    async with svc.db.write() as conn:
        ids = await find_subscribers(
            conn, department_id=viewer.department_id, everyone=viewer.everyone, words=_search_words(q) if q else [],
            audience=audience or None, status=status or None, external_id=external_id or None, after_id=after_id,
            limit=limit,
        )
        rows = await load_subscribers(conn, ids)
        if rows:
            await audit.record(conn, viewer.actor, "subscriber.list", [r["id"] for r in rows])
    return rows


async def read(svc: Services, viewer: Viewer, sid: int) -> dict[str, Any]:
    """One record the viewer may read, its reading audited. Raises NotFound."""
    async with svc.db.write() as conn:
        row = await load_subscriber(conn, sid)
        if row is None or row["status"] == "erased" or not (viewer.everyone or await _own(conn, viewer, sid)):
            raise NotFound("no such subscriber")
        await audit.record(conn, viewer.actor, "subscriber.read", sid, for_department=row["department_id"])
    return row


async def _own(conn: Any, viewer: Viewer, sid: int) -> bool:
    return sid in await supplied_by_caller(conn, [sid], viewer.department_id)


def _differences(before: NewSubscriber, after: NewSubscriber) -> set[str]:
    """The fields (as the API names them) whose values differ."""
    b, a = before, after
    pairs = {
        "name": (b.name, a.name),
        "email": (b.contacts.email, a.contacts.email),
        "phone": (b.contacts.phone, a.contacts.phone),
        "wechat": ((b.contacts.wechat_openid, b.contacts.wechat_webhook), (a.contacts.wechat_openid, a.contacts.wechat_webhook)),
        "audiences": ((b.audiences, b.uscc), (a.audiences, a.uscc)),
        "domains": (set(b.domains), set(a.domains)),
        "channels": (set(b.channels), set(a.channels)),
        "frequency": (b.frequency, a.frequency),
        "locale": (b.locale, a.locale),
        "quiet_hours": ((b.quiet_start, b.quiet_end), (a.quiet_start, a.quiet_end)),
        "external_id": (b.external_id, a.external_id),
    }
    return {name for name, (x, y) in pairs.items() if x != y}


def _validated(svc: Services, body: dict[str, Any]) -> tuple[NewSubscriber | None, list[FieldError]]:
    return validate_subscriber(body, svc.catalogue, CHANNEL_CONTACTS, svc.settings.webhook_origins)


async def update(svc: Services, viewer: Viewer, sid: int, patch: Any) -> dict[str, Any]:
    """Correct one of the viewer's own records with the fields `patch` gives (the module's
    docstring). Raises NotFound, ValidationFailed (naming the field) or Conflict (a contact or
    reference held by another record, or a choice that is the person's)."""
    if not isinstance(patch, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    try:
        given = SubscriberPatch.model_validate(patch).model_fields_set
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc)) from None
    try:
        async with svc.db.write() as conn:
            row = await load_subscriber(conn, sid)
            if row is None or row["status"] == "erased" or not await _own(conn, viewer, sid):
                raise NotFound("no such subscriber")
            before, _ = _validated(svc, stored_body(row))
            sub, errors = _validated(svc, {**stored_body(row), **{k: patch[k] for k in given}})
            if sub is None:
                raise ValidationFailed(errors)
            changed = _differences(before, sub) if before is not None else set(given)
            await _check_change(conn, viewer, sid, row, sub, changed)
            if changed:
                await correct(conn, sid, sub, viewer.source)
                await audit.record(conn, viewer.actor, "subscriber.change", sid, fields=sorted(changed))
            row = await load_subscriber(conn, sid)
    except IntegrityError:  # a contact or reference taken by another write between the checks and this one
        raise Conflict("another subscriber record took one of these values meanwhile; try again") from None
    assert row is not None
    return row


async def _check_change(conn: Any, viewer: Viewer, sid: int, row: Mapping[str, Any], sub: NewSubscriber,
                        changed: set[str]) -> None:
    choices = await person_choices(conn, sid)
    refused = [FieldError(name, PERSON_SET) for name in sorted(changed - {"external_id"})] if choices.on_pages else []
    refused += [FieldError(f"channels[{i}]", WITHDRAWN) for i, channel in enumerate(sub.channels)
                if channel in choices.withdrawn and channel not in row["channels"]]
    if refused:
        raise Conflict("the person's own choices win", refused)
    duplicates = {key: owner for key, owner in (await find_duplicates(conn, [sub])).items() if owner != sid}
    if duplicates:
        raise _held(duplicates, await supplied_by_caller(conn, duplicates.values(), viewer.department_id))
    if sub.external_id and (await references_held(conn, viewer.department_id, [sub.external_id])).get(
            sub.external_id, sid) != sid:
        raise Conflict("a subscriber with this external_id exists", [FieldError("external_id", REFERENCE_TAKEN)])


async def erase(svc: Services, viewer: Viewer, sid: int) -> None:
    """Erase one of the viewer's own records, as a person's erasure does (PIPL). Raises NotFound."""
    async with svc.db.read() as conn:
        row = await load_subscriber(conn, sid)
        if row is None or row["status"] == "erased" or not await _own(conn, viewer, sid):
            raise NotFound("no such subscriber")
    await changes.erase(svc, sid, viewer.source, actor=viewer.actor)
