"""Which policies apply to me (/check): the page as a person uses it (a matching policy shown with
the clauses met, a non-matching one not, bad input beside its field, nothing stored, the subscribe
form filled in), and a property test: on random policies (hypothesis) and random profiles, /check's
evaluation and the fan-out's SQL matcher (store/matching.py) choose the same people."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pushsvc.core.catalogue import Attribute, load_catalogue
from pushsvc.core.subscribers import Contacts, NewSubscriber
from pushsvc.core.targeting import parse_targeting
from pushsvc.dev.demo_data import samples
from pushsvc.policies.self_check import applies, decided, read_profile
from pushsvc.settings import REPO_ROOT
from pushsvc.store.db import Database
from pushsvc.store.matching import matching_pairs
from pushsvc.store.schema import subscribers
from pushsvc.store.subscribers import insert_subscribers, load_subscribers
from tests.conftest import Api
from tests.test_api_foundation import POLICY
from tests.test_self_service import Visitor, axe_problems, db_rows, error_beside

CATALOGUE = load_catalogue(REPO_ROOT / "audiences")
AID = {**POLICY, "title": "关于低保家庭临时救助的通知", "domain": "social-assistance",
       "targeting": {"audiences": ["aid_recipient"]}}
HAIZHU_SMALL = {"group": "enterprise", "enterprise.district": "haizhu", "enterprise.scale": "small"}


async def test_check_shows_the_policies_for_a_profile_with_the_clauses_met(
    api: Api, settings_env: dict[str, str]
) -> None:
    dept = await api.department(domains=["employment-entrepreneurship", "social-assistance"])
    key = dept["api_key"]
    for body in (POLICY, AID):
        status, _ = await api.call("POST", "/v1/policies", key, json=body)
        assert status == 202
    person = Visitor(api)
    status, html = await person.get("/check")
    assert status == 200 and axe_problems(html) == [] and 'name="enterprise.district"' in html

    status, html = await person.submit("/check", {**HAIZHU_SMALL, "action": "check"})
    assert status == 200 and axe_problems(html) == []
    assert POLICY["title"] in html and AID["title"] not in html
    met = html.split('class="met"')[1].split("</ul>")[0]
    assert "所在区" in met and "海珠区" in met and "企业规模" in met and "小型企业" in met
    # Elsewhere in the city, or a large firm: not for them.
    status, html = await person.submit("/check", {**HAIZHU_SMALL, "enterprise.district": "baiyun", "action": "check"})
    assert status == 200 and POLICY["title"] not in html

    # Subscribing with this profile: the subscribe form, filled in, the matching policy's domain ticked.
    status, html = await person.submit("/check", {**HAIZHU_SMALL, "action": "subscribe"})
    assert status == 200 and 'action="/subscribe"' in html
    assert 'id="g-enterprise" name="group" value="enterprise" checked' in html
    assert '<option value="haizhu" selected>' in html
    assert 'id="d-employment-entrepreneurship" name="domain" value="employment-entrepreneurship" checked' in html

    # Bad input: beside its field, everything typed kept; no group at all; a forged form.
    await person.get("/check")
    status, html = await person.submit("/check", {**HAIZHU_SMALL, "enterprise.employees": "many", "action": "check"})
    assert status == 422 and error_beside(html, "f-enterprise-employees") and 'value="many"' in html
    status, html = await person.submit("/check", {"action": "check"})
    assert status == 422 and error_beside(html, "f-group")
    status, _, _ = await person.open("POST", "/check", {**HAIZHU_SMALL, "csrf_token": "forged", "lang": "zh-CN"})
    assert status == 403
    # Nothing typed here is kept.
    assert await db_rows(settings_env, sa.select(subscribers.c.id)) == []


def test_a_profile_is_as_complete_as_the_person_likes() -> None:
    profile, errors = read_profile({"enterprise": {"district": "tianhe", "uscc": "", "employees": " 12 "}}, CATALOGUE)
    assert errors == [] and profile == {"enterprise": {"district": "tianhe", "employees": 12}}
    _, errors = read_profile({"enterprise": {"employees": "-3"}}, CATALOGUE)
    assert [e.field for e in errors] == ["enterprise.employees"]


def test_the_clauses_met_are_those_that_decided() -> None:
    targeting, _ = parse_targeting({"audiences": ["enterprise"], "where": {"any": [
        {"attr": "enterprise.district", "op": "eq", "value": "haizhu"},
        {"not": {"attr": "enterprise.high_tech", "op": "eq", "value": True}}]}}, CATALOGUE)
    assert targeting is not None and targeting.where is not None
    profile = {"enterprise": {"district": "tianhe", "high_tech": False}}
    assert applies(targeting, profile) == ("enterprise",)
    [met] = decided(targeting.where, profile)
    assert (met.clause.attr, met.negated) == ("high_tech", True)
    assert applies(targeting, {"enterprise": {"district": "tianhe", "high_tech": True}}) is None
    assert applies(targeting, {"taxpayer": {}}) is None


# -- the property: /check and the SQL matcher agree --------------------------------------------------


def _values(a: Attribute) -> st.SearchStrategy[Any]:
    if a.choices is not None:
        return st.sampled_from([c.value for c in a.choices])
    if a.type == "boolean":
        return st.booleans()
    if a.type in ("integer", "number"):
        low = int(a.min) if a.min is not None else 0
        return st.integers(low, low + 200)
    if a.type == "date":
        return st.dates(date(2000, 1, 1), date(2030, 12, 31)).map(date.isoformat)
    return st.text("ABC123", min_size=1, max_size=4)


ATTRIBUTES = [(g.slug, a) for g in CATALOGUE.groups.values() for a in g.attributes.values()]


@st.composite
def clauses(draw: st.DrawFn) -> dict[str, Any]:
    group, a = draw(st.sampled_from(ATTRIBUTES))
    ordered = a.type in ("integer", "number", "date")
    ops = ["exists", "eq"] + (["gte", "lte"] if ordered else []) + (["in", "not_in"] if a.choices else [])
    op = draw(st.sampled_from(ops))
    if op == "exists":
        value: Any = draw(st.booleans())
    elif op in ("in", "not_in"):
        value = draw(st.lists(_values(a), min_size=1, max_size=4, unique=True))
    else:
        value = draw(_values(a))
    return {"attr": f"{group}.{a.name}", "op": op, "value": value}


predicates = st.recursive(
    clauses(),
    lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
                            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
                            inner.map(lambda x: {"not": x})),
    max_leaves=6,
)
targetings = st.fixed_dictionaries(
    {"audiences": st.lists(st.sampled_from(list(CATALOGUE.groups)), min_size=1, max_size=3, unique=True)},
    optional={"where": predicates},
)


class Population:
    """Random subscribers in a database of their own, driven from a loop of their own (hypothesis
    calls the test synchronously, many times)."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database(database_url)
        self.profiles: dict[int, dict[str, dict[str, Any]]] = self.run(self._fill())

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    async def _fill(self) -> dict[int, dict[str, dict[str, Any]]]:
        new = [NewSubscriber(name=s.name, contacts=Contacts(email=f"p{i}@example.com"), uscc=None,
                             audiences=s.audiences, domains=("*",), channels=("email",))
               for i, s in enumerate(samples(CATALOGUE, 300, seed=18))]
        async with self.db.write() as conn:
            ids = await insert_subscribers(conn, new, status="active", source="test", department_id=None)
        async with self.db.read() as conn:
            return {s["id"]: s["audiences"] for s in await load_subscribers(conn, ids)}

    async def matched_by_sql(self, raw: dict[str, Any]) -> set[int]:
        targeting, _ = parse_targeting(raw, CATALOGUE)
        assert targeting is not None
        async with self.db.read() as conn:
            return {sid for sid, _, _ in await conn.execute(matching_pairs(targeting, "healthcare", ["email"]))}

    def close(self) -> None:
        self.run(self.db.close())
        self.loop.close()


@pytest.fixture
def population(database_url: str) -> Iterator[Population]:
    people = Population(database_url)
    yield people
    people.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=targetings)
def test_check_and_the_sql_matcher_agree_on_random_policies_and_profiles(
    population: Population, raw: dict[str, Any]
) -> None:
    targeting, errors = parse_targeting(raw, CATALOGUE)
    assume(targeting is not None and not errors)
    assert targeting is not None
    by_check = {sid for sid, profile in population.profiles.items() if applies(targeting, profile) is not None}
    assert by_check == population.run(population.matched_by_sql(raw))
