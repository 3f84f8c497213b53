"""A department's policy as it answers for it: the stored row with its delivery counts, revisions,
notices and timeliness."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.errors import NotFound
from pushsvc.core.links import page_url
from pushsvc.core.models import ChannelCounts, NoticeOut, PolicyOut, RevisionOut, TimelinessOut
from pushsvc.core.timeliness import policy_timeliness, went_public
from pushsvc.services import Services
from pushsvc.store.policies import delivery_counts, get_policy, notices, revisions


async def own_policy(svc: Services, department_id: int | None, policy_id: int) -> dict[str, Any]:
    """The stored policy; `department_id` None (the operator) reads any. Another department's
    policy is NotFound, not Forbidden: its existence is not theirs to learn."""
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
    if policy is None or (department_id is not None and policy["department_id"] != department_id):
        raise NotFound("no such policy")
    return policy


async def policy_out(svc: Services, conn: AsyncConnection, policy: dict[str, Any]) -> PolicyOut:
    counts = await delivery_counts(conn, policy["id"], list(policy["channels"]))
    on_time = policy_timeliness(policy["produced_on"], went_public(policy["publish_at"], policy["created_at"]))
    return PolicyOut(
        **{k: policy[k] for k in PolicyOut.model_fields if k in policy},
        page_url=page_url(svc.settings.public_url, policy["id"]),
        deliveries={ch: ChannelCounts(**c) for ch, c in counts[0].items()},
        revisions=[RevisionOut(**r) for r in await revisions(conn, policy["id"])],
        notices=[
            NoticeOut(**n, deliveries={ch: ChannelCounts(**c) for ch, c in counts.get(n["seq"], {}).items()})
            for n in await notices(conn, policy["id"])
        ],
        timeliness=TimelinessOut.of(on_time) if on_time else None,
    )


async def current_view(svc: Services, policy_id: int) -> PolicyOut:
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        if policy is None:
            raise NotFound("no such policy")
        return await policy_out(svc, conn, policy)
