"""Publishing: a checked policy stored with its short link (and the Idempotency-Key's answer) in
one transaction, then its fan-out enqueued, now or at publish_at."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pushsvc.core.clock import now
from pushsvc.core.errors import Conflict
from pushsvc.core.links import policy_targets
from pushsvc.core.timeliness import went_public
from pushsvc.jobs import enqueue_fanout
from pushsvc.policies.search import keep_indexed
from pushsvc.policies.validation import Publisher, checked_policy
from pushsvc.policies.view import policy_out
from pushsvc.services import Services
from pushsvc.store.policies import get_policy, idempotent_response, insert_policy, remember_response
from pushsvc.store.short_links import short_code

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """What the publish request is answered with: the policy's view (or the first answer to the
    same Idempotency-Key, `replayed`)."""

    policy_id: int
    status: int
    body: dict[str, Any]
    replayed: bool = False


async def publish(svc: Services, publisher: Publisher, raw: Any, idempotency_key: str | None,
                  test: bool = False) -> Published:
    """Store and start sending `raw` (a request body). A repeat with the same key returns the first
    answer and starts nothing; the same key with another body is a Conflict. `test`: published
    with a test key, so the simulator answers for every recipient (pushsvc.delivery.simulator)."""
    assert publisher.department_id is not None, "a policy belongs to a department"
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    if idempotency_key is not None:
        replay = await _replay(svc, publisher.department_id, idempotency_key, digest)
        if replay is not None:
            return replay
    checked = checked_policy(svc, publisher, raw)
    at = now()
    status = checked.initial_status(at)
    try:
        async with svc.db.write() as conn:
            policy_id = await insert_policy(conn, publisher.department_id, {**checked.row(), "test": test}, status)
            for target in policy_targets(policy_id):  # its page's, and one per channel reading it
                await short_code(conn, target)
            await keep_indexed(svc, conn, policy_id, went_public(checked.data.publish_at, at))
            policy = await get_policy(conn, policy_id)
            assert policy is not None
            body = json.loads((await policy_out(svc, conn, policy)).model_dump_json())
            if idempotency_key is not None:
                await remember_response(conn, publisher.department_id, idempotency_key, digest, 202, body)
    except sa.exc.IntegrityError:
        # The same key raced us; the winner's answer stands and this request wrote nothing.
        replay = await _replay(svc, publisher.department_id, idempotency_key or "", digest)
        if replay is None:
            raise
        return replay
    try:
        await enqueue_fanout(svc.redis, policy_id, at=checked.data.publish_at if status == "scheduled" else None,
                             urgent=checked.data.priority == "urgent")
    except Exception:
        # The database holds the policy; the sweeper enqueues it once Redis is back.
        log.warning("policy %s stored but its fan-out could not be enqueued now", policy_id, exc_info=True)
    return Published(policy_id, 202, body)


async def _replay(svc: Services, department_id: int, key: str, digest: str) -> Published | None:
    async with svc.db.read() as conn:
        stored = await idempotent_response(conn, department_id, key)
    if stored is None:
        return None
    if stored["request_hash"] != digest:
        raise Conflict("this Idempotency-Key was used with a different request")
    return Published(stored["response"]["id"], stored["status_code"], stored["response"], replayed=True)
