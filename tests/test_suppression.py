"""The suppression list on SMS and WeChat: an invalid number (at send time or in a receipt), an R
reply and a WeChat refusal (43101) suppress the contact; the fan-out records `suppressed`; a code
typed in on the pages lifts it; the department report counts suppressions per reason."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.services import open_services
from pushsvc.settings import Settings
from pushsvc.store.schema import suppressions
from pushsvc.subscriptions.suppression import listing
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_self_service import Visitor, code_in, codes_to, sms_sent
from tests.test_sms import SMS_POLICY, SMS_SECRET, gateway, phone, post_signed, seed, settled, stub_get, stub_post  # noqa: F401
from tests.test_wechat import Stub, finished, publish, robot_window, stub, wechat_env  # noqa: F401
from tests.test_wechat import seed as seed_wechat


@pytest.fixture
def settings_env(settings_env: dict[str, str], stub: Stub, robot_window: float) -> dict[str, str]:  # noqa: F811
    return settings_env | wechat_env(stub, robot_window) | {
        "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_SMS_SIGN_NAME": "广州政务公开"}


async def _open(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(suppressions).where(suppressions.c.lifted_at.is_(None))
                                      .order_by(suppressions.c.id))
            return list(rows.mappings())
    finally:
        await engine.dispose()


async def test_invalid_numbers_and_r_replies_suppress_the_phone_until_a_code_proves_it(
    api: Api, workers: Workers, gateway: SmsGatewayStub, settings_env: dict[str, str], settings: Settings  # noqa: F811
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 5)
    await stub_post(api, gateway, "/_stub/faults", {"invalid_numbers": [phone(0)]})
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, first = await api.call("POST", "/v1/policies", key, json=SMS_POLICY)
    assert status == 202
    await eventually(lambda: settled(api, key, first["id"], 5, ("delivered", "failed")), timeout=60)
    db = settings_env["PUSHSVC_DATABASE_URL"]
    assert [(r["kind"], r["reason"], r["detail"]) for r in await _open(db)] == [
        ("phone", "invalid_number", "isv.MOBILE_NUMBER_ILLEGAL")]  # refused at send time

    # A receipt calling a number empty (空号) and a reply R each suppress theirs; again, nothing more.
    ids = {r["phone_number"]: r["message_id"] for m in await stub_get(api, gateway, "/_stub/messages")
           for r in m["results"] if r["code"] == "OK"}
    receipt = {"receipts": [{"message_id": ids[phone(1)[3:]], "phone_number": phone(1)[3:], "delivered": False,
                             "error_code": "MN:0001"}]}
    reply = {"messages": [{"phone_number": phone(2), "content": "R"}]}
    for _ in range(2):
        assert (await post_signed(api, "/v1/receipts/sms", receipt))[0] == 200
        assert (await post_signed(api, "/v1/inbound/sms", reply))[0] == 200
    # A receipt for a message id not ours suppresses nothing.
    stranger = {"receipts": [{"message_id": "not-ours", "phone_number": phone(3)[3:], "delivered": False,
                              "error_code": "MN:0001"}]}
    assert (await post_signed(api, "/v1/receipts/sms", stranger))[0] == 200
    found = sorted((r["reason"], r["detail"]) for r in await _open(db))
    assert found == [("invalid_number", "MN:0001"), ("invalid_number", "isv.MOBILE_NUMBER_ILLEGAL"), ("reply_r", None)]
    svc = await open_services(settings)
    try:
        listed = await listing(svc, "phone")
        assert [r["reason"] for r in listed] == ["invalid_number", "invalid_number", "reply_r"]
        assert all(phone(i) not in str(listed) and phone(i)[3:] not in str(listed) for i in range(5))
        assert [r["id"] for r in await listing(svc, "phone", after_id=listed[0]["id"], limit=1)] == [listed[1]["id"]]
        assert await listing(svc, "email") == []
    finally:
        await svc.close()

    # The next policy skips both invalid numbers (the R reply also took SMS off its subscription).
    await stub_post(api, gateway, "/_stub/faults", {})
    async with api.session.delete(gateway.url + "/_stub/messages"):
        pass
    status, second = await api.call("POST", "/v1/policies", key, json={**SMS_POLICY, "title": "第二项政策"})
    final = await eventually(lambda: settled(api, key, second["id"], 4, ("delivered", "suppressed")), timeout=60)
    assert final["suppressed"] == 2 and final["failed"] == 0
    numbers = {n for m in await stub_get(api, gateway, "/_stub/messages") for n in m["numbers"]}
    assert numbers == {phone(3)[3:], phone(4)[3:]}

    # The report counts the period's suppressed messages per reason, for the department only.
    status, report = await api.call("GET", "/v1/reports/department", key)
    assert status == 200 and report["suppressed_by_reason"] == {"invalid_number": 2}
    other = await api.department("市市场监管局")
    status, body = await api.call("GET", f"/v1/reports/department?department_id={dept['id']}", other["api_key"])
    assert status in (403, 422), body
    assert (await api.call("GET", "/v1/reports/department"))[0] == 401
    status, report = await api.call("GET", f"/v1/reports/department?department_id={dept['id']}", ADMIN)
    assert status == 200 and report["suppressed_by_reason"] == {"invalid_number": 2}

    # The person with number 1 proves it on the manage page with a code: it is lifted.
    person = Visitor(api)
    await person.get("/manage")
    status, _ = await person.submit("/manage", {"contact": phone(1), "action": "send"})
    assert status == 200
    [text] = await eventually(lambda: _codes_to(api, gateway, phone(1)[3:]), timeout=20)
    status, _ = await person.submit("/manage", {"phone": phone(1), "code": code_in(text), "action": "enter"})
    assert status == 303
    assert sorted(r["reason"] for r in await _open(db)) == ["invalid_number", "reply_r"]
    status, third = await api.call("POST", "/v1/policies", key, json={**SMS_POLICY, "title": "第三项政策"})
    final = await eventually(lambda: settled(api, key, third["id"], 4, ("delivered", "suppressed")), timeout=60)
    assert final["suppressed"] == 1 and final["delivered"] == 3


async def _codes_to(api: Api, gw: SmsGatewayStub, national: str) -> list[str]:
    return codes_to(await sms_sent(api, gw), national)


async def test_a_wechat_refusal_suppresses_the_openid(
    stub: Stub, api: Api, workers: Workers, settings_env: dict[str, str]  # noqa: F811
) -> None:
    key = (await api.department())["api_key"]
    await seed_wechat(api, key, [("openid_follower_1", "", "zh-CN"), ("openid_refuser", "", "zh-CN")])
    await stub.faults(refused=["openid_refuser"])
    workers.start()
    first = await publish(api, key)
    final = await finished(api, key, first["id"], 2)
    assert final["sent"] == 1 and final["failed"] == 1
    [row] = await _open(settings_env["PUSHSVC_DATABASE_URL"])
    assert (row["kind"], row["reason"], row["detail"]) == ("wechat", "wechat_refused", "43101")
    await stub.faults()
    second = await publish(api, key, title="第二项政策")
    final = await finished(api, key, second["id"], 1)
    assert final["sent"] == 1 and final["suppressed"] == 1 and final["failed"] == 0
    assert "openid_refuser" not in [m["target"] for m in await stub.messages()]  # refused, then never tried
