"""Why a subscriber is or is not reached by a policy: each rule of the match, passed or failed.

What the caller sees follows who supplied the record: the admin and the department that supplied
it see the subscriber's values (status, groups, attribute values, channels); another department
sees only whether each rule passed. An id a department may not see and one that does not exist (or
was erased) answer alike: the latter is explained as a record holding nothing, which every rule
fails, as a record of someone in none of the policy's groups does; a 404 would tell which ids exist.
"""

from __future__ import annotations

from typing import Any

from pushsvc.core.errors import Conflict, NotFound
from pushsvc.core.models import ExplainOut
from pushsvc.core.subscribers import ALL_DOMAINS
from pushsvc.core.targeting import Targeting, evaluate, parse_targeting
from pushsvc.services import Services
from pushsvc.store.subscribers import load_subscriber

# What an unknown or erased id is explained as, for a department.
NOBODY: dict[str, Any] = {"status": "", "audiences": {}, "domains": [], "channels": []}


async def explain_match(svc: Services, policy: dict[str, Any], subscriber_id: int, *,
                        department_id: int | None) -> ExplainOut:
    """For the department `department_id` (its own policy), or the admin (None: 404 for no such
    subscriber, which only the admin is told)."""
    async with svc.db.read() as conn:
        sub = await load_subscriber(conn, subscriber_id)
    if sub is not None and sub["status"] == "erased":
        sub = None
    if sub is None and department_id is None:
        raise NotFound("no such subscriber")
    targeting, _ = parse_targeting(policy["targeting"], svc.catalogue)
    if targeting is None:
        raise Conflict("the policy's targeting no longer fits the audience catalogue")
    with_values = department_id is None or (sub is not None and sub["department_id"] == department_id)
    return explain(targeting, policy, sub or NOBODY, with_values=with_values)


def explain(targeting: Targeting, policy: dict[str, Any], sub: dict[str, Any], *, with_values: bool) -> ExplainOut:
    checks: list[tuple[bool, str]] = []
    groups = [g for g in targeting.audiences if g in sub["audiences"]]
    domain_ok = policy["domain"] in sub["domains"] or ALL_DOMAINS in sub["domains"]
    common = [c for c in policy["channels"] if c in sub["channels"]]
    if with_values:
        checks.append((sub["status"] == "active", f"subscriber status is '{sub['status']}' (must be 'active')"))
        checks.append((bool(groups), f"member of the policy's audiences: {', '.join(groups) if groups else 'none of ' + ', '.join(targeting.audiences)}"))
    else:
        checks.append((sub["status"] == "active", "subscriber status must be 'active'"))
        checks.append((bool(groups), f"member of one of the policy's audiences ({', '.join(targeting.audiences)})"))
    checks.append((domain_ok, f"subscribes to domain '{policy['domain']}': {'yes' if domain_ok else 'no'}"))
    reasons = [f"{'✓' if ok else '✗'} {text}" for ok, text in checks]
    matched = all(ok for ok, _ in checks)
    if targeting.where is not None:
        ok, lines = evaluate(targeting.where, sub["audiences"], with_values=with_values)
        reasons += [f"{'✓' if ok else '✗'} {line}" for line in lines]
        matched = matched and ok
    shown = (', '.join(common) if common else 'none') if with_values else ('yes' if common else 'no')
    reasons.append(f"{'✓' if common else '✗'} channels both allow: {shown}")
    return ExplainOut(matched=matched and bool(common), reasons=reasons)
