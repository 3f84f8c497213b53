"""The public index /policies: found by words (two-character Chinese words, single characters,
longer words, doc numbers in any brackets) and by filters, newest first; a repealed policy shows
as repealed, a lapsed one as lapsed; test, undisclosed and scheduled policies do not appear; the
index follows a revision; bad input is a 400 page with the error beside its field; the search bench
runs (quick). Both databases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.search_terms import districts_of, fts5_match, parse_query, text_terms, tsquery
from pushsvc.policies.lifecycle import run_lapse
from pushsvc.services import Services
from pushsvc.settings import REPO_ROOT, Settings
from pushsvc.store.schema import policies
from pushsvc.store.search import reindex
from tests.conftest import PG_URL, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_callbacks import issue_test_key
from tests.test_lifecycle import services_for
from tests.test_self_service import axe_problems, error_beside

DISTRICTS = ["yuexiu", "haizhu", "tianhe", "nansha"]
SOCIAL = {
    **POLICY, "title": "关于调整城乡居民社保缴费标准的通知", "summary": "自2027年1月起调整城乡居民养老保险缴费档次。",
    "domain": "social-insurance", "doc_number": "穗人社发〔2026〕12号",
    "targeting": {"audiences": ["employment_social_security"]},
}
TAX = {
    **POLICY, "title": "小规模纳税人增值税减免政策", "summary": "对南沙区小规模纳税人减按1%征收增值税。",
    "domain": "tax-administration", "doc_number": "穗税发〔2025〕8号",
    "targeting": {"audiences": ["taxpayer"], "where": {"attr": "taxpayer.district", "op": "eq", "value": "nansha"}},
}


def test_terms_bigrams_singles_and_queries() -> None:
    assert text_terms("稳岗扩岗", "穗字〔２０２６〕3号") == [
        "稳岗", "岗扩", "扩岗", "穗字", "2026", "3", "稳", "岗", "扩", "穗", "字", "号"]
    query, errors = parse_query("社会保险  稳岗 企 ABC", ["_domain_x"])
    assert not errors
    assert fts5_match(query) == '"社会" AND "会保" AND "保险" AND "稳岗" AND "企" AND "abc" AND "_domain_x"'
    assert tsquery(query) == "'社会' & '会保' & '保险' & '稳岗' & '企' & 'abc' & '_domain_x'"
    assert parse_query("字" * 101)[1][0].field == "q"
    assert fts5_match(parse_query('a"b')[0]) == '"a" AND "b"'
    assert tsquery(parse_query("it's")[0]) == "'it' & 's'"


def test_districts_from_targeting() -> None:
    def where(w: Any) -> list[str]:
        return districts_of({"audiences": ["enterprise"], "where": w}, DISTRICTS)

    assert districts_of({"audiences": ["enterprise"]}, DISTRICTS) == DISTRICTS  # city-wide
    clause = {"attr": "enterprise.district", "op": "in", "value": ["haizhu", "tianhe"]}
    scale = {"attr": "enterprise.scale", "op": "eq", "value": "small"}
    assert where({"all": [clause, scale]}) == ["haizhu", "tianhe"]
    assert where({"any": [clause, scale]}) == DISTRICTS  # the scale alone may reach anyone
    assert where({"not": clause}) == ["yuexiu", "nansha"]
    assert where({"attr": "taxpayer.district", "op": "not_in", "value": ["nansha"]}) == ["yuexiu", "haizhu", "tianhe"]


def listed(html: str) -> list[int]:
    block = re.search(r'<ol class="results">(.*?)</ol>', html, re.S)
    return [int(i) for i in re.findall(r'<h2><a href="/p/(\d+)">', block[1])] if block else []


async def find(api: Api, **query: str | int) -> list[int]:
    async with api.session.get(api.base + "/policies", params={k: str(v) for k, v in query.items()}) as r:
        html = await r.text()
        assert r.status == 200, (query, html[:2000])
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert axe_problems(html) == []
    return listed(html)


async def publish(api: Api, key: str, body: dict[str, Any]) -> int:
    status, out = await api.call("POST", "/v1/policies", key, json=body)
    assert status == 202, out
    return int(out["id"])


async def test_search_words_filters_states_and_what_never_shows(api: Api, workers: Workers,
                                                                 settings_env: dict[str, str]) -> None:
    workers.start()
    hr = await api.department("市人社局", ["employment-entrepreneurship", "social-insurance"])
    tax = await api.department("市税务局", ["tax-administration"])
    jobs = await publish(api, hr["api_key"], POLICY)
    social = await publish(api, hr["api_key"], SOCIAL)
    vat = await publish(api, tax["api_key"], TAX)
    await publish(api, await issue_test_key(api, hr), {**POLICY, "title": "稳岗测试政策"})  # a test key's: never listed
    hidden = await publish(api, hr["api_key"], {**POLICY, "title": "稳岗返还经办规程", "doc_number": None})
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    await publish(api, hr["api_key"], {**POLICY, "title": "稳岗预告", "publish_at": later})  # listed from then on

    # Words: a two-character word, newest first; one character; a longer word only as written.
    assert await find(api, q="稳岗") == [hidden, jobs]
    assert await find(api, q="企") == [hidden, jobs]
    assert await find(api, q="中小微企业") == [jobs]
    assert await find(api, q="微中") == []
    assert await find(api, q="社保 缴费") == [social]
    # The doc number, however its brackets are typed.
    for number in ("穗人社规字〔2026〕3号", "穗人社规字[2026]3号", "穗人社规字（2026）3号"):
        assert await find(api, q=number) == [jobs], number
    assert await find(api) == [hidden, vat, social, jobs]

    # Filters, alone and with words. District: the targeting's district clauses; none is city-wide.
    assert await find(api, domain="tax-administration") == [vat]
    assert await find(api, audience="employment_social_security") == [social]
    assert await find(api, district="haizhu") == [hidden, social, jobs]
    assert await find(api, district="nansha") == [vat, social]
    assert await find(api, department=tax["id"]) == [vat]
    assert await find(api, q="稳岗", district="nansha") == []
    assert await find(api, q="政策", department=tax["id"], audience="taxpayer", status="in_force") == [vat]

    # A policy no longer proactively disclosed leaves the index at its next change.
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(policies).where(policies.c.id == hidden).values(disclosure="on_request"))
            await reindex(conn, hidden, DISTRICTS, datetime.now(timezone.utc))
    finally:
        await engine.dispose()
    assert await find(api, q="稳岗") == [jobs]

    # A revision: the new title is found, the old one no more; the state says revised.
    status, body = await api.call("POST", f"/v1/policies/{social}/revise", hr["api_key"],
                                  json={"title": "关于调整城乡居民医保缴费标准的通知"})
    assert status == 202, body
    assert await find(api, q="医保") == [social]
    assert await find(api, q="社保") == []
    assert await find(api, status="revised") == [social]

    # A repeal: listed as repealed, and found under that state only.
    async def published() -> bool:
        return (await api.call("GET", f"/v1/policies/{vat}", tax["api_key"]))[1]["status"] == "published"

    await eventually(published)
    status, body = await api.call("POST", f"/v1/policies/{vat}/repeal", tax["api_key"], json={"reason": "已到期"})
    assert status == 202, body
    assert await find(api, status="repealed") == [vat]
    assert vat not in await find(api, status="in_force")
    async with api.session.get(api.base + "/policies", params={"q": "增值税"}) as r:
        html = await r.text()
    assert '<span class="state state-repealed">已废止</span>' in html or "state-repealed" in html


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    """The service's parts in this process, to run the lapse cron with a clock of our choosing."""
    async with services_for(settings) as services:
        yield services


