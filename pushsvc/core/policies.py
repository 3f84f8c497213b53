"""A policy request checked against the catalogue, the department's domains and the channels."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import ValidationError

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.errors import FieldError
from pushsvc.core.links import page_url
from pushsvc.core.messages import PolicyMessage
from pushsvc.core.models import PolicyIn, pydantic_errors
from pushsvc.core.targeting import Targeting, parse_targeting, targeting_to_json

M = TypeVar("M", bound=PolicyMessage)


class DomainNotAllowed(Exception):
    """The department may not publish in this domain (HTTP 403, not a validation error)."""


@dataclass(frozen=True)
class CheckedPolicy:
    data: PolicyIn
    targeting: Targeting

    def row(self) -> dict[str, Any]:
        """Column values for the policies table."""
        fields = self.data.model_dump(exclude={"targeting", "channels"})
        fields["targeting"] = targeting_to_json(self.targeting)
        fields["channels"] = list(dict.fromkeys(self.data.channels))
        return fields

    def initial_status(self, at: datetime) -> str:
        publish_at = self.data.publish_at
        return "scheduled" if publish_at is not None and publish_at > at else "publishing"


def check_policy(
    raw: Any, catalogue: Catalogue, channels: tuple[str, ...], allowed_domains: list[str] | None
) -> tuple[CheckedPolicy | None, list[FieldError]]:
    """`allowed_domains` None means any (the admin); raises DomainNotAllowed for a known domain
    outside the department's list."""
    try:
        data = PolicyIn.model_validate(raw)
    except ValidationError as exc:
        return None, pydantic_errors(exc)
    errors: list[FieldError] = []
    if data.domain not in catalogue.domains:
        errors.append(FieldError("domain", f"unknown policy domain '{data.domain}'"))
    if data.disclosure != "proactive":
        errors.append(FieldError("disclosure", "only proactively disclosed (主动公开) items are pushed"))
    for i, name in enumerate(data.channels):
        if name not in channels:
            errors.append(FieldError(f"channels[{i}]", f"unknown channel '{name}' (known: {', '.join(channels)})"))
    if data.effective_on and data.expires_on and data.expires_on < data.effective_on:
        errors.append(FieldError("expires_on", "is before effective_on"))
    if data.publish_at and data.publish_at.astimezone(timezone.utc).year > 9000:
        errors.append(FieldError("publish_at", "is too far in the future"))
    targeting, targeting_errors = parse_targeting(raw.get("targeting") if isinstance(raw, dict) else None, catalogue)
    errors.extend(targeting_errors)
    if errors or targeting is None:
        return None, errors
    if allowed_domains is not None and data.domain not in allowed_domains:
        raise DomainNotAllowed(data.domain)
    return CheckedPolicy(data, targeting), []


def provisional_message(data: PolicyIn, department: str, public_url: str, short_url: str) -> PolicyMessage:
    """The message a policy will become, before it is stored: publish-time checks render it so that a
    template that cannot render it, or an SMS too long, is a 422 before anything is queued."""
    fields = data.model_dump(include={"title", "summary", "domain", "doc_number", "produced_on",
                                      "effective_on", "expires_on", "interpretation_url"})
    return drafted(PolicyMessage(policy_id=0, kind="policy", version="", department=department,
                                 page_url=page_url(public_url, 0), short_url=short_url, source_url=data.url, **fields))


def drafted(message: M) -> M:
    """A message not stored yet has no id or revision of its own: its version is a digest of its
    content, so that the channels' render caches (keyed by key and version) never answer one draft
    with another's rendering."""
    content = repr(sorted((k, v) for k, v in vars(message).items() if k != "version"))
    return dataclasses.replace(message, version="draft-" + hashlib.sha256(content.encode()).hexdigest()[:16])
