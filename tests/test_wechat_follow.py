"""Followers of the Official Account: leaving it stops their template messages; the subscribe page
opened inside WeChat learns the OpenID through the web authorisation (the stand-in plays it); a
QR poster's scene makes a pending subscription and replies with the link that finishes it. Real
servers and worker processes, both databases."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from pushsvc.store.schema import audit_log, consents, subscriber_domains
from tests.conftest import Api, Workers, eventually
from tests.test_self_service import (
    EMAIL,
    QR_QUERY,
    Visitor,
    channels_of,
    db_rows,
    error_beside,
    link_in,
    mail_to,
    subscribe_fields,
    subscriber,
)
from tests.test_wechat import PUBLIC, Stub, finished, publish, seed
from tests.test_wechat_server import send_event, settings_env, stub, wechat  # noqa: F401  (fixtures)

IN_WECHAT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x1800322c) NetType/WIFI Language/zh_CN")
TOKEN_FIELD = re.compile(r'name="wechat_openid_token" value="([^"]+)"')


def local(url: str, api: Api) -> str:
    """A link to the public address, opened on the server under test."""
    assert url.startswith(PUBLIC), url
    return url.removeprefix(PUBLIC)


async def test_unsubscribe_event_stops_template_messages(
    wechat: Stub, api: Api, workers: Workers, settings_env: dict[str, str]  # noqa: F811
) -> None:
    workers.start()  # idle until the policy below
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, [("o_stays_0001", "", "zh-CN"), ("o_leaves_0002", "", "zh-CN")])
    leaver = await subscriber(settings_env, wechat_openid="o_leaves_0002")
    answer = await send_event(wechat, type="unsubscribe", openid="o_leaves_0002")  # encrypted: safe mode
    assert answer == {**answer, "status": 200, "body": "success"}
    assert await channels_of(settings_env, leaver.id) == set()
    withdrawn = await db_rows(settings_env, sa.select(consents.c.action, consents.c.source)
                              .where(consents.c.subscriber_id == leaver.id, consents.c.action == "withdrawn"))
    assert [tuple(r) for r in withdrawn] == [("withdrawn", "wechat-event:unsubscribe")]
    # In the audit log as the person's own act.
    A = audit_log.c
    logged = await db_rows(settings_env, sa.select(A.actor, A.action).where(A.subscriber_id == leaver.id))
    assert (f"subscriber:{leaver.id}", "subscriber.unsubscribe") in [tuple(r) for r in logged]
    await send_event(wechat, type="unsubscribe", openid="o_leaves_0002")  # again: nothing more happens
    assert len(await db_rows(settings_env, sa.select(consents.c.id).where(consents.c.subscriber_id == leaver.id,
                                                                           consents.c.action == "withdrawn"))) == 1

    policy = await publish(api, key)
    await finished(api, key, policy["id"], 1)
    assert [m["target"] for m in await wechat.messages()] == ["o_stays_0001"]


async def test_subscribe_page_inside_wechat_gets_the_openid_by_web_authorisation(
    wechat: Stub, api: Api, workers: Workers, sink: Any, settings_env: dict[str, str]  # noqa: F811
) -> None:
    workers.start()  # it boots while the pages are used; it sends the confirmation at the end
    reader = "o_reader_from_wechat_0001"
    async with api.session.post(wechat.url + "/_stub/reader", json={"openid": reader}) as resp:
        assert resp.status == 200
    person = Visitor(api)
    # Outside WeChat the page is as it was: no authorisation, no hidden OpenID.
    status, html = await person.get("/subscribe" + QR_QUERY)
    assert status == 200 and "wechat_openid_token" not in html

    status, _, headers = await person.open("GET", "/subscribe" + QR_QUERY + "&lang=en", **{"User-Agent": IN_WECHAT})
    assert status == 302
    authorize = urlsplit(headers["Location"])
    asked = parse_qs(authorize.query)
    assert f"{authorize.scheme}://{authorize.netloc}" == wechat.url and authorize.path == "/connect/oauth2/authorize"
    assert asked["scope"] == ["snsapi_base"] and asked["appid"] and re.fullmatch(r"[A-Za-z0-9]{1,128}", asked["state"][0])
    async with api.session.get(headers["Location"], allow_redirects=False) as resp:  # WeChat's side
        assert resp.status == 302
        back = resp.headers["Location"]
    assert back.startswith(f"{PUBLIC}/subscribe/wechat?")
    status, html = await person.get(local(back, api))
    assert status == 200, html
    token = TOKEN_FIELD.search(html)
    assert token and reader not in html  # carried signed, never shown for editing
    assert 'id="c-wechat" name="channel" value="wechat" checked' in html and 'value="enterprise" checked' in html

    # A state that is not ours (or a changed query) gets no openid.
    status, html = await person.get(local(back.replace("lang=en", "lang=zh-CN"), api))
    assert status == 400 and "wechat_openid_token" not in html

    # A forged token is refused beside the OpenID field, everything typed kept.
    await person.get(local(back, api))  # a code is good once: this one fails at the exchange
    status, html = await person.get(local(back, api))
    assert "wechat_openid_token" not in html
    fields = subscribe_fields(channel=["email", "wechat"], lang="en")
    status, html = await person.submit("/subscribe", {**fields, "wechat_openid_token": token[1][:-3] + "xyz"})
    assert status == 422 and error_beside(html, "f-wechat-openid") and EMAIL in html

    status, html = await person.submit("/subscribe", {**fields, "wechat_openid_token": token[1], "wechat_openid": "typed"})
    assert status == 200, html
    row = await subscriber(settings_env, email=EMAIL)
    assert row.wechat_openid == reader and row.status == "pending"

    confirmation = (await eventually(lambda: mail_to(sink, EMAIL), timeout=60))[0]
    await person.get(link_in(confirmation, "/confirm/"))
    status, _ = await person.submit(link_in(confirmation, "/confirm/"), {})
    assert status == 200
    assert await channels_of(settings_env, row.id) == {"email", "wechat"}


async def test_qr_scene_follow_makes_a_pending_subscription_and_links_to_finishing_it(
    wechat: Stub, api: Api, settings_env: dict[str, str]  # noqa: F811
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    body = {"domains": ["employment-entrepreneurship"], "audiences": ["enterprise"], "expire_seconds": 86400}
    assert (await api.call("POST", "/v1/wechat/scenes", None, json=body))[0] == 401
    status, refused = await api.call("POST", "/v1/wechat/scenes", key, json={**body, "domains": ["healthcare"]})
    assert status == 403, refused
    status, refused = await api.call("POST", "/v1/wechat/scenes", key, json={**body, "audiences": ["pirates"]})
    assert status == 422 and refused["errors"][0]["field"] == "audiences[0]"
    status, scene = await api.call("POST", "/v1/wechat/scenes", key, json=body)
    assert status == 201, scene
    made = await wechat.get("/_stub/qrcodes")
    assert made == [{"ticket": scene["ticket"], "action_name": "QR_STR_SCENE", "scene": scene["scene"],
                     "expire_seconds": 86400}]
    assert len(scene["scene"]) <= 64 and scene["image_url"].endswith(scene["ticket"].replace("=", "%3D"))

    follower = "o_scanned_the_poster_01"
    answer = await send_event(wechat, type="subscribe", openid=follower, ticket=scene["ticket"])
    assert answer["status"] == 200 and answer["reply_signed"] is True, answer
    reply = answer["reply"]
    assert reply["MsgType"] == "text" and reply["ToUserName"] == follower and reply["FromUserName"].startswith("gh_")
    link = re.search(rf"{re.escape(PUBLIC)}/subscribe\?wechat=\S+", reply["Content"])
    assert link, reply
    row = await subscriber(settings_env, wechat_openid=follower)
    assert row.status == "pending" and row.supplied_by == "person" and row.email is None
    domains = await db_rows(settings_env, sa.select(subscriber_domains.c.domain)
                            .where(subscriber_domains.c.subscriber_id == row.id))
    assert [d.domain for d in domains] == ["employment-entrepreneurship"]
    assert await channels_of(settings_env, row.id) == set()  # nothing is sent until it is finished

    # Scanning again (a SCAN event, plain mode) keeps the one pending subscription.
    again = await send_event(wechat, type="scan", openid=follower, scene=scene["scene"], encrypted=False)
    assert again["reply"] and "/subscribe?wechat=" in again["reply"]["Content"]
    assert len(await db_rows(settings_env, sa.select(sa.literal(1)).select_from(sa.table("subscribers"))
                             .where(sa.column("wechat_openid") == follower))) == 1
    # A scene we did not sign is some other use of the account's codes: no reply.
    other = await send_event(wechat, type="scan", openid=follower, scene="someone-elses-scene")
    assert other["body"] == "success"

    person = Visitor(api)
    status, html = await person.get(local(link[0], api))
    assert status == 200 and TOKEN_FIELD.search(html) and follower not in html
    assert 'value="enterprise" checked' in html and 'value="employment-entrepreneurship" checked' in html
    fields = subscribe_fields(channel=["email", "wechat"],
                              wechat_openid_token=TOKEN_FIELD.search(html)[1])  # type: ignore[index]
    status, html = await person.submit("/subscribe", fields)
    assert status == 200, html
    finished_row = await subscriber(settings_env, email=EMAIL)
    assert finished_row.wechat_openid == follower
    assert (await subscriber(settings_env, wechat_openid=follower)).id in (row.id, finished_row.id)
    waiting = await db_rows(settings_env, sa.select(sa.column("id"), sa.column("status")).select_from(sa.table("subscribers"))
                            .where(sa.column("wechat_openid") == follower, sa.column("status") != "erased"))
    assert [w.id for w in waiting] == [finished_row.id]  # the scan's pending request gave way to the form's