async def test_a_lapsed_policy_is_listed_as_lapsed(api: Api, workers: Workers, svc: Services) -> None:
    workers.start()
    hr = await api.department()
    today = datetime.now(LOCAL_ZONE).date()
    lapsing = await publish(api, hr["api_key"], {**POLICY, "expires_on": today.isoformat()})

    async def published() -> bool:
        return (await api.call("GET", f"/v1/policies/{lapsing}", hr["api_key"]))[1]["status"] == "published"

    await eventually(published)
    assert await find(api, status="lapsed") == []
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), LOCAL_ZONE) + timedelta(minutes=5)
    assert await run_lapse(svc, tomorrow) == 1
    assert await find(api, status="lapsed") == [lapsing]
    assert await find(api, status="in_force") == []


async def test_bad_filters_are_a_400_page_with_the_error_beside_the_field(api: Api) -> None:
    for query, field in (({"domain": "nope", "q": "稳岗"}, "f-domain"), ({"page": "0"}, None),
                         ({"department": "99999"}, "f-department"), ({"status": "gone"}, "f-status"),
                         ({"q": "字" * 101}, "f-q")):
        async with api.session.get(api.base + "/policies", params=query) as r:
            html = await r.text()
            assert r.status == 400, (query, html[:1000])
        assert 'role="alert"' in html and listed(html) == []
        if field:
            assert error_beside(html, field), (query, html)
        if "q" in query and len(query["q"]) < 100:
            assert f'value="{query["q"]}"' in html  # what was typed is kept


@pytest.mark.parametrize("lang", ["zh-CN", "zh-HK", "en"])
async def test_the_index_speaks_each_language(api: Api, lang: str) -> None:
    async with api.session.get(api.base + "/policies", params={"lang": lang}) as r:
        html = await r.text()
        assert r.status == 200
    assert f'<html lang="{lang}">' in html and axe_problems(html) == []
    assert 'href="/policies/feed.atom"' in html


@pytest.mark.parametrize("backend", ["sqlite"] + (["postgresql"] if PG_URL else []))
def test_the_search_bench_quick(backend: str) -> None:
    # Its own process: on PostgreSQL the bench points every new connection at its own schema.
    run = subprocess.run([sys.executable, "-m", "bench.search", "--quick", "--database", backend],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5,000 policies seeded" in run.stdout and "all searches within target" in run.stdout, run.stdout
