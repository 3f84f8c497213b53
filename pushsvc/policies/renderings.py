"""A draft as its recipients will see it: the message it becomes (a new policy's, or the notice a
revision or repeal sends to those who received the policy), rendered by each chosen channel in
each locale with the channels' own `preview`, as GET /v1/policies/{id}/render shows a stored one.
Nothing is stored; a draft that does not check yet has no renderings, only its errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, get_args

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError, NotFound, ValidationFailed
from pushsvc.core.messages import NoticeMessage, PolicyMessage
from pushsvc.core.models import Locale, PolicyRevisionIn, RepealIn
from pushsvc.core.policies import drafted, provisional_message
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.rendering import RenderError
from pushsvc.policies import lifecycle
from pushsvc.policies.messages import load_message
from pushsvc.policies.review import check_draft
from pushsvc.policies.validation import Publisher, _placeholder_link, checked_policy
from pushsvc.policies.view import own_policy
from pushsvc.services import Services

LOCALES: tuple[str, ...] = get_args(Locale)
# A policy's column -> the message field that carries it.
_MESSAGE_FIELD = {"url": "source_url"}


@dataclass(frozen=True)
class Rendering:
    channel: str
    locale: str
    shown: dict[str, Any]  # the channel's preview: e-mail subject/text/html, SMS text/parts/chars, WeChat bodies
    error: str | None = None


async def draft_message(svc: Services, publisher: Publisher, draft: dict[str, Any]) -> tuple[PolicyMessage, list[str]]:
    """(the message, the channels it goes by); raises ValidationFailed/Forbidden as submitting would."""
    await check_draft(svc, publisher, draft)
    body = draft["body"]
    if draft["kind"] == "new":
        data = checked_policy(svc, publisher, body).data
        message = provisional_message(data, publisher.name, svc.settings.public_url, _placeholder_link(svc))
        return drafted(message), list(dict.fromkeys(data.channels))
    policy = await own_policy(svc, publisher.department_id, draft["policy_id"])
    current = await load_message(svc, policy["id"])
    if current is None:
        raise NotFound("no such policy")
    if draft["kind"] == "repeal":
        repeal = RepealIn.model_validate(body)
        notice = NoticeMessage(**vars(current) | {"kind": "policy_repealed"}, notice=1, reason=repeal.reason,
                               repealed_on=repeal.repealed_on or local_date(now()))
        return drafted(notice), list(policy["channels"])
    change = PolicyRevisionIn.model_validate(body)
    given = change.model_dump(include=change.model_fields_set)
    changes = [{"field": f, "before": lifecycle.json_value(policy[f]), "after": lifecycle.json_value(v)}
               for f, v in given.items() if v != policy[f]]
    if not changes:
        raise ValidationFailed([FieldError("body", "every field given equals the current value: nothing to revise")])
    known = {f.name for f in dataclasses.fields(current)}
    revised = {_MESSAGE_FIELD.get(f, f): v for f, v in given.items() if _MESSAGE_FIELD.get(f, f) in known}
    notice = NoticeMessage(**vars(current) | revised | {"kind": "policy_revised"}, notice=1,
                           changes=tuple(lifecycle.told_changes(changes)))
    return drafted(notice), list(policy["channels"])


def render_all(svc: Services, message: PolicyMessage, channels: list[str]) -> list[Rendering]:
    """Each channel in each locale; a template that cannot render it is shown as its error."""
    out: list[Rendering] = []
    for name in channels:
        channel = svc.channels.get(name)
        for locale in LOCALES:
            if channel is None:
                out.append(Rendering(name, locale, {}, f"the channel {name} is not configured"))
                continue
            try:
                out.append(Rendering(name, locale, channel.preview(message, locale)))
            except RenderError as exc:
                out.append(Rendering(name, locale, {}, str(exc)))
    return out
