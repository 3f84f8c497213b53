"""Everything held about a subscriber, as the JSON file they download (PIPL's right of access)."""

from __future__ import annotations

import json

from pushsvc.services import Services
from pushsvc.store.self_service import export


async def data_json(svc: Services, sid: int) -> str | None:
    """None when the subscriber is gone."""
    async with svc.db.read() as conn:
        data = await export(conn, sid)
    return None if data is None else json.dumps(data, ensure_ascii=False, indent=2)
