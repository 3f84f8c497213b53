"""A stored policy turned into the channel-neutral message the channels render."""

from __future__ import annotations

from typing import Any

from pushsvc.channels.base import PolicyMessage
from pushsvc.services import Services
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import get_policy
from pushsvc.store.short_links import code_for


def policy_path(policy_id: int) -> str:
    return f"/p/{policy_id}"


def page_url(public_url: str, policy_id: int) -> str:
    return public_url + policy_path(policy_id)


def short_url(public_url: str, code: str) -> str:
    return f"{public_url}/s/{code}"


def policy_message(svc: Services, policy: dict[str, Any], department: str, code: str) -> PolicyMessage:
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
        short_url=short_url(svc.settings.public_url, code),
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
        code = await code_for(conn, policy_path(policy_id))
    assert code is not None, "a short link is issued with every policy"
    return policy_message(svc, policy, department["name"] if department else "", code)
