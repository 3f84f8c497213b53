"""Subscribers a department or the admin creates (they hold the consent, so the subscriber is
active at once) and reads back."""

from __future__ import annotations

from typing import Any

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pushsvc.core.subscribers import validate_subscriber
from pushsvc.services import Services
from pushsvc.store.subscribers import IDENTITY_PATHS, find_duplicates, insert_subscribers, load_subscriber


async def create(svc: Services, body: Any, *, source: str, department_id: int | None) -> dict[str, Any]:
    """The stored subscriber (load_subscriber) for the API's subscriber `body`. Raises
    ValidationFailed, or Conflict naming the subscriber a contact already belongs to."""
    sub, errors = validate_subscriber(body, svc.catalogue, CHANNEL_CONTACTS, svc.settings.webhook_origins)
    if sub is None:
        raise ValidationFailed(errors)
    async with svc.db.write() as conn:
        existing = await find_duplicates(conn, [sub])
        if existing:
            conflicts = [FieldError(IDENTITY_PATHS[f], f"already belongs to subscriber {sid}") for (f, _), sid in existing.items()]
            raise Conflict("a subscriber with this contact exists", conflicts, existing_id=next(iter(existing.values())))
        [sid] = await insert_subscribers(conn, [sub], status="active", source=source, department_id=department_id)
        row = await load_subscriber(conn, sid)
    assert row is not None
    return row


async def read(svc: Services, sid: int, *, department_id: int | None) -> dict[str, Any]:
    """The subscriber for a department (`department_id`) or the admin (None). Raises NotFound."""
    async with svc.db.read() as conn:
        row = await load_subscriber(conn, sid)
    # A department sees the subscribers it created; their contacts are not its to browse otherwise.
    if row is None or row["status"] == "erased" or (department_id is not None and row["department_id"] != department_id):
        raise NotFound("no such subscriber")
    return row
