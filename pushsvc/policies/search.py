"""The public index of policies: a search's words and filters checked, one page of results, the
feeds' newest policies, and keeping a policy's index row current (in the transaction of each change:
publish, revise, repeal, lapse)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.errors import FieldError
from pushsvc.core.search_terms import STATES, Query, facet, parse_query
from pushsvc.services import Services
from pushsvc.store.departments import department_by_id
from pushsvc.store.search import listed_departments, listed_policies, reindex, search

PAGE_SIZE = 20
# Matches are counted up to this many; the pages go as far. A search finding more is told to narrow.
COUNT_UP_TO = 1000
FEED_SIZE = 50
_MAX_PAGE = COUNT_UP_TO // PAGE_SIZE


@dataclass(frozen=True)
class Search:
    """What someone asked the index for: words, filters (slugs, a department id) and a page."""

    words: str = ""
    domain: str | None = None
    audience: str | None = None
    district: str | None = None
    department: int | None = None
    status: str | None = None
    page: int = 1

    def facets(self) -> list[str]:
        chosen = {"domain": self.domain, "audience": self.audience, "district": self.district,
                  "department": self.department, "status": self.status}
        return [facet(kind, value) for kind, value in chosen.items() if value is not None]


@dataclass(frozen=True)
class Results:
    search: Search
    items: list[dict[str, Any]]
    total: int  # at most COUNT_UP_TO + 1: more than COUNT_UP_TO when `more`
    pages: int
    departments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def more(self) -> bool:
        return self.total > COUNT_UP_TO


def _slug(raw: Mapping[str, str], name: str, known: Mapping[str, Any], errors: list[FieldError]) -> str | None:
    value = raw.get(name, "").strip()
    if not value:
        return None
    if value not in known:
        errors.append(FieldError(name, f"'{value[:60]}' is not one of the choices"))
        return None
    return value


def _positive(raw: Mapping[str, str], name: str, errors: list[FieldError], hi: int | None = None) -> int | None:
    value = raw.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) < 1 or (hi is not None and int(value) > hi):
        errors.append(FieldError(name, f"must be a whole number from 1{f' to {hi}' if hi else ''}"))
        return None
    return int(value)


def checked_search(raw: Mapping[str, str], catalogue: Catalogue) -> tuple[Search, list[FieldError]]:
    """The search in a query string (`q`, `domain`, `audience`, `district`, `department`, `status`,
    `page`); what is wrong is named by field and left out, the rest kept."""
    errors: list[FieldError] = []
    words = raw.get("q", "").strip()
    _, word_errors = parse_query(words)
    errors += word_errors
    found = Search(
        words=words if not word_errors else "",
        domain=_slug(raw, "domain", catalogue.domains, errors),
        audience=_slug(raw, "audience", catalogue.groups, errors),
        district=_slug(raw, "district", catalogue.districts, errors),
        department=_positive(raw, "department", errors),
        status=_slug(raw, "status", STATES, errors),
        page=_positive(raw, "page", errors, hi=_MAX_PAGE) or 1,
    )
    return found, errors


async def department_name(svc: Services, department_id: int) -> str | None:
    async with svc.db.read() as conn:
        department = await department_by_id(conn, department_id)
    return department["name"] if department else None


async def checked(svc: Services, raw: Mapping[str, str]) -> tuple[Search, list[FieldError]]:
    """checked_search, and the department must exist (one with nothing listed yet has an empty index)."""
    wanted, errors = checked_search(raw, svc.catalogue)
    if wanted.department is not None and await department_name(svc, wanted.department) is None:
        errors.append(FieldError("department", f"no department {wanted.department}"))
    return wanted, errors


async def find(svc: Services, wanted: Search) -> Results:
    """One page of the listed policies matching `wanted`, newest first, and the department choices."""
    query, _ = parse_query(wanted.words, wanted.facets())
    async with svc.db.read() as conn:
        ids, total = await search(conn, query, offset=(wanted.page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
                                  count_up_to=COUNT_UP_TO + 1)
        items = await listed_policies(conn, ids)
        departments = await listed_departments(conn)
    pages = max(1, math.ceil(min(total, COUNT_UP_TO) / PAGE_SIZE))
    return Results(wanted, items, total, pages, departments)


async def newest(svc: Services, wanted: Search) -> list[dict[str, Any]]:
    """The FEED_SIZE newest listed policies of `wanted`'s filters (a feed's entries)."""
    async with svc.db.read() as conn:
        ids, _ = await search(conn, Query(tuple(wanted.facets())), offset=0, limit=FEED_SIZE,
                              count_up_to=None)
        return await listed_policies(conn, ids)


async def keep_indexed(svc: Services, conn: AsyncConnection, policy_id: int, changed_at: datetime) -> None:
    """The policy's index row as the policy now is, written in the caller's transaction."""
    await reindex(conn, policy_id, svc.catalogue.districts, changed_at)
