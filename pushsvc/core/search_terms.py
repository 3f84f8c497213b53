"""How the public index (/policies) sees a policy and a search: pure functions, no I/O.

Chinese is written without spaces and its words are mostly two characters (稳岗, 社保), too short
for trigram indexes (SQLite FTS5 `trigram`, PostgreSQL `pg_trgm`) to find from the index. So a text
becomes *terms* here, and each database only indexes whitespace-separated terms:
- a run of CJK characters becomes its overlapping bigrams (稳岗扩岗 → 稳岗 岗扩 扩岗) and its single
  characters;
- letters and digits become lower-cased words (NFKC first: full-width ２０２６ is 2026, so a doc
  number 穗人社规字〔2026〕3号 is 穗人 人社 社规 规字 2026 3 号 whatever its brackets);
- facets (domain, audience, district, department, status) become terms beginning with `_`, which
  no text term does, so that a filter is one more term of the same index lookup.

A query's terms, made the same way, are ANDed: a CJK word of two or more characters is all of its
bigrams (not a phrase: position-checked phrases cost PostgreSQL a second read of every candidate
row, measured 150 ms over 100,000 policies, and two characters' bigrams rarely meet apart), one
character is that character. `fts5_match` renders a query for SQLite's FTS5, `tsquery` for
PostgreSQL's `@@`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pushsvc.core.errors import FieldError
from pushsvc.core.msgid import N_

MAX_QUERY_CHARS = 100
MAX_QUERY_WORDS = 12
# A longer run of letters or digits is cut, in texts and queries alike: PostgreSQL refuses lexemes
# over 2 KiB, and nobody types such a word to find a policy.
MAX_WORD_CHARS = 64
# What a public policy's page shows as its state; the index's `status` filter takes these values.
STATES = {
    "in_force": N_("In force"),
    "revised": N_("Revised"),
    "repealed": N_("Repealed"),
    "lapsed": N_("Lapsed"),
}
# The statuses of a public policy (with a page: pushsvc/web/pages.py): a scheduled one is not public
# yet, one no longer in force stays listed and says so. (The index lists a scheduled policy from its
# publish_at, when its sending starts: listed_until.)
LISTED_STATUSES = ("publishing", "published", "repealed", "lapsed")
_IN_FORCE = ("scheduled", "publishing", "published")
_CJK_RANGES = (
    (0x3040, 0x30FF),  # kana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # hangul syllables
    (0xF900, 0xFAFF),  # compatibility ideographs
    (0x20000, 0x3134F),  # extensions B to G
)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _runs(text: str) -> list[tuple[bool, str]]:
    """(is CJK, run) of `text` normalised: CJK runs and letter/digit words, everything else a separator."""
    runs: list[tuple[bool, str]] = []
    current: list[str] = []
    kind: bool | None = None
    for ch in unicodedata.normalize("NFKC", text).lower():
        this = None if not ch.isalnum() else _is_cjk(ch)
        if this != kind and current:
            runs.append((bool(kind), "".join(current)))
            current = []
        kind = this
        if this is not None:
            current.append(ch)
    if current:
        runs.append((bool(kind), "".join(current)))
    return runs


def _bigrams(run: str) -> list[str]:
    return [run[i:i + 2] for i in range(len(run) - 1)]


def text_terms(*texts: str | None) -> list[str]:
    """The terms of `texts`, each once: bigrams and words, then the CJK characters."""
    ordered: list[str] = []
    singles: list[str] = []
    for text in texts:
        for cjk, run in _runs(text or ""):
            if cjk:
                ordered += _bigrams(run)
                singles += run
            else:
                ordered.append(run[:MAX_WORD_CHARS])
    return list(dict.fromkeys(ordered + singles))


def facet(kind: str, value: str | int) -> str:
    """A filter as an index term: `_domain_social-insurance`, `_department_3`."""
    return f"_{kind}_{value}"


def state_of(status: str, revision: int) -> list[str]:
    """The states a policy is found under: a revised policy in force is both in force and revised."""
    if status in _IN_FORCE:
        return ["in_force", "revised"] if revision > 1 else ["in_force"]
    return [status] if status in STATES else []


def shown_state(status: str, revision: int) -> str:
    """The one state a listing shows (the last of state_of: revised rather than in force)."""
    states = state_of(status, revision)
    return states[-1] if states else "in_force"


def _possible(node: Any, district: str) -> bool | None:
    """Kleene logic over a stored targeting predicate with every `<group>.district` clause decided
    for someone in `district` and every other clause unknown (None)."""
    if "all" in node:
        results = [_possible(n, district) for n in node["all"]]
        return False if False in results else None if None in results else True
    if "any" in node:
        results = [_possible(n, district) for n in node["any"]]
        return True if True in results else None if None in results else False
    if "not" in node:
        inner = _possible(node["not"], district)
        return None if inner is None else not inner
    if not str(node.get("attr", "")).endswith(".district"):
        return None
    op, value = node.get("op"), node.get("value")
    if op == "eq":
        return district == value
    if op == "in":
        return district in value
    if op == "not_in":
        return district not in value
    if op == "exists":
        return bool(value)
    return None


def districts_of(targeting: Mapping[str, Any], districts: Iterable[str]) -> list[str]:
    """The districts whose people the policy may reach: those for which its targeting is not false
    once its district clauses are decided. A policy naming no district is city-wide: every one."""
    where = targeting.get("where")
    if not where:
        return list(districts)
    return [d for d in districts if _possible(where, d) is not False]


def policy_terms(policy: Mapping[str, Any], districts: Iterable[str]) -> list[str]:
    """What the index holds of a stored policy: the words of its title, doc number and summary,
    then its facets."""
    targeting = policy["targeting"]
    facets = [facet("domain", policy["domain"]), facet("department", policy["department_id"])]
    facets += [facet("audience", a) for a in targeting.get("audiences", [])]
    facets += [facet("district", d) for d in districts_of(targeting, districts)]
    facets += [facet("status", s) for s in state_of(policy["status"], policy["revision"])]
    return text_terms(policy["title"], policy["doc_number"], policy["summary"]) + facets


def indexed(policy: Mapping[str, Any]) -> bool:
    """Whether the public index holds the policy at all: proactively disclosed, and not sent with a
    test key. (A scheduled one is held but listed only from its publish_at: listed_until.)"""
    return policy["disclosure"] == "proactive" and not policy["test"]


_IDS = 1_000_000_000  # policy ids below this fit in a sort key (until the year 2262)


def sort_key(went_public: datetime, policy_id: int) -> int:
    """Newest first by when the policy went public, as one integer (the order of SQLite's FTS5
    rowids, which it can walk backwards without sorting); the id makes it unique, and can be read
    back (policy_of), so a search needs no other table."""
    return int(went_public.timestamp()) * _IDS + policy_id


def policy_of(key: int) -> int:
    return key % _IDS


def listed_until(at: datetime) -> int:
    """The highest sort key listed at `at`: a scheduled policy is listed from its publish_at on."""
    return sort_key(at, _IDS - 1)


@dataclass(frozen=True)
class Query:
    """A search: terms, all ANDed."""

    terms: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.terms)


def parse_query(words: str, facets: Sequence[str] = (), field: str = "q") -> tuple[Query, list[FieldError]]:
    """The query for the words someone typed (and the filters' facet terms)."""
    if len(words) > MAX_QUERY_CHARS:
        return Query(()), [FieldError(field, f"at most {MAX_QUERY_CHARS} characters")]
    runs = _runs(words)
    if len(runs) > MAX_QUERY_WORDS:
        return Query(()), [FieldError(field, f"at most {MAX_QUERY_WORDS} words")]
    terms: list[str] = []
    for cjk, run in runs:
        terms += _bigrams(run) if cjk and len(run) > 1 else [run if cjk else run[:MAX_WORD_CHARS]]
    return Query(tuple(dict.fromkeys([*terms, *facets]))), []


def fts5_match(query: Query) -> str:
    """The query in FTS5's syntax: each term a quoted string, ANDed."""
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in query.terms)


def _lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(query: Query) -> str:
    """The query as a PostgreSQL tsquery literal: its terms ANDed with &."""
    return " & ".join(_lexeme(t) for t in query.terms)


def tsvector(terms: Sequence[str]) -> str:
    """Terms as a PostgreSQL tsvector literal, without positions: no query needs them, and the
    index's rows stay small (a match's row is read again when PostgreSQL rechecks it)."""
    return " ".join(_lexeme(t) for t in dict.fromkeys(terms))
