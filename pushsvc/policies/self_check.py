"""Which policies apply to me (/check): a profile (audience groups and their attributes, typed in
and stored nowhere) against the targeting of every policy in force, with the clauses it met.

A policy applies when the profile is in one of its audience groups and its `where` holds, by the
same evaluation `explain` gives (core.targeting); the fan-out compiles that targeting to SQL
(store.matching), and tests/test_self_check.py checks on random profiles that both agree. Domains,
channels and a subscriber's status are not asked: they say how a person hears, not what applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.targeting import AllOf, Clause, Not, Predicate, Targeting, evaluate, parse_targeting
from pushsvc.services import Services
from pushsvc.store.in_force import in_force

Profile = dict[str, dict[str, Any]]  # group -> attribute -> normalised value, as subscribers hold them
MAX_SHOWN = 100  # a page of results a person reads; past that, a narrower profile helps more
_REQUIRED = "a value is required"


@dataclass(frozen=True)
class Met:
    """A clause that decided the match, `negated` when it held by failing (under a `not`)."""

    clause: Clause
    negated: bool


@dataclass(frozen=True)
class Applies:
    policy: dict[str, Any]
    groups: tuple[str, ...]  # the profile's groups among the policy's audiences
    met: tuple[Met, ...]


def read_profile(raw: Mapping[str, Mapping[str, str]], catalogue: Catalogue) -> tuple[Profile, list[FieldError]]:
    """Each chosen group's attributes (text as typed) checked as the subscribe form checks them;
    an attribute left empty is simply not part of the profile, required or not. Errors name the
    form field (`group.attribute`)."""
    profile: Profile = {}
    errors: list[FieldError] = []
    for slug, attrs in raw.items():
        group = catalogue.groups[slug]
        clean, problems = group.validate({k: v for k, v in attrs.items() if v.strip()})
        errors += [FieldError(f"{slug}.{e.field}", e.message) for e in problems if e.message != _REQUIRED]
        profile[slug] = clean
    return profile, errors


def applies(targeting: Targeting, profile: Profile) -> tuple[str, ...] | None:
    """The profile's groups among the targeting's audiences if the targeting matches it, else None."""
    groups = tuple(g for g in targeting.audiences if g in profile)
    if not groups:
        return None
    if targeting.where is not None and not evaluate(targeting.where, profile, with_values=False)[0]:
        return None
    return groups


def decided(p: Predicate, profile: Profile, negated: bool = False) -> list[Met]:
    """The clauses that make `p` come out as it does for the profile: for an `all` that holds each
    item, for an `any` that holds the items that hold (the reverse under a `not`)."""
    if isinstance(p, Clause):
        return [Met(p, negated)]
    if isinstance(p, Not):
        return decided(p.item, profile, not negated)
    wanted = evaluate(p, profile, with_values=False)[0]
    deciding_all = isinstance(p, AllOf) == wanted  # every item decides: a held all, a failed any
    return [m for item in p.items if deciding_all or evaluate(item, profile, with_values=False)[0] == wanted
            for m in decided(item, profile, negated)]


async def applicable(svc: Services, profile: Profile) -> list[Applies]:
    """The policies in force that apply to the profile, newest first, at most MAX_SHOWN."""
    found: list[Applies] = []
    if not profile:
        return found
    async with svc.db.read() as conn:
        async for policy in in_force(conn, local_date(now())):
            targeting = parse_targeting(policy["targeting"], svc.catalogue)[0]
            groups = applies(targeting, profile) if targeting is not None else None
            if targeting is None or groups is None:
                continue  # a targeting the catalogue no longer fits reaches nobody: the fan-out's rule
            met = decided(targeting.where, profile) if targeting.where is not None else []
            found.append(Applies(policy, groups, tuple(met)))
            if len(found) == MAX_SHOWN:
                break
    return found
