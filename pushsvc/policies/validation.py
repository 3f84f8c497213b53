"""What a department may publish, and what it may tell: a policy body checked against the
catalogue, the department's domains and the channels; every chosen channel rendering it (or its
lifecycle notice) in every locale; an SMS within its part limit. All before anything is stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.errors import FieldError, Forbidden, ValidationFailed
from pushsvc.core.messages import NoticeMessage
from pushsvc.core.models import Locale, PolicyIn
from pushsvc.core.policies import CheckedPolicy, DomainNotAllowed, check_policy, drafted, provisional_message
from pushsvc.core.rendering import RenderError
from pushsvc.policies.fallback import fallback_errors, sending_channels
from pushsvc.policies.rules import check_sms_parts
from pushsvc.services import Services
from pushsvc.store.short_links import LENGTH as SHORT_CODE_LENGTH

CHANNELS = tuple(CHANNEL_CONTACTS)


@dataclass(frozen=True)
class Publisher:
    """Who publishes or changes a policy: a department, or the operator (no id, any domain)."""

    department_id: int | None
    name: str
    domains: tuple[str, ...] | None  # None: every domain
    may_send_urgent: bool = False  # the admin's grant (departments.may_send_urgent)


def checked_policy(svc: Services, publisher: Publisher, raw: Any) -> CheckedPolicy:
    """`raw` (a request body) as a policy the publisher may send; raises ValidationFailed (422,
    naming the field) or Forbidden (a domain not the department's, urgent without the right)."""
    try:
        checked, errors = check_policy(raw, svc.catalogue, CHANNELS, None if publisher.domains is None else list(publisher.domains))
    except DomainNotAllowed as exc:
        raise Forbidden(f"this department does not publish in the domain '{exc}'",
                        [FieldError("domain", "not one of the department's domains")]) from None
    if checked is None:
        raise ValidationFailed(errors)
    if errors := fallback_errors(checked.data, CHANNELS):
        raise ValidationFailed(errors)
    if checked.data.priority == "urgent" and not publisher.may_send_urgent:
        raise Forbidden("this department may not publish urgent policies: the admin grants that right",
                        [FieldError("priority", "urgent is not granted to this department")])
    # A fallback channel carries the policy too: it must render and fit like the policy's own.
    sent_on = checked.data.model_copy(update={"channels": sending_channels(checked.data)})
    check_sms_parts(svc.channels, svc.settings, sent_on, publisher.name)
    _check_templates(svc, sent_on, publisher.name)
    return checked


def _placeholder_link(svc: Services) -> str:
    """The short link is issued with the stored policy: one of its length stands in before."""
    return f"{svc.settings.public_url}/s/{'x' * SHORT_CODE_LENGTH}"


def _check_templates(svc: Services, data: PolicyIn, department: str) -> None:
    """Every chosen channel renders the policy in every locale now, or the publish is a 422."""
    message = provisional_message(data, department, svc.settings.public_url, _placeholder_link(svc))
    for i, name in enumerate(data.channels):
        for locale in get_args(Locale):
            try:
                svc.channels[name].preview(message, locale)
            except RenderError as exc:
                raise ValidationFailed([FieldError(f"channels[{i}]", f"the {name} templates cannot render it: {exc}")]) from None


def check_notice(svc: Services, data: PolicyIn, department: str, field: str, kind: str, **told: Any) -> None:
    """The notice renders on every channel of the policy in every locale, and fits an SMS, or
    ValidationFailed naming `field`."""
    limit = svc.settings.sms_max_parts
    base = provisional_message(data, department, svc.settings.public_url, _placeholder_link(svc))
    message = drafted(NoticeMessage(**vars(base) | {"kind": f"policy_{kind}"}, notice=1, **told))
    for i, name in enumerate(sending_channels(data)):  # those told by a fallback channel hear on it again
        for locale in get_args(Locale):
            try:
                shown = svc.channels[name].preview(message, locale)
            except RenderError as exc:
                raise ValidationFailed([FieldError(f"channels[{i}]", f"the {name} templates cannot render the notice: {exc}")]) from None
            if shown.get("parts", 0) > limit:
                raise ValidationFailed([FieldError(field, f"the {locale} SMS telling recipients would take {shown['parts']} "
                                                          f"parts; at most {limit} are allowed")])
