"""`GET /v1/policies`: a department's own policies newest first, filtered by status, domain, period
and words, a page at a time; nobody else's, and a 422 naming the field for a bad filter."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pushsvc.core.quiet_hours import LOCAL_ZONE
from tests.conftest import ADMIN, Api
from tests.test_api_foundation import POLICY


async def publish(api: Api, key: str, **changes: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, **changes})
    assert status == 202, body
    return body


async def listed(api: Api, key: str | None, query: str = "") -> list[int]:
    status, body = await api.call("GET", f"/v1/policies{query}", key)
    assert status == 200, body
    return [item["id"] for item in body["items"]]


async def test_filters_paging_and_isolation(api: Api) -> None:
    dept = await api.department()
    other = await api.department("市税务局", ["tax-administration"])
    key = dept["api_key"]
    first = await publish(api, key, title="稳岗扩岗补贴 100% 发放", doc_number="穗人社规字〔2026〕3号")
    tax = await publish(api, key, title="小规模纳税人减免", domain="tax-administration", doc_number="穗税发〔2026〕8号")
    later = await publish(api, key, title="创业担保贷款", doc_number=None, publish_at="2099-01-01T09:00:00+08:00")
    theirs = await publish(api, other["api_key"], title="小规模纳税人减免", domain="tax-administration")

    # The department's own, newest first, with what a list shows; another department's never.
    status, body = await api.call("GET", "/v1/policies", key)
    assert status == 200 and body["next_cursor"] is None
    assert [i["id"] for i in body["items"]] == [later["id"], tax["id"], first["id"]]
    top = body["items"][0]
    assert top["status"] == "scheduled" and top["department"] == "市人社局" and top["doc_number"] is None
    assert top["page_url"] == f"https://push.example.gov.cn/p/{later['id']}"
    assert top["public_at"].startswith("2099-01-01T01:00:00")
    assert await listed(api, other["api_key"]) == [theirs["id"]]

    # Filters, alone and together.
    assert await listed(api, key, "?status=scheduled") == [later["id"]]
    assert await listed(api, key, "?status=publishing&domain=tax-administration") == [tax["id"]]
    assert await listed(api, key, "?domain=healthcare") == []
    assert await listed(api, key, "?q=纳税人") == [tax["id"]]
    assert await listed(api, key, "?q=穗人社规字") == [first["id"]]
    assert await listed(api, key, "?q=100%25") == [first["id"]]  # % is a character, not a wildcard
    assert await listed(api, key, "?q=1%25发") == []
    assert await listed(api, key, "?q=_") == []
    today = datetime.now(LOCAL_ZONE).date()
    assert await listed(api, key, f"?from={today}&to={today}") == [tax["id"], first["id"]]
    assert await listed(api, key, "?from=2098-12-31") == [later["id"]]
    assert await listed(api, key, f"?to={today - timedelta(days=1)}") == []

    # A page at a time, as the other collections page.
    status, page = await api.call("GET", "/v1/policies?limit=2", key)
    assert status == 200 and [i["id"] for i in page["items"]] == [later["id"], tax["id"]] and page["next_cursor"]
    status, rest = await api.call("GET", f"/v1/policies?limit=2&cursor={page['next_cursor']}", key)
    assert status == 200 and [i["id"] for i in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    assert await listed(api, key, f"?status=scheduled&cursor={page['next_cursor']}") == []

    # The admin reads every department's, or one; a key may not name another department.
    assert await listed(api, ADMIN) == [theirs["id"], later["id"], tax["id"], first["id"]]
    assert await listed(api, ADMIN, f"?department_id={other['id']}") == [theirs["id"]]
    status, body = await api.call("GET", f"/v1/policies?department_id={dept['id']}", other["api_key"])
    assert status == 403 and body["errors"][0]["field"] == "department_id"
    status, _ = await api.call("GET", "/v1/policies", None)
    assert status == 401
    status, _ = await api.call("GET", "/v1/policies", "psk_not-a-key")
    assert status == 401


async def test_bad_filters_name_their_field(api: Api) -> None:
    key = (await api.department())["api_key"]
    await publish(api, key)
    for query, field in [
        ("status=lost", "status"), ("domain=nowhere", "domain"), ("from=2026-13-01", "from"),
        ("to=yesterday", "to"), ("from=2026-12-02&to=2026-12-01", "to"), ("q=" + "字" * 201, "q"),
        ("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=%21%21", "cursor"), ("department_id=x", "department_id"),
    ]:
        status, body = await api.call("GET", f"/v1/policies?{query}", key)
        assert status == 422, (query, body)
        assert body["errors"][0]["field"] == field, (query, body)
    # Every bad field at once, each named.
    status, body = await api.call("GET", "/v1/policies?status=lost&domain=nowhere&from=x", key)
    assert status == 422 and {e["field"] for e in body["errors"]} == {"status", "domain", "from"}
    # Empty values filter nothing.
    status, body = await api.call("GET", "/v1/policies?status=&domain=&from=&to=&q=", key)
    assert status == 200 and len(body["items"]) == 1


async def test_openapi_describes_the_list(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200
    op = doc["paths"]["/v1/policies"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"status", "domain", "from", "to", "q", "cursor", "limit", "department_id"} <= names
    assert {"200", "401", "403", "422"} <= set(op["responses"])


async def test_a_test_keys_policy_is_marked(api: Api) -> None:
    dept = await api.department()
    status, test_key = await api.call("POST", f"/v1/departments/{dept['id']}/keys", ADMIN,
                                      json={"name": "ci", "kind": "test"})
    assert status == 201, test_key
    live = await publish(api, dept["api_key"])
    trial = await publish(api, test_key["api_key"], title="试发")
    status, body = await api.call("GET", "/v1/policies", dept["api_key"])
    assert status == 200
    assert [(i["id"], i["test"]) for i in body["items"]] == [(trial["id"], True), (live["id"], False)]
