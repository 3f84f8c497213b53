"""Subscribers a department or the admin creates (they hold the consent, so the subscriber is
active at once) and reads back."""

from __future__ import annotations

from typing import Any

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pushsvc.core.subscribers import validate_subscriber
from pushsvc.services import Services
from pushsvc.store.subscribers import (
    HELD_ELSEWHERE,
    IDENTITY_PATHS,
    REFERENCE_TAKEN,
    find_duplicates,
    insert_subscribers,
    load_subscriber,
    references_held,
    supplied_by_caller,
)


async def create(svc: Services, body: Any, *, source: str, department_id: int | None) -> dict[str, Any]:
    """The stored subscriber (load_subscriber) for the API's subscriber `body`, supplied by the
    department (`department_id`) or the admin (None). Raises ValidationFailed, or Conflict when a
    contact is held already (never merged: the caller means a new record)."""
    sub, errors = validate_subscriber(body, svc.catalogue, CHANNEL_CONTACTS, svc.settings.webhook_origins)
    if sub is None:
        raise ValidationFailed(errors)
    async with svc.db.write() as conn:
        existing = await find_duplicates(conn, [sub])
        if existing:
            raise _held(existing, await supplied_by_caller(conn, existing.values(), department_id))
        if sub.external_id and await references_held(conn, department_id, [sub.external_id]):
            raise Conflict("a subscriber with this external_id exists", [FieldError("external_id", REFERENCE_TAKEN)])
        [sid] = await insert_subscribers(conn, [sub], status="active", source=source, department_id=department_id)
        row = await load_subscriber(conn, sid)
    assert row is not None
    return row


def _held(existing: dict[tuple[str, str], int], own: set[int]) -> Conflict:
    """The caller's own record is named (it may read it); any other is not, nor whose it is: the
    id would let a department read out who else holds a contact, and whether a person or which
    department supplied it."""
    if own.issuperset(existing.values()):
        errors = [FieldError(IDENTITY_PATHS[f], f"already belongs to subscriber {sid}") for (f, _), sid in existing.items()]
        return Conflict("a subscriber with this contact exists", errors, existing_id=next(iter(existing.values())))
    return Conflict("a subscriber with this contact exists", [FieldError(IDENTITY_PATHS[f], HELD_ELSEWHERE) for f, _ in existing])


async def read(svc: Services, sid: int, *, department_id: int | None) -> dict[str, Any]:
    """The subscriber for a department (`department_id`) or the admin (None). Raises NotFound."""
    async with svc.db.read() as conn:
        row = await load_subscriber(conn, sid)
    # A department sees the subscribers it created; their contacts are not its to browse otherwise.
    if row is None or row["status"] == "erased" or (department_id is not None and row["department_id"] != department_id):
        raise NotFound("no such subscriber")
    return row
