"""Why a subscriber is or is not reached by a policy: each rule of the match, passed or failed."""

from __future__ import annotations

from typing import Any

from pushsvc.core.errors import Conflict, NotFound
from pushsvc.core.models import ExplainOut
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import Targeting, evaluate, parse_targeting
from pushsvc.services import Services
from pushsvc.store.subscribers import load_subscriber


async def explain_match(svc: Services, policy: dict[str, Any], subscriber_id: int) -> ExplainOut:
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, subscriber_id)
    if sub is None or sub["status"] == "erased":
        raise NotFound("no such subscriber")
    targeting, _ = parse_targeting(policy["targeting"], svc.catalogue)
    if targeting is None:
        raise Conflict("the policy's targeting no longer fits the audience catalogue")
    return explain(targeting, policy, sub)


def explain(targeting: Targeting, policy: dict[str, Any], sub: dict[str, Any]) -> ExplainOut:
    checks: list[tuple[bool, str]] = []
    checks.append((sub["status"] == "active", f"subscriber status is '{sub['status']}' (must be 'active')"))
    groups = [g for g in targeting.audiences if g in sub["audiences"]]
    checks.append((bool(groups), f"member of the policy's audiences: {', '.join(groups) if groups else 'none of ' + ', '.join(targeting.audiences)}"))
    domain_ok = policy["domain"] in sub["domains"] or ALL_DOMAINS in sub["domains"]
    checks.append((domain_ok, f"subscribes to domain '{policy['domain']}': {'yes' if domain_ok else 'no'}"))
    reasons = [f"{'✓' if ok else '✗'} {text}" for ok, text in checks]
    matched = all(ok for ok, _ in checks)
    if targeting.where is not None:
        ok, lines = evaluate(targeting.where, sub["audiences"])
        reasons += [f"{'✓' if ok else '✗'} {line}" for line in lines]
        matched = matched and ok
    common = [c for c in policy["channels"] if c in sub["channels"]]
    reasons.append(f"{'✓' if common else '✗'} channels both allow: {', '.join(common) if common else 'none'}")
    return ExplainOut(matched=matched and bool(common), reasons=reasons)
