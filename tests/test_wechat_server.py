"""The Official Account's server URL against the WeChat stand-in, which signs and encrypts its
events the platform's way: the URL check, signatures (plain and safe mode) accepted and refused,
and TEMPLATESENDJOBFINISH moving template messages to delivered or failed (both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from pushsvc.api.wechat_server import SERVER_PATH
from pushsvc.channels.wechat import crypto, events
from pushsvc.dev.stubs.wechat import ACCOUNT_ID, WechatStub
from pushsvc.store.schema import deliveries, subscribers
from tests.conftest import Api, Workers
from tests.test_self_service import db_rows
from tests.test_wechat import APP_SECRET, APPID, TEMPLATE_ID, Stub, finished, publish, seed

SERVER_TOKEN = "pushsvcServerToken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    server = WechatStub(APPID, APP_SECRET, 20, 3.0, hang_seconds=3.0, server_token=SERVER_TOKEN,
                        encoding_aes_key=AES_KEY)
    url = await server.start("127.0.0.1", 0)
    yield Stub(server, url)
    await server.stop()


@pytest.fixture
def settings_env(settings_env: dict[str, str], stub: Stub) -> dict[str, str]:
    return settings_env | {
        "PUSHSVC_WECHAT_API_URL": stub.url,
        "PUSHSVC_WECHAT_OAUTH_URL": stub.url,
        "PUSHSVC_WECHAT_APPID": APPID,
        "PUSHSVC_WECHAT_SECRET": APP_SECRET,
        "PUSHSVC_WECHAT_TEMPLATE_ID": TEMPLATE_ID,
        "PUSHSVC_WECHAT_TOKEN": SERVER_TOKEN,
        "PUSHSVC_WECHAT_ENCODING_AES_KEY": AES_KEY,
        "PUSHSVC_WECHAT_TIMEOUT": "2",
        "PUSHSVC_QUIET_HOURS": "00:00-00:00",
    }


@pytest.fixture
def wechat(stub: Stub, api: Api) -> Stub:
    """The stand-in, its events going to the API under test."""
    stub.server.server_url = api.base + SERVER_PATH
    return stub


async def send_event(stub: Stub, **event: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(stub.url + "/_stub/events", json=event) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


def signed_query(timestamp: str = "1733300000", nonce: str = "n0nce", token: str = SERVER_TOKEN) -> dict[str, str]:
    return {"signature": crypto.signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}


# -- the platform's own sample, and what refuses a message ---------------------------------------

# The Official Account platform's published sample for its message encryption.
SAMPLE_KEY, SAMPLE_APPID, SAMPLE_TOKEN = AES_KEY, "wx2c2769f8efd9abc2", "spamtest"
SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_SIGNATURE = "1409735669", "1320562132", "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXp"
    "bUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlp"
    "Kn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD"
    "1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


def test_the_platforms_sample_is_read_as_the_platform_wrote_it() -> None:
    assert crypto.signature(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == SAMPLE_SIGNATURE
    message = events.fields(crypto.MessageCrypto(SAMPLE_KEY, SAMPLE_APPID).decrypt(SAMPLE_ENCRYPT))
    assert message["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs" and message["Content"] == "abcdteT"
    with pytest.raises(crypto.BadMessage):  # encrypted for another account
        crypto.MessageCrypto(SAMPLE_KEY, APPID).decrypt(SAMPLE_ENCRYPT)
    with pytest.raises(crypto.BadMessage):  # damaged
        crypto.MessageCrypto(SAMPLE_KEY, SAMPLE_APPID).decrypt(SAMPLE_ENCRYPT[:-8] + "AAAAAAA=")
    ours = crypto.MessageCrypto(AES_KEY, APPID)
    assert ours.decrypt(ours.encrypt("<xml>中文 ]]></xml>")) == "<xml>中文 ]]></xml>"
    with pytest.raises(events.BadXml):  # entities are never expanded
        events.fields(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>')


async def test_server_url_check_echoes_only_when_signed(api: Api) -> None:
    status, body = await api.call("GET", SERVER_PATH, params={**signed_query(), "echostr": "4711abc"})
    assert status == 200 and body == "4711abc"
    for query in ({**signed_query(token="anotherToken"), "echostr": "4711abc"},
                  {**signed_query(), "timestamp": "1733300001", "echostr": "4711abc"},  # signed another time
                  {"echostr": "4711abc"}):
        status, body = await api.call("GET", SERVER_PATH, params=query)
        assert status == 401 and "4711abc" not in str(body), body


async def test_events_plain_and_safe_mode_signed_and_refused(wechat: Stub, api: Api) -> None:
    for encrypted in (False, True):
        answer = await send_event(wechat, type="unsubscribe", openid="o_nobody_we_know", encrypted=encrypted)
        assert answer["status"] == 200 and answer["body"] == "success", answer

    plain = (f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><FromUserName><![CDATA[o_x]]></FromUserName>"
             "<CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>")
    headers = {"Content-Type": "text/xml"}
    status, body = await api.call("POST", SERVER_PATH, params=signed_query(token="forged"), data=plain, headers=headers)
    assert status == 401 and "o_x" not in str(body)

    # Safe mode: the outer signature alone is not enough, the encrypted text is signed too ...
    sealer = crypto.MessageCrypto(AES_KEY, APPID)
    encrypt = sealer.encrypt(plain)
    outer = f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    query = {**signed_query(), "encrypt_type": "aes", "msg_signature": crypto.signature(SERVER_TOKEN, "1", "2", encrypt)}
    status, _ = await api.call("POST", SERVER_PATH, params=query, data=outer, headers=headers)
    assert status == 401
    query["msg_signature"] = crypto.signature(SERVER_TOKEN, "1733300000", "n0nce", encrypt)
    status, body = await api.call("POST", SERVER_PATH, params=query, data=outer, headers=headers)
    assert status == 200 and body == "success"
    # ... and a message encrypted for another appid is refused, whoever signed it.
    other = crypto.MessageCrypto(AES_KEY, "wx_another_account").encrypt(plain)
    outer = f"<xml><Encrypt><![CDATA[{other}]]></Encrypt></xml>"
    query["msg_signature"] = crypto.signature(SERVER_TOKEN, "1733300000", "n0nce", other)
    status, body = await api.call("POST", SERVER_PATH, params=query, data=outer, headers=headers)
    assert status == 400 and body["status"] == 400
    status, body = await api.call("POST", SERVER_PATH, params=signed_query(), data="<xml><A>", headers=headers)
    assert status == 400


async def ledger(settings_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """openid -> its WeChat ledger row (status, error, provider_ref)."""
    D, S = deliveries.c, subscribers.c
    rows = await db_rows(settings_env, sa.select(S.wechat_openid, D.status, D.error, D.provider_ref)
                         .select_from(deliveries.join(subscribers, S.id == D.subscriber_id)).where(D.channel == "wechat"))
    return {row.wechat_openid: {"status": row.status, "error": row.error, "ref": row.provider_ref} for row in rows}


async def test_template_send_then_job_finished_moves_it_forward_only(
    wechat: Stub, api: Api, workers: Workers, settings_env: dict[str, str]
) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, [("o_reader_ok", "", "zh-CN"), ("o_reader_blocks", "", "zh-CN"), ("o_reader_sysfail", "", "en")])
    workers.start()
    policy = await publish(api, key)
    assert (await finished(api, key, policy["id"], 3))["sent"] == 3
    msgids = {m["target"]: str(m["msgid"]) for m in await wechat.messages()}
    before = await ledger(settings_env)
    assert {openid: row["ref"] for openid, row in before.items()} == msgids  # the ledger keeps the msgid

    for openid, status in (("o_reader_ok", "success"), ("o_reader_blocks", "failed:user block"),
                           ("o_reader_sysfail", "failed: system failed")):
        answer = await send_event(wechat, type="templatesendjobfinish", openid=openid, msgid=msgids[openid],
                                  status=status)
        assert answer["status"] == 200 and answer["body"] == "success", answer
    after = await ledger(settings_env)
    assert after["o_reader_ok"]["status"] == "delivered"
    assert after["o_reader_blocks"] == {**after["o_reader_blocks"], "status": "failed", "error": "not delivered: user-block"}
    assert after["o_reader_sysfail"]["status"] == "failed"
    assert after["o_reader_sysfail"]["error"] == "not delivered: system-failed"

    # Again, or contradicting: a delivered message never goes back, a failed one stays failed.
    await send_event(wechat, type="templatesendjobfinish", openid="o_reader_ok", msgid=msgids["o_reader_ok"],
                     status="failed:user block", encrypted=False)
    await send_event(wechat, type="templatesendjobfinish", openid="o_reader_blocks", msgid=msgids["o_reader_blocks"],
                     status="success")
    assert await ledger(settings_env) == after
    status, body = await api.call("GET", f"/v1/policies/{policy['id']}", key)
    assert body["deliveries"]["wechat"]["delivered"] == 1 and body["deliveries"]["wechat"]["failed"] == 2
