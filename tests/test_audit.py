"""The audit log over real HTTP: every read of a person's record or deliveries by a department key
or the admin, every change, export, erase and import leaves entries with who, when, what and the
request id; a department reads its own entries only, the admin every one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pushsvc.cli import main as cli
from pushsvc.core.clock import now
from pushsvc.services import open_services
from pushsvc.settings import Settings
from pushsvc.store.db import Database
from pushsvc.store.schema import audit_log
from pushsvc.subscriptions import changes
from pushsvc.subscriptions.export import data_json
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_api_foundation import POLICY, enterprise
from tests.test_keys import command_line  # noqa: F401  (fixture: `pushsvc` in this process)


async def call(api: Api, method: str, path: str, token: str, request_id: str, **kwargs: Any) -> Any:
    headers = {"X-Request-Id": request_id, **kwargs.pop("headers", {})}
    status, body = await api.call(method, path, token, headers=headers, **kwargs)
    assert status < 300, body
    return body


async def log(api: Api, token: str, query: str = "") -> list[dict[str, Any]]:
    status, page = await api.call("GET", f"/v1/audit{query}", token)
    assert status == 200, page
    return page["items"]


def entries_of(items: list[dict[str, Any]], request_id: str) -> list[tuple[str, str, int | None]]:
    return [(e["actor"], e["action"], e["subscriber_id"]) for e in items if e["request_id"] == request_id]


async def test_reads_and_changes_leave_entries_a_department_sees_its_own(api: Api) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key, theirs = dept["api_key"], other["api_key"]
    status, keys = await api.call("GET", f"/v1/departments/{dept['id']}/keys", key)
    me = f"department:{dept['id']}:key:{keys['items'][0]['id']}"

    created = await call(api, "POST", "/v1/subscribers", key, "req-create", json=enterprise(1))
    sid = created["id"]
    await call(api, "GET", f"/v1/subscribers/{sid}", key, "req-read")
    await call(api, "GET", f"/v1/subscribers/{sid}", ADMIN, "req-admin-read")
    policy = await call(api, "POST", "/v1/policies", key, "req-publish", json=POLICY)
    await call(api, "GET", f"/v1/policies/{policy['id']}/explain?subscriber_id={sid}", key, "req-explain")
    csv = "name,email,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale,domains,channels\n"
    csv += "".join(f"公司{n},imp{n}@example.com,{enterprise(n)['audiences']['enterprise']['uscc']},haizhu,C,small,"
                   f"employment-entrepreneurship,email\n" for n in (50, 51))
    report = await call(api, "POST", "/v1/subscribers/import", key, "req-import", data=csv.encode(),
                        headers={"Content-Type": "text/csv"})
    assert report["imported"] == 2
    # The other department's own work, which the first must not see.
    their_sub = await call(api, "POST", "/v1/subscribers", theirs, "req-theirs", json=enterprise(2))

    mine = await log(api, key)
    assert entries_of(mine, "req-create") == [(me, "subscriber.create", sid)]
    assert entries_of(mine, "req-read") == [(me, "subscriber.read", sid)]
    assert entries_of(mine, "req-explain") == [(me, "subscriber.explain", sid)]
    imported = entries_of(mine, "req-import")
    assert [a for _, a, _ in imported] == ["subscriber.import"] * 2 and sid not in {s for _, _, s in imported}
    assert entries_of(mine, "req-admin-read") == [] and entries_of(mine, "req-theirs") == []
    explain = next(e for e in mine if e["request_id"] == "req-explain")
    assert explain["detail"] == {"policy_id": policy["id"]} and explain["at"]

    every = await log(api, ADMIN)
    assert entries_of(every, "req-admin-read") == [("admin", "subscriber.read", sid)]
    assert entries_of(every, "req-theirs")[0][1:] == ("subscriber.create", their_sub["id"])
    assert [e["subscriber_id"] for e in await log(api, ADMIN, f"?subscriber_id={sid}")] == [sid] * 4
    assert [e["request_id"] for e in await log(api, key, f"?subscriber_id={sid}")] == ["req-create", "req-read", "req-explain"]
    assert await log(api, theirs, f"?subscriber_id={sid}") == []
    only = await log(api, ADMIN, f"?department_id={other['id']}")
    assert {e["request_id"] for e in only} == {"req-theirs"}

    # Pages, and periods in local dates.
    status, page = await api.call("GET", "/v1/audit?limit=2", key)
    assert len(page["items"]) == 2 and page["next_cursor"]
    status, rest = await api.call("GET", f"/v1/audit?limit=100&cursor={page['next_cursor']}", key)
    assert [e["id"] for e in page["items"] + rest["items"]] == [e["id"] for e in mine]
    assert await log(api, key, "?from=2000-01-01&to=2000-12-31") == []
    assert len(await log(api, key, "?from=2000-01-01")) == len(mine)


@pytest.mark.parametrize("query, field", [
    ("subscriber_id=abc", "subscriber_id"), ("subscriber_id=0", "subscriber_id"), ("from=2026-13-01", "from"),
    ("to=yesterday", "to"), ("from=2026-05-02&to=2026-05-01", "to"), ("cursor=%%%", "cursor"), ("limit=0", "limit"),
])
async def test_bad_filters_are_422_naming_the_field(api: Api, query: str, field: str) -> None:
    dept = await api.department()
    status, body = await api.call("GET", f"/v1/audit?{query}", dept["api_key"])
    assert status == 422 and body["errors"][0]["field"] == field, body


async def test_a_department_may_not_read_anothers_log(api: Api) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    await api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(1))
    status, body = await api.call("GET", f"/v1/audit?department_id={dept['id']}", other["api_key"])
    assert status == 403 and body["errors"][0]["field"] == "department_id"
    assert (await api.call("GET", "/v1/audit"))[0] == 401


async def test_delivery_listings_record_every_subscriber_shown(api: Api, workers: Workers) -> None:
    dept = await api.department()
    key = dept["api_key"]
    ids = [(await call(api, "POST", "/v1/subscribers", key, f"c{n}", json=enterprise(n)))["id"] for n in range(3)]
    workers.start()
    policy = await call(api, "POST", "/v1/policies", key, "pub", json=POLICY)

    async def listed() -> Any:
        status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries", key)
        return page if len(page["items"]) == 3 else None

    await eventually(listed)
    await call(api, "GET", f"/v1/policies/{policy['id']}/deliveries", key, "req-ledger")
    await call(api, "GET", "/v1/deliveries?status=sent", ADMIN, "req-dead")
    every = await log(api, ADMIN)
    ledger = entries_of(every, "req-ledger")
    assert sorted(s for _, a, s in ledger if a == "deliveries.read") == ids
    assert {e["detail"]["policy_id"] for e in every if e["request_id"] == "req-ledger"} == {policy["id"]}
    dead = entries_of(every, "req-dead")
    assert {a for a, _, _ in dead} == {"admin"} and {s for _, _, s in dead} <= set(ids) | {None}


async def test_a_persons_export_and_erase_are_recorded(api: Api, settings: Settings) -> None:
    dept = await api.department()
    sid = (await api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(1)))[1]["id"]
    svc = await open_services(settings)
    try:
        assert await data_json(svc, sid) is not None
        await changes.pause(svc, sid)
        await changes.erase(svc, sid, "manage")
        async with svc.db.read() as conn:
            rows = (await conn.execute(sa.select(audit_log).where(audit_log.c.subscriber_id == sid)
                                       .order_by(audit_log.c.id))).mappings().all()
    finally:
        await svc.close()
    person = f"subscriber:{sid}"
    assert [(r["actor"], r["action"]) for r in rows][-3:] == [
        (person, "subscriber.export"), (person, "subscriber.pause"), (person, "subscriber.erase")]
    # The entries outlive the person's record, and hold no contact of theirs.
    every = await log(api, ADMIN, f"?subscriber_id={sid}")
    assert every[-1]["action"] == "subscriber.erase"
    assert "ent1@example.com" not in str(every) and "8000" not in str([e["detail"] for e in every])


@pytest.mark.usefixtures("command_line")
def test_purge_deletes_only_entries_past_the_retention_period(settings: Settings,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    old, recent = now() - timedelta(days=4 * 365), now() - timedelta(days=2 * 365)

    async def write_and_read(rows: list[dict[str, Any]]) -> list[str]:
        db = Database(settings.database_url)
        try:
            async with db.write() as conn:
                for row in rows:
                    await conn.execute(sa.insert(audit_log).values(actor="admin", action="subscriber.read", **row))
            async with db.read() as conn:
                return list((await conn.execute(sa.select(audit_log.c.request_id).order_by(audit_log.c.id))).scalars())
        finally:
            await db.close()

    asyncio.run(write_and_read([{"at": old, "request_id": "old", "subscriber_id": 1},
                                {"at": recent, "request_id": "recent", "subscriber_id": 1}]))
    assert cli(["audit", "purge"]) == 0
    assert capsys.readouterr().out.startswith("1 audit entries older than 3 years deleted")
    assert asyncio.run(write_and_read([])) == ["recent"]
