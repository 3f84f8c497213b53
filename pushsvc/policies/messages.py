"""A stored policy, or one of its lifecycle notices, turned into the channel-neutral message the
channels render."""

from __future__ import annotations

from datetime import date
from typing import Any

from pushsvc.core.links import SHORT_VIAS, ShortLinks, page_url, policy_path, short_url, via_path
from pushsvc.core.messages import NoticeMessage, PolicyMessage
from pushsvc.services import Services
from pushsvc.store.departments import department_by_id
from pushsvc.store.policies import get_notice, get_policy
from pushsvc.store.short_links import code_for

DATE_FIELDS = frozenset({"produced_on", "effective_on", "expires_on"})


def _as_date(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value


def notice_message(message: PolicyMessage, notice: dict[str, Any]) -> NoticeMessage:
    """`notice` as stored (policy_notices): its details are JSON, so dates come back as text."""
    details = notice["details"]
    changes = tuple(
        {k: _as_date(v) if k in ("before", "after") and change["field"] in DATE_FIELDS else v
         for k, v in change.items()}
        for change in details.get("changes", ())
    )
    return NoticeMessage(
        **{**vars(message), "kind": f"policy_{notice['kind']}"},
        notice=notice["seq"],
        changes=changes,
        reason=details.get("reason", ""),
        repealed_on=_as_date(details.get("repealed_on")),
    )


def policy_message(svc: Services, policy: dict[str, Any], department: str, code: str,
                   codes: dict[str, str | None]) -> PolicyMessage:
    """`code`: the policy's short link; `codes`: its code per short-link reader (sms, wechat, qr),
    None for a policy published before they were issued (its readers get `code`, counted as `link`)."""
    public = svc.settings.public_url
    links = ShortLinks(**{via: short_url(public, c) for via, c in codes.items() if c})
    return PolicyMessage(
        policy_id=policy["id"],
        kind="policy",
        version=str(policy["revision"]),
        title=policy["title"],
        summary=policy["summary"],
        department=department,
        domain=policy["domain"],
        doc_number=policy["doc_number"],
        page_url=page_url(public, policy["id"]),
        short_url=short_url(public, code),
        source_url=policy["url"],
        interpretation_url=policy["interpretation_url"],
        produced_on=policy["produced_on"],
        effective_on=policy["effective_on"],
        expires_on=policy["expires_on"],
        test=policy["test"],
        short_links=links,
    )


async def load_message(svc: Services, policy_id: int, notice: int = 0, *, to_send: bool = False) -> PolicyMessage | None:
    """The policy's message (notice 0) or its n-th notice's; None if either is gone. `to_send`:
    also None for the policy's own message once it is repealed or lapsed, so that nothing that
    brings its rows back (a retry of the failed ones, a lease run out) announces it again."""
    async with svc.db.read() as conn:
        policy = await get_policy(conn, policy_id)
        if policy is None:
            return None
        department = await department_by_id(conn, policy["department_id"])
        code = await code_for(conn, policy_path(policy_id))
        codes = {via: await code_for(conn, via_path(policy_id, via)) for via in SHORT_VIAS}
        told = await get_notice(conn, policy_id, notice) if notice else None
    assert code is not None, "a short link is issued with every policy"
    message = policy_message(svc, policy, department["name"] if department else "", code, codes)
    if not notice:
        return None if to_send and policy["status"] in ("repealed", "lapsed") else message
    return notice_message(message, told) if told else None
