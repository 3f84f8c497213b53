"""Everything held about a subscriber, as the JSON file they download (PIPL's right of access)."""

from __future__ import annotations

import json

from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store.self_service import export


async def data_json(svc: Services, sid: int, actor: str | None = None) -> str | None:
    """None when the subscriber is gone. `actor` for the audit log: the person unless given."""
    async with svc.db.read() as conn:
        data = await export(conn, sid)
    if data is None:
        return None
    await audit.record(svc, actor or audit.person(sid), "subscriber.export", sid)
    return json.dumps(data, ensure_ascii=False, indent=2)
