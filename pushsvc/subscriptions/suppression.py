"""The suppression list as the features use it: put contacts on it (an R reply, a provider's
word that a number is invalid, a bounce, a refusal), lift one when its owner proves it again on
the pages, and read it (an operator's view: kinds, reasons and dates; contacts only as digests)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.clock import now
from pushsvc.core.verification import ContactKeys
from pushsvc.services import Services
from pushsvc.store import suppressions
from pushsvc.store.suppressions import ContactKind, Reason

# A proof names the kind of contact it proves as the pages do ("email", "phone").
_PROVEN_KIND: dict[str, ContactKind] = {"email": "email", "phone": "phone"}


async def add(svc: Services, conn: AsyncConnection, kind: ContactKind, contacts: Iterable[str], reason: Reason,
              detail: str | None = None) -> None:
    """Within the caller's transaction: nothing is pushed to these contacts until lifted."""
    await suppressions.add(conn, ContactKeys(svc.settings.secret_key), kind, contacts, reason, detail, now())


async def lift_proven(svc: Services, conn: AsyncConnection, proven: str, contact: str) -> bool:
    """Within the caller's transaction: `contact` (a `proven` kind of contact: email or phone) was
    just proven by its owner, so it may be pushed to again. Whether it was suppressed."""
    kind = _PROVEN_KIND.get(proven)
    if kind is None:
        return False
    return await suppressions.lift(conn, ContactKeys(svc.settings.secret_key), kind, contact, now())


async def listing(svc: Services, kind: ContactKind | None = None, after_id: int = 0,
                  limit: int = 100) -> list[dict[str, Any]]:
    """Open suppressions, oldest first, `limit` after `after_id`."""
    async with svc.db.read() as conn:
        return await suppressions.open_ones(conn, kind, after_id, limit)
