"""A policy's fallback channels: which channel is tried next when a subscriber's message on one
fails for good. Checked at publish; the ledger rows they make are written by the delivery layer
(pushsvc.delivery.fallback)."""

from __future__ import annotations

from collections.abc import Iterable

from pushsvc.core.errors import FieldError
from pushsvc.core.models import PolicyIn


def fallback_errors(data: PolicyIn, known: Iterable[str]) -> list[FieldError]:
    """Each `fallback.<channel>`: from one of the policy's channels, to another known channel."""
    known = tuple(known)
    errors: list[FieldError] = []
    for source, target in (data.fallback or {}).items():
        field = f"fallback.{source}"
        if source not in data.channels:
            errors.append(FieldError(field, f"'{source}' is not one of the policy's channels ({', '.join(data.channels)})"))
        elif target not in known:
            errors.append(FieldError(field, f"unknown channel '{target}' (known: {', '.join(known)})"))
        elif target == source:
            errors.append(FieldError(field, "a channel cannot fall back to itself"))
    return errors


def sending_channels(data: PolicyIn) -> list[str]:
    """Every channel the policy may go out on: its own, then its fallbacks (each once)."""
    return list(dict.fromkeys([*data.channels, *(data.fallback or {}).values()]))
