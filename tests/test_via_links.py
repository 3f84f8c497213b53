"""Links that say which channel brought the reader: a policy's SMS, WeChat message and QR codes each
carry a short link of their own (no longer than the one they replace: the SMS does not grow), its
e-mail links to the page naming `?via=email`; following each counts a visit under its channel in
the department report. Real servers: the API, worker processes, the SMTP sink, the SMS and WeChat
stand-ins, on every test database."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.links import ShortLinks
from pushsvc.core.messages import DigestMessage, PolicyMessage
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.delivery.digest import run_digest
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store.schema import short_links
from tests.conftest import Api, Workers
from tests.test_api_foundation import POLICY, enterprise
from tests.test_digest import local, next_day, publish
from tests.test_lifecycle import services_for, wait
from tests.test_qr import decode, fetch
from tests.test_self_service import db_rows
from tests.test_sms import SIGN, SMS_SECRET, gateway, stub_get  # noqa: F401  (the SMS stand-in)
from tests.test_wechat import PUBLIC, Stub, robot_window, stub, wechat_env  # noqa: F401  (the WeChat stand-in)

ALL_THREE = {**POLICY, "channels": ["email", "sms", "wechat"]}
SHORT_LINK = re.compile(rf"{re.escape(PUBLIC)}/s/\w+")


@pytest.fixture
def settings_env(settings_env: dict[str, str], stub: Stub, robot_window: float) -> dict[str, str]:  # noqa: F811
    return settings_env | wechat_env(stub, robot_window) | {"PUSHSVC_SMS_SECRET": SMS_SECRET,
                                                             "PUSHSVC_SMS_SIGN_NAME": SIGN}


async def codes(settings_env: dict[str, str], policy_id: int) -> dict[str, str]:
    """target -> code of the policy's short links."""
    S = short_links.c
    rows = await db_rows(settings_env, sa.select(S.target, S.code).where(S.target.like(f"/p/{policy_id}%")))
    return {r.target: r.code for r in rows}


