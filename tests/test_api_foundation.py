"""The foundation over real HTTP: departments and keys, subscribers and import, policies,
preview, explain, problem+json, limits, health and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.api.openapi import openapi_document
from pushsvc.core.identifiers import uscc_check_char
from pushsvc.subscriptions import importing
from tests.conftest import ADMIN, Api, eventually

USCC = "91350100M000100Y43"


def uscc(n: int) -> str:
    body = f"91440101MA{n:07d}"
    return body + uscc_check_char(body)


def enterprise(n: int, district: str = "haizhu", scale: str = "small", **extra: Any) -> dict[str, Any]:
    return {
        "name": f"广州测试{n}有限公司",
        "email": f"ent{n}@example.com",
        "phone": f"+86 138 {n:04d} 8000",
        "audiences": {"enterprise": {"uscc": uscc(n), "district": district, "industry": "C", "scale": scale}},
        "domains": ["employment-entrepreneurship"],
        "channels": ["email"],
        **extra,
    }


POLICY = {
    "title": "关于支持中小微企业稳岗扩岗的若干措施",
    "summary": "对吸纳就业的小微企业给予补贴。",
    "domain": "employment-entrepreneurship",
    "doc_number": "穗人社规字〔2026〕3号",
    "url": "https://example.gov.cn/policy/123",
    "interpretation_url": "https://example.gov.cn/jd/123",
    "produced_on": "2026-11-20",
    "targeting": {
        "audiences": ["enterprise", "market_entity"],
        "where": {"all": [
            {"attr": "enterprise.district", "op": "in", "value": ["haizhu", "tianhe"]},
            {"attr": "enterprise.scale", "op": "in", "value": ["small", "micro"]},
        ]},
    },
    "channels": ["email"],
}


async def test_department_keys_and_auth(api: Api) -> None:
    dept = await api.department()
    assert dept["api_key"].startswith("psk_")
    # A valid department key on an admin endpoint: known, but without the right (issue 13: 403, was 401).
    status, body = await api.call("POST", "/v1/departments", dept["api_key"], json={"name": "x", "domains": ["healthcare"]})
    assert status == 403 and body["status"] == 403
    status, body = await api.call("POST", "/v1/departments", None, json={"name": "x", "domains": ["healthcare"]})
    assert status == 401
    status, body = await api.call("POST", "/v1/departments", ADMIN, json={"name": "市人社局", "domains": ["healthcare"]})
    assert status == 409
    status, body = await api.call("POST", "/v1/departments", ADMIN, json={"name": "y", "domains": ["nope"]})
    assert status == 422 and body["errors"][0]["field"] == "domains[0]"
    status, _ = await api.call("POST", "/v1/policies/preview", "psk_wrong", json=POLICY)
    assert status == 401


async def test_subscriber_validation_and_duplicates(api: Api) -> None:
    dept = await api.department()
    key = dept["api_key"]
    status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(1))
    assert status == 201, body
    assert body["phone"] == "+8613800018000" and body["status"] == "active"
    status, got = await api.call("GET", f"/v1/subscribers/{body['id']}", key)
    assert status == 200 and got["audiences"]["enterprise"]["uscc"] == uscc(1)

    status, dup = await api.call("POST", "/v1/subscribers", key, json={**enterprise(2), "email": "ENT1@example.com".lower()})
    assert status == 409 and dup["errors"][0]["field"] == "email"

    bad = enterprise(3)
    bad["audiences"]["enterprise"]["uscc"] = USCC[:-1] + "0"
    bad["phone"] = "+86 123"
    bad["channels"] = ["email", "sms", "fax"]
    bad["domains"] = ["healthcare", "astrology"]
    del bad["email"]
    status, problem = await api.call("POST", "/v1/subscribers", key, json=bad)
    assert status == 422
    fields = {e["field"] for e in problem["errors"]}
    assert {"phone", "audiences.enterprise.uscc", "domains[1]", "channels[0]", "channels[2]"} <= fields, fields

    status, _ = await api.call("GET", "/v1/subscribers/999999", key)
    assert status == 404


async def test_csv_import_keeps_good_rows_and_reports_bad(api: Api) -> None:
    dept = await api.department()
    header = "name,email,phone,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"
    rows = [
        f"甲公司,a@example.com,13800138000,employment-entrepreneurship,email,{uscc(10)},haizhu,C,small",
        f"乙公司,b@example.com,13900139000,*,email;sms,{uscc(11)},atlantis,C,small",  # bad district: row 3
        f"甲公司分号,,13800138000,tax-administration,sms,{uscc(10)},haizhu,C,small",  # same phone as row 2: merged
        f"丙公司,not-an-email,,employment-entrepreneurship,email,{uscc(12)},tianhe,C,micro",  # row 5
    ]
    status, body = await api.call("POST", "/v1/subscribers/import", dept["api_key"],
                                  data="\n".join([header, *rows]).encode(), headers={"Content-Type": "text/csv"})
    assert status == 200, body
    assert body["imported"] == 1 and body["merged"] == 1
    assert [(r["row"], r["errors"][0]["field"]) for r in body["rejected"]] == [
        (3, "audiences.enterprise.district"), (5, "email")]
    status, sub = await api.call("GET", "/v1/subscribers/1", dept["api_key"])
    assert sub["domains"] == ["employment-entrepreneurship", "tax-administration"]
    assert sub["channels"] == ["email", "sms"]


async def test_a_large_import_refreshes_postgresql_statistics(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ANALYZE_AFTER rows the import analyses the subscriber tables, so a policy published
    right after it is planned for the tables as they now are."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite keeps no statistics unless asked")
    monkeypatch.setattr(importing, "ANALYZE_AFTER", 2)
    engine = create_async_engine(database_url)

    async def analyses() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'subscriber_channels'"
            ))).scalar_one())

    before = await analyses()
    dept = await api.department()
    header = "name,email,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"
    rows = [f"公司{i},c{i}@example.com,*,email,{uscc(40 + i)},haizhu,C,small" for i in range(2)]
    status, body = await api.call("POST", "/v1/subscribers/import", dept["api_key"],
                                  data="\n".join([header, *rows]).encode(), headers={"Content-Type": "text/csv"})
    assert status == 200 and body["imported"] == 2, body

    async def analysed() -> bool:  # the statistics views catch up within a moment
        return await analyses() > before

    try:
        assert await eventually(analysed, timeout=10)
    finally:
        await engine.dispose()


async def test_preview_and_explain(api: Api) -> None:
    dept = await api.department()
    key = dept["api_key"]
    ids = []
    for n, (district, scale) in enumerate([("haizhu", "small"), ("tianhe", "micro"), ("yuexiu", "small"), ("haizhu", "large")]):
        status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(n + 20, district, scale))
        ids.append(body["id"])
    other = enterprise(30)
    other["domains"] = ["healthcare"]
    await api.call("POST", "/v1/subscribers", key, json=other)

    status, preview = await api.call("POST", "/v1/policies/preview", key, json=POLICY)
    assert status == 200, preview
    assert preview == {"total": 2, "by_channel": {"email": 2}, "by_audience": {"enterprise": 2, "market_entity": 0}}

    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy
    status, why = await api.call("GET", f"/v1/policies/{policy['id']}/explain?subscriber_id={ids[2]}", key)
    assert status == 200 and why["matched"] is False
    assert any("enterprise.district" in r and "fails" in r for r in why["reasons"])
    status, why = await api.call("GET", f"/v1/policies/{policy['id']}/explain?subscriber_id={ids[0]}", key)
    assert why["matched"] is True


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"domain": "healthcare"}, 403, "domain"),
        ({"domain": "astrology"}, 422, "domain"),
        ({"targeting": {"audiences": ["enterprise"], "where": {"all": [{"attr": "enterprise.size", "op": "eq", "value": 1}]}}},
         422, "targeting.where.all[0].attr"),
        ({"channels": ["pigeon"]}, 422, "channels[0]"),
        ({"disclosure": "on_request"}, 422, "disclosure"),
        ({"title": ""}, 422, "title"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
async def test_policy_errors_are_problems(api: Api, change: dict[str, Any], status: int, field: str) -> None:
    dept = await api.department()
    got, body = await api.call("POST", "/v1/policies", dept["api_key"], json={**POLICY, **change})
    assert got == status, body
    assert body["status"] == status and any(e["field"] == field for e in body["errors"])


async def test_malformed_and_oversized_bodies(api: Api) -> None:
    dept = await api.department()
    status, body = await api.call("POST", "/v1/policies", dept["api_key"], data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and body["title"]
    status, body = await api.call("POST", "/v1/policies", dept["api_key"], data=b"x" * (1 << 20 + 1),
                                  headers={"Content-Type": "application/json"})
    assert status == 413
    status, body = await api.call("GET", "/v1/policies/abc", dept["api_key"])
    assert status == 404 and body["status"] == 404


async def test_idempotency_key(api: Api) -> None:
    dept = await api.department()
    headers = {"Idempotency-Key": "k-1"}
    s1, first = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY, headers=headers)
    s2, again = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY, headers=headers)
    assert s1 == s2 == 202 and first == again
    s3, _ = await api.call("POST", "/v1/policies", dept["api_key"], json={**POLICY, "title": "另一项"}, headers=headers)
    assert s3 == 409


async def test_health_and_openapi(api: Api) -> None:
    assert (await api.call("GET", "/healthz"))[0] == 200
    status, ready = await api.call("GET", "/readyz")
    assert status == 200 and ready["checks"] == {"database": "ok", "redis": "ok"}
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")


def test_every_route_is_documented() -> None:
    from aiohttp import web

    from pushsvc.app import build_app
    from pushsvc.settings import Settings

    app: web.Application = build_app(Settings(admin_token=ADMIN, secret_key="s" * 40, _env_file=None))  # type: ignore[call-arg]
    doc = openapi_document()
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented


async def test_a_template_that_cannot_render_refuses_the_publish(settings: Any, tmp_path: Any) -> None:
    import shutil

    import aiohttp
    from aiohttp.test_utils import TestServer

    from pushsvc.app import build_app
    from pushsvc.settings import REPO_ROOT

    shutil.copytree(REPO_ROOT / "templates", tmp_path / "templates")
    broken = tmp_path / "templates" / "email" / "policy.en.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "{{ no_such_value }}", encoding="utf-8")
    server = TestServer(build_app(settings.model_copy(update={"templates_dir": tmp_path / "templates"})), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        api = Api(session, str(server.make_url("")).rstrip("/"))
        dept = await api.department()
        status, body = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY)
        assert status == 422 and body["errors"][0]["field"] == "channels[0]" and "no_such_value" in body["errors"][0]["message"]
        status, body = await api.call("GET", "/v1/policies/1", dept["api_key"])
        assert status == 404  # nothing was stored
    await server.close()


async def test_policy_page_escapes_policy_text(api: Api) -> None:
    dept = await api.department()
    evil = {**POLICY, "title": "<script>alert(1)</script>稳岗", "summary": "<img src=x onerror=alert(1)>"}
    status, policy = await api.call("POST", "/v1/policies", dept["api_key"], json=evil)
    assert status == 202
    status, page = await api.call("GET", f"/p/{policy['id']}")
    assert status == 200
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;稳岗" in page
    assert "<img src=x" not in page and POLICY["doc_number"] in page


@pytest.mark.parametrize("busy", [sa.exc.TimeoutError("QueuePool limit reached"), TimeoutError()])
async def test_no_database_connection_in_time_is_503_with_retry_after(busy: Exception) -> None:
    # A receipts storm once exhausted PostgreSQL's pool: the gateway must hear "busy, retry", not a 500.
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from pushsvc.http.server import problems_middleware, request_id_middleware

    async def overloaded(request: web.Request) -> web.Response:
        raise busy

    app = web.Application(middlewares=[request_id_middleware, problems_middleware])
    app.router.add_post("/v1/receipts/sms", overloaded)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/v1/receipts/sms", data=b"{}")
        body = await resp.json(content_type=None)
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert body["status"] == 503 and "busy" in body["title"] + body.get("detail", "")
