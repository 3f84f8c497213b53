"""Following a policy: a subscriber who proved their contact (a manage link or code) hears of the
policy's revisions, repeal and lapse like the people it reached (lifecycle.insert_notice adds
them), and can stop at any time from the manage pages."""

from __future__ import annotations

from typing import Any, Literal

from pushsvc.core.clock import now
from pushsvc.services import Services
from pushsvc.store import follows
from pushsvc.store.policies import get_policy

# A policy still in force can change: only those are worth following.
FOLLOWABLE_STATUSES = ("publishing", "published")
Followed = Literal["following", "not_in_force", "no_channel"]


def common_channels(policy: dict[str, Any], subscriber: dict[str, Any]) -> list[str]:
    """The channels a notice of the policy can reach the subscriber by."""
    return [c for c in policy["channels"] if c in subscriber["channels"]]


async def follow(svc: Services, policy_id: int, subscriber: dict[str, Any]) -> Followed:
    """`subscriber` as load_subscriber reads it. `no_channel`: the policy is sent by none of the
    channels the subscriber receives by, so following it would tell them nothing."""
    async with svc.db.write() as conn:
        policy = await get_policy(conn, policy_id)
        if policy is None or policy["status"] not in FOLLOWABLE_STATUSES or policy["test"]:
            return "not_in_force"
        if not common_channels(policy, subscriber):
            return "no_channel"
        await follows.follow(conn, policy_id, subscriber["id"], now())
    return "following"


async def unfollow(svc: Services, policy_id: int, subscriber_id: int) -> bool:
    async with svc.db.write() as conn:
        return await follows.unfollow(conn, policy_id, subscriber_id)


async def followed(svc: Services, subscriber_id: int) -> list[dict[str, Any]]:
    async with svc.db.read() as conn:
        return await follows.followed(conn, subscriber_id)