def mail_parts(raw: bytes) -> tuple[str, str, bytes]:
    """(text/plain, text/html, the inline QR's PNG) of a message as the sink got it."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    [png] = [p.get_content() for p in msg.walk() if p.get_content_type() == "image/png"]
    return text, html, png


async def follow(api: Api, url: str, browser: str) -> tuple[int, str | None]:
    """(status, Location) of following `url` (one of ours) once, as `browser`."""
    assert url.startswith(PUBLIC)
    async with api.session.get(api.base + url.removeprefix(PUBLIC), headers={"User-Agent": browser},
                               allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location")


async def reading_of(api: Api, key: str, policy_id: int) -> dict[str, Any]:
    status, report = await api.call("GET", "/v1/reports/department", key)
    assert status == 200, report
    [figures] = [p for p in report["policies"] if p["id"] == policy_id]
    return {ch: r["opened"] for ch, r in figures["reading"].items()}


async def test_each_channel_s_link_counts_under_that_channel(
    api: Api, workers: Workers, sink: SmtpSink, gateway: SmsGatewayStub, stub: Stub,  # noqa: F811
    settings_env: dict[str, str],
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    status, person = await api.call("POST", "/v1/subscribers", key, json=enterprise(
        1, channels=["email", "sms", "wechat"], wechat={"openid": "openid_reader_1"}))
    assert status == 201, person
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, published = await api.call("POST", "/v1/policies", key, json=ALL_THREE)
    assert status == 202, published
    pid = published["id"]
    await wait(api, key, pid, {"email": 1, "sms": 1, "wechat": 1})

    # Issued at publish: the page's own code and one per short-link reader, all as long.
    issued = await codes(settings_env, pid)
    assert set(issued) == {f"/p/{pid}", f"/p/{pid}?via=sms", f"/p/{pid}?via=wechat", f"/p/{pid}?via=qr"}
    assert len(set(issued.values())) == 4 and len({len(c) for c in issued.values()}) == 1
    link = {via: f"{PUBLIC}/s/{issued[f'/p/{pid}?via={via}']}" for via in ("sms", "wechat", "qr")}

    # What each channel carried.
    [mail] = sink.messages()
    text, html, png = mail_parts(mail.data)
    assert f"{PUBLIC}/p/{pid}?via=email" in text and f'href="{PUBLIC}/p/{pid}?via=email"' in html
    assert f"{PUBLIC}/p/{pid}/feedback?lang=zh-CN" in html  # the form's link counts nothing: no `via`
    assert f"/p/{pid}\n" not in text and f'href="{PUBLIC}/p/{pid}"' not in html  # no untagged page link
    [(mail_qr, _)] = decode(png)
    assert mail_qr == link["qr"]

    [sms] = await stub_get(api, gateway, "/_stub/messages")
    assert SHORT_LINK.findall(sms["text"]) == [link["sms"]] and sms["params"]["url"] == link["sms"]

    [wechat] = await stub.messages()
    assert wechat["target"] == "openid_reader_1" and wechat["body"]["url"] == link["wechat"]

    status, _, page_qr = await fetch(api, f"/p/{pid}/qr.png")
    assert status == 200 and decode(page_qr) == [(link["qr"], "M")]
    status, _, poster = await fetch(api, f"/p/{pid}/poster")
    assert status == 200 and link["qr"] in poster.decode("utf-8")

    # Following each: a short link is counted and leads to the bare page; e-mail's is the page.
    for url, browser in [(link["sms"], "phone A"), (link["wechat"], "phone B"), (mail_qr, "phone C")]:
        assert await follow(api, url, browser) == (302, f"{PUBLIC}/p/{pid}")
    assert (await follow(api, f"{PUBLIC}/p/{pid}?via=email", "mail D"))[0] == 200
    assert await follow(api, link["sms"], "phone A") == (302, f"{PUBLIC}/p/{pid}")  # once a day: not again
    assert (await follow(api, f"{PUBLIC}/p/{pid}", "phone A"))[0] == 200  # where it led: counts nothing more
    assert await reading_of(api, key, pid) == {"email": 1, "sms": 1, "wechat": 1, "qr": 1, "link": 0}

    # Its lifecycle notices carry the same links.
    sink.clear()
    status, repealed = await api.call("POST", f"/v1/policies/{pid}/repeal", key, json={"reason": "已被取代"})
    assert status == 202, repealed
    await wait(api, key, pid, {"email": 1, "sms": 1, "wechat": 1}, notice=1)
    [mail] = sink.messages()
    text, _, png = mail_parts(mail.data)
    assert f"{PUBLIC}/p/{pid}?via=email" in text and decode(png)[0][0] == link["qr"]
    notice_sms = (await stub_get(api, gateway, "/_stub/messages"))[-1]
    assert "废止" in notice_sms["text"] and SHORT_LINK.findall(notice_sms["text"]) == [link["sms"]]
    notice_wechat = (await stub.messages())[-1]
    assert notice_wechat["body"]["url"] == link["wechat"]


async def test_a_policy_without_channel_codes_keeps_its_one_short_link(
    api: Api, settings_env: dict[str, str]
) -> None:
    """Policies published before the per-channel codes: every reader gets the plain short link
    (counted as `link`), the SMS no longer than it was. No data migration is needed."""
    key = (await api.department())["api_key"]
    status, published = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": ["email", "sms"]})
    assert status == 202, published
    pid = published["id"]
    issued = await codes(settings_env, pid)
    plain = f"{PUBLIC}/s/{issued[f'/p/{pid}']}"
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:  # as a policy published before them has it
        async with engine.begin() as conn:
            await conn.execute(sa.delete(short_links).where(short_links.c.target.like(f"/p/{pid}?via=%")))
    finally:
        await engine.dispose()

    status, old = await api.call("GET", f"/v1/policies/{pid}/render?channel=sms&locale=zh-CN", key)
    assert status == 200, old
    assert SHORT_LINK.findall(old["text"]) == [plain] and len(plain) == len(f"{PUBLIC}/s/{issued[f'/p/{pid}?via=sms']}")
    status, _, png = await fetch(api, f"/p/{pid}/qr.png")
    assert status == 200 and decode(png) == [(plain, "M")]
    status, location = await follow(api, plain, "phone A")
    assert (status, location) == (302, f"{PUBLIC}/p/{pid}")
    assert await reading_of(api, key, pid) == {"email": 0, "sms": 0, "wechat": 0, "qr": 0, "link": 1}


async def test_digest_links_carry_the_channel_to_each_policy(
    api: Api, settings: Settings, sink: SmtpSink, gateway: SmsGatewayStub, settings_env: dict[str, str],  # noqa: F811
) -> None:
    """The e-mail digest lists each policy's page with `?via=email`; the SMS digest's one link is a
    short link of its own to the digest's page, which passes `via=sms` on to the policies' links."""
    key = (await api.department())["api_key"]
    for n, channel in ((1, "email"), (2, "sms")):
        status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(
            n, channels=[channel], frequency="daily", quiet_hours={"start": "00:00", "end": "00:00"}))
        assert status == 201, body
    async with services_for(settings.model_copy(update={"sms_url": gateway.url})) as svc:
        pid = await publish(api, svc, key, "关于稳岗扩岗的若干措施", ["email", "sms"])
        day = next_day(datetime.now(LOCAL_ZONE).date(), monday=False)
        assert await run_digest(svc, local(day, 8, 35)) == 2

    [mail] = sink.messages()
    text, html, png = mail_parts(mail.data)
    assert f"{PUBLIC}/p/{pid}?via=email" in text and f'href="{PUBLIC}/p/{pid}?via=email"' in html
    [digest_page] = re.findall(rf"{re.escape(PUBLIC)}/d/[\w.-]+\?via=email", text)
    [(mail_qr, _)] = decode(png)
    [sms] = await stub_get(api, gateway, "/_stub/messages")
    [sms_link] = SHORT_LINK.findall(sms["text"])
    assert len({sms_link, mail_qr}) == 2  # each reader a short link of its own

    status, location = await follow(api, sms_link, "phone A")
    assert status == 302 and location == digest_page.replace("via=email", "via=sms")
    status, page = await api.call("GET", location.removeprefix(PUBLIC))
    assert status == 200 and f'href="/p/{pid}?via=sms"' in page
    assert (await follow(api, f"{PUBLIC}/p/{pid}?via=sms", "phone A"))[0] == 200
    assert (await follow(api, digest_page, "mail B"))[0] == 200
    assert (await follow(api, f"{PUBLIC}/p/{pid}?via=email", "mail B"))[0] == 200
    status, location = await follow(api, mail_qr, "phone C")
    assert status == 302 and location == digest_page.replace("via=email", "via=qr")
    assert await reading_of(api, key, pid) == {"email": 1, "sms": 1, "wechat": 0, "qr": 0, "link": 0}


def _policy(**links: str) -> PolicyMessage:
    return PolicyMessage(
        policy_id=7, kind="policy", version="1", title="t", summary="s", department="d",
        domain="employment-entrepreneurship", doc_number=None, page_url=f"{PUBLIC}/p/7",
        short_url=f"{PUBLIC}/s/plain00", source_url=None, interpretation_url=None, produced_on=None,
        effective_on=None, expires_on=None, short_links=ShortLinks(**links))


def test_the_message_answers_each_channel_its_link() -> None:
    message = _policy(sms=f"{PUBLIC}/s/smscode", wechat=f"{PUBLIC}/s/wxcode0", qr=f"{PUBLIC}/s/qrcode0")
    assert message.link_for("sms") == f"{PUBLIC}/s/smscode"
    assert message.link_for("wechat") == f"{PUBLIC}/s/wxcode0"
    assert message.link_for("qr") == f"{PUBLIC}/s/qrcode0"
    assert message.link_for("email") == f"{PUBLIC}/p/7?via=email"
    assert message.fields_for("email")["page_url"] == f"{PUBLIC}/p/7?via=email"
    assert message.fields_for("email")["short_url"] == f"{PUBLIC}/s/qrcode0"  # e-mail shows it as its QR
    assert message.fields_for("sms")["short_url"] == f"{PUBLIC}/s/smscode"
    assert message.page_url == f"{PUBLIC}/p/7"  # the message itself is unchanged
    # Some readers without a code of their own: the plain short link.
    partial = _policy(sms=f"{PUBLIC}/s/smscode")
    assert partial.link_for("wechat") == partial.link_for("qr") == f"{PUBLIC}/s/plain00"


def test_a_digest_lists_each_policy_as_followed_from_its_channel() -> None:
    digest = DigestMessage(
        digest_id=3, title="每日政策摘要", period="daily", period_start=date(2026, 12, 4), period_end=date(2026, 12, 4),
        policies=({"title": "a", "department": "d", "doc_number": None, "page_url": f"{PUBLIC}/p/7",
                   "short_url": f"{PUBLIC}/s/plain00"},),
        digest_url=f"{PUBLIC}/d/tok", short_url=f"{PUBLIC}/s/digest0")
    for via in ("email", "wechat", "sms"):
        [listed] = digest.fields_for(via)["policies"]
        assert listed["page_url"] == listed["short_url"] == f"{PUBLIC}/p/7?via={via}"
    assert digest.link_for("sms") == digest.link_for("qr") == f"{PUBLIC}/s/digest0"  # the digest's own page
    assert digest.policies[0]["page_url"] == f"{PUBLIC}/p/7"
