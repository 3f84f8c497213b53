"""A stored policy turned into the channel-neutral message the channels render."""

from __future__ import annotations

from typing import Any

from pushsvc.channels.base import PolicyMessage
from pushsvc.services import Services
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import get_policy


def page_url(public_url: str, policy_id: int) -> str:
    return f"{public_url}/p/{policy_id}"


def policy_message(svc: Services, policy: dict[str, Any], department: str) -> PolicyMessage:
    return PolicyMessage(
        policy_id=policy["id"],
        kind="policy",
        version=str(policy["revision"]),
        title=policy["title"],
        summary=policy["summary"],
        department=department,
        domain=policy["domain"],
        doc_number=policy["doc_number"],
        page_url=page_url(svc.settings.public_url, policy["id"]),
        source_url=policy["url"],
        interpretation_url=policy["interpretation_url"],
        produced_on=policy["produced_on"],
        effective_on=policy["effective_on"],
        expires_on=policy["expires_on"],
    )


async def load_message(svc: Services, policy_id: int) -> PolicyMessage | None:
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        if policy is None:
            return None
        department = await department_by_id(conn, policy["department_id"])
    return policy_message(svc, policy, department["name"] if department else "")
