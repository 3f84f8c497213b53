"""The index's Atom and RSS feeds, read back with feedparser: valid (no bozo), newest first, absolute
and stable ids and links, `updated` moving with a revision, by domain and by department; a test
policy never in them; an unknown filter a 422 naming it. Both databases."""

from __future__ import annotations

from typing import Any

import feedparser

from tests.conftest import Api
from tests.test_api_foundation import POLICY
from tests.test_callbacks import issue_test_key
from tests.test_policy_search import SOCIAL, TAX, publish

PUBLIC = "https://push.example.gov.cn"


async def feed(api: Api, kind: str, **query: str | int) -> Any:
    async with api.session.get(f"{api.base}/policies/feed.{kind}", params={k: str(v) for k, v in query.items()}) as r:
        body = await r.read()
        assert r.status == 200, body[:500]
        assert r.headers["Content-Type"].startswith(f"application/{kind}+xml")
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def ids(parsed: Any) -> list[str]:
    return [e.id for e in parsed.entries]


async def test_feeds_of_the_index_a_domain_and_a_department(api: Api) -> None:
    hr = await api.department("市人社局", ["employment-entrepreneurship", "social-insurance"])
    tax = await api.department("市税务局", ["tax-administration"])
    jobs = await publish(api, hr["api_key"], POLICY)
    social = await publish(api, hr["api_key"], SOCIAL)
    vat = await publish(api, tax["api_key"], TAX)
    await publish(api, await issue_test_key(api, hr), {**POLICY, "title": "测试政策"})

    for kind in ("atom", "rss"):
        everything = await feed(api, kind)
        assert ids(everything) == [f"{PUBLIC}/p/{i}" for i in (vat, social, jobs)], kind
        assert [e.link for e in everything.entries] == ids(everything)
        first = everything.entries[0]
        assert first.title == TAX["title"] and first.summary == TAX["summary"]
        assert first.get("author") == "市税务局" or kind == "rss"
        assert everything.feed.link.startswith(f"{PUBLIC}/policies")
        assert ids(await feed(api, kind)) == ids(everything)  # stable
        assert ids(await feed(api, kind, domain="social-insurance")) == [f"{PUBLIC}/p/{social}"]
        assert ids(await feed(api, kind, department=hr["id"])) == [f"{PUBLIC}/p/{i}" for i in (social, jobs)]

    atom = await feed(api, "atom")
    assert atom.feed.id == f"{PUBLIC}/policies/feed.atom"
    before = {e.id: e.updated_parsed for e in atom.entries}

    status, body = await api.call("POST", f"/v1/policies/{jobs}/revise", hr["api_key"],
                                  json={"title": "关于支持中小微企业稳岗扩岗的若干措施（修订）"})
    assert status == 202, body
    after = {e.id: e for e in (await feed(api, "atom")).entries}
    revised = after[f"{PUBLIC}/p/{jobs}"]
    assert revised.title.endswith("（修订）") and revised.updated_parsed >= before[revised.id]
    assert revised.published_parsed <= revised.updated_parsed


async def test_an_unknown_filter_is_a_422_naming_it(api: Api) -> None:
    for query, field in (({"domain": "nope"}, "domain"), ({"department": "12345"}, "department"),
                         ({"department": "x"}, "department")):
        status, body = await api.call("GET", "/policies/feed.atom", params=query)
        assert status == 422 and [e["field"] for e in body["errors"]] == [field], body
