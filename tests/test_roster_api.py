"""The whole subscriber API (issue 17, item 3): list with filters and cursor pages, PATCH with only
the fields given and the person's own choices winning, DELETE erasing, and the department's own
reference `external_id`; another department's records are never seen nor touched."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.tokens import TokenSigner, unsubscribe_token
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store.schema import audit_log, subscriber_channels, subscribers
from pushsvc.subscriptions.roster import PERSON_SET, WITHDRAWN
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_ownership import CSV, aid_recipient, two_departments
from tests.test_self_service import Visitor, link_in, mail_to


def enterprise(email: str, uscc: str | None = None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"district": "haizhu", "industry": "C", "scale": "small"}
    if uscc:
        attrs["uscc"] = uscc
    return {"name": "广州某某科技有限公司", "email": email, "audiences": {"enterprise": attrs},
            "domains": ["employment-entrepreneurship"], "channels": ["email"], **extra}


async def create(api: Api, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = await api.call("POST", "/v1/subscribers", key, json=body)
    assert status == 201, created
    return created


async def rows_of(settings: Settings, query: Any) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).all()
    await engine.dispose()
    return list(found)


async def test_list_filters_pages_and_isolation(api: Api, settings: Settings) -> None:
    a_key, b_key = await two_departments(api)
    mine = [await create(api, a_key, aid_recipient(f"a{i}@example.com", domains=["social-insurance"],
                                                   external_id=f"A-{i}")) for i in range(5)]
    firm = await create(api, a_key, enterprise("firm@example.com", "91350100M000100Y43"))
    theirs = await create(api, b_key, aid_recipient("b@example.com", phone="+8613800138001"))

    status, page = await api.call("GET", "/v1/subscribers?limit=4", a_key)
    assert status == 200 and [s["id"] for s in page["items"]] == [s["id"] for s in mine[:4]]
    status, rest = await api.call("GET", f"/v1/subscribers?limit=4&cursor={page['next_cursor']}", a_key)
    assert [s["id"] for s in rest["items"]] == [mine[4]["id"], firm["id"]] and rest["next_cursor"] is None

    async def ids(query: str, key: str = a_key) -> list[int]:
        status, body = await api.call("GET", f"/v1/subscribers?{query}", key)
        assert status == 200, body
        return [s["id"] for s in body["items"]]

    assert await ids("q=a3@example") == [mine[3]["id"]]
    assert await ids("q=M000100Y43") == [firm["id"]]  # part of the USCC
    assert await ids("q=科技") == [firm["id"]]  # part of the name
    assert await ids("audience=enterprise") == [firm["id"]]
    assert await ids("external_id=A-2") == [mine[2]["id"]]
    assert await ids("status=unsubscribed") == []
    # The other department's record: not by its e-mail, not by its phone in any spelling, not listed.
    assert await ids("q=b@example.com") == [] and await ids("q=138 0013 8001") == []
    assert theirs["id"] not in await ids("limit=1000")
    assert await ids("q=138 0013 8001", b_key) == [theirs["id"]]
    assert set(await ids("limit=1000", ADMIN)) == {s["id"] for s in [*mine, firm, theirs]}

    status, body = await api.call("GET", "/v1/subscribers?status=gone&audience=nobody", a_key)
    assert status == 422 and {e["field"] for e in body["errors"]} == {"status", "audience"}
    status, _ = await api.call("GET", "/v1/subscribers")
    assert status == 401
    # Every record returned is an audited read, by the key that read it.
    reads = await rows_of(settings, sa.select(audit_log.c.subscriber_id).where(
        audit_log.c.action == "subscriber.list", audit_log.c.department_id == 1))
    assert {r.subscriber_id for r in reads} == {s["id"] for s in [*mine, firm]}


async def test_patch_changes_only_the_fields_given(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    sub = await create(api, a_key, aid_recipient("wang@example.com", domains=["social-insurance"]))
    status, patched = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key,
                                     json={"phone": "138 0013 8000", "external_id": "R-1", "frequency": "weekly"})
    assert status == 200, patched
    assert patched["phone"] == "+8613800138000" and patched["external_id"] == "R-1" and patched["frequency"] == "weekly"
    assert {k: v for k, v in patched.items() if k not in ("phone", "external_id", "frequency")} == \
        {k: v for k, v in sub.items() if k not in ("phone", "external_id", "frequency")}
    status, again = await api.call("GET", f"/v1/subscribers/{sub['id']}", a_key)
    assert again == patched

    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key, json={"email": "not an address"})
    assert status == 422 and [e["field"] for e in body["errors"]][0] == "email"
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key, json={"channels": ["email", "fax"]})
    assert status == 422 and [e["field"] for e in body["errors"]] == ["channels[1]"]
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key, json={"colour": "red"})
    assert status == 422 and [e["field"] for e in body["errors"]] == ["colour"]
    # Another department: as if it did not exist, and nothing changed.
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", b_key, json={"name": "X"})
    assert status == 404
    status, after = await api.call("GET", f"/v1/subscribers/{sub['id']}", a_key)
    assert after == patched


async def test_a_withdrawn_channel_stays_off(api: Api, settings: Settings) -> None:
    a_key, _ = await two_departments(api)
    sub = await create(api, a_key, aid_recipient("wang@example.com", phone="+8613800138000",
                                                 domains=["social-insurance"], channels=["email", "sms"]))
    token = unsubscribe_token(TokenSigner(settings.secret_key), sub["id"], "email")
    status, _ = await api.call("POST", f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert status == 200
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key, json={"channels": ["email", "sms"]})
    assert status == 409 and body["errors"] == [{"field": "channels[0]", "message": WITHDRAWN}]
    # The department may still turn off what is on, and correct what is its own.
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key, json={"channels": ["sms"], "name": "王五五"})
    assert status == 200 and body["channels"] == ["sms"] and body["name"] == "王五五"


async def test_what_the_person_set_on_the_pages_is_not_overwritten(
    api: Api, workers: Workers, sink: SmtpSink
) -> None:
    workers.start()
    a_key, _ = await two_departments(api)
    sub = await create(api, a_key, aid_recipient("wang@example.com", domains=["social-insurance"], household_size=None))
    person = Visitor(api)
    await person.get("/manage")
    await person.submit("/manage", {"contact": "wang@example.com", "action": "send"})
    [mail] = await eventually(lambda: mail_to(sink, "wang@example.com"), timeout=20)
    path = link_in(mail, "/manage/")
    await person.get(path)
    status, _ = await person.submit(path, {
        "group": "aid_recipient", "aid_recipient.district": "tianhe", "aid_recipient.assistance_type": "dibao",
        "domain": ["social-insurance"], "channel": ["email"], "name": "王五", "email": "wang@example.com",
        "frequency": "daily", "locale": "en", "action": "save"})
    assert status == 200
    status, chosen = await api.call("GET", f"/v1/subscribers/{sub['id']}", a_key)
    assert chosen["frequency"] == "daily"

    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key,
                                  json={"frequency": "immediate", "locale": "zh-CN", "external_id": "R-9"})
    assert status == 409 and body["errors"] == [{"field": "frequency", "message": PERSON_SET},
                                                {"field": "locale", "message": PERSON_SET}]
    status, after = await api.call("GET", f"/v1/subscribers/{sub['id']}", a_key)
    assert after == chosen
    # The department's own reference is not the person's choice: it may change; the same values
    # given again change nothing of theirs.
    status, body = await api.call("PATCH", f"/v1/subscribers/{sub['id']}", a_key,
                                  json={"frequency": "daily", "external_id": "R-9"})
    assert status == 200, body
    assert body == {**chosen, "external_id": "R-9"}


async def test_delete_erases_and_the_record_is_gone(api: Api, settings: Settings) -> None:
    a_key, b_key = await two_departments(api)
    sub = await create(api, a_key, aid_recipient("wang@example.com", phone="+8613800138000",
                                                 domains=["social-insurance"], external_id="R-1"))
    status, _ = await api.call("DELETE", f"/v1/subscribers/{sub['id']}", b_key)
    assert status == 404
    status, _ = await api.call("DELETE", f"/v1/subscribers/{sub['id']}", a_key)
    assert status == 204
    [row] = await rows_of(settings, sa.select(subscribers).where(subscribers.c.id == sub["id"]))
    assert row.status == "erased" and (row.name, row.email, row.phone, row.external_id) == (None, None, None, None)
    assert await rows_of(settings, sa.select(subscriber_channels).where(subscriber_channels.c.subscriber_id == sub["id"])) == []
    for method in ("GET", "PATCH", "DELETE"):
        status, _ = await api.call(method, f"/v1/subscribers/{sub['id']}", a_key, json={})
        assert status == 404
    status, page = await api.call("GET", "/v1/subscribers", a_key)
    assert page["items"] == []
    [erase] = await rows_of(settings, sa.select(audit_log.c.actor).where(
        audit_log.c.action == "subscriber.erase", audit_log.c.subscriber_id == sub["id"]))
    assert erase.actor.startswith("department:1:key:")
    # The reference is free again, and the contacts.
    await create(api, a_key, aid_recipient("wang@example.com", domains=["social-insurance"], external_id="R-1"))


async def test_external_id_is_unique_within_the_department(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    first = await create(api, a_key, aid_recipient("one@example.com", domains=["social-insurance"], external_id="E-1"))
    status, body = await api.call("POST", "/v1/subscribers", a_key,
                                  json=aid_recipient("two@example.com", domains=["social-insurance"], external_id="E-1"))
    assert status == 409 and [e["field"] for e in body["errors"]] == ["external_id"]
    second = await create(api, a_key, aid_recipient("two@example.com", domains=["social-insurance"], external_id="E-2"))
    status, body = await api.call("PATCH", f"/v1/subscribers/{second['id']}", a_key, json={"external_id": "E-1"})
    assert status == 409 and [e["field"] for e in body["errors"]] == ["external_id"]
    # Another department has its own references.
    await create(api, b_key, aid_recipient("three@example.com", external_id="E-1"))
    status, body = await api.call("POST", "/v1/subscribers", a_key, json={**aid_recipient("x@example.com"), "external_id": " "})
    assert status == 422 and [e["field"] for e in body["errors"]] == ["external_id"]

    # An import: the column is read, a clash is a rejected row naming the field, the rest kept.
    header = "name,email,domains,channels,external_id,aid_recipient.district,aid_recipient.assistance_type"
    rows = ["甲,four@example.com,social-insurance,email,E-4,haizhu,dibao",
            "乙,five@example.com,social-insurance,email,E-1,haizhu,dibao",
            "丙,six@example.com,social-insurance,email,E-4,haizhu,dibao"]
    status, report = await api.call("POST", "/v1/subscribers/import", a_key, data="\n".join([header, *rows]).encode(),
                                    headers=CSV)
    assert status == 200, report
    assert report["imported"] == 1 and [(r["row"], r["errors"][0]["field"]) for r in report["rejected"]] == \
        [(3, "external_id"), (4, "external_id")]
    status, page = await api.call("GET", "/v1/subscribers?external_id=E-4", a_key)
    assert [s["email"] for s in page["items"]] == ["four@example.com"]
    status, page = await api.call("GET", f"/v1/subscribers/{first['id']}", a_key)
    assert page["external_id"] == "E-1"
