"""The WeChat channel against the WeChat stand-in over real HTTP: robot webhooks and template
messages, end to end through the API and real worker processes (both databases), and the
channel on its own for what needs no ledger."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
import pytest

from pushsvc.channels.wechat import WechatChannel, robot
from pushsvc.core.identifiers import uscc_check_char
from pushsvc.core.messages import PolicyMessage, Recipient
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner
from pushsvc.dev.stubs.wechat import WechatStub
from pushsvc.settings import Settings
from tests.conftest import ADMIN, SECRET, Api, Workers, eventually
from tests.test_api_foundation import POLICY

APPID = "wx0123456789abcdef"
APP_SECRET = "stub-app-secret-0123456789"
TEMPLATE_ID = "TPL-policy-0001"
ROBOT_MAX = 20
PUBLIC = "https://push.example.gov.cn"
LONG_TITLE = "关于进一步支持中小微企业稳岗扩岗和高校毕业生就业创业的若干措施"  # 31 characters


@dataclass(frozen=True)
class Stub:
    """The stand-in, driven like a test or the demo would: over HTTP."""

    server: WechatStub
    url: str

    def webhook(self, key: str) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(self.url + path) as resp:
            assert resp.status == 200
            return await resp.json()

    async def messages(self) -> list[dict[str, Any]]:
        return await self.get("/_stub/messages")  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        return await self.get("/_stub/stats")  # type: ignore[no-any-return]

    async def faults(self, **faults: Any) -> None:
        async with aiohttp.ClientSession() as s, s.post(self.url + "/_stub/faults", json=faults) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
def robot_window() -> float:
    """Seconds of the robot limit's window: the platform's 60 shrunk to keep the suite fast
    (tests parametrize it); the limiter itself is tested at 20 a minute in test_ratelimit.py."""
    return 3.0


@pytest.fixture
async def stub(robot_window: float) -> AsyncIterator[Stub]:
    server = WechatStub(APPID, APP_SECRET, ROBOT_MAX, robot_window, hang_seconds=3.0)
    url = await server.start("127.0.0.1", 0)
    yield Stub(server, url)
    await server.stop()


def wechat_env(stub: Stub, robot_window: float) -> dict[str, str]:
    return {
        "PUSHSVC_WECHAT_API_URL": stub.url,
        "PUSHSVC_WECHAT_APPID": APPID,
        "PUSHSVC_WECHAT_SECRET": APP_SECRET,
        "PUSHSVC_WECHAT_TEMPLATE_ID": TEMPLATE_ID,
        # The stand-in is plain http on loopback: allowed only because its origin is listed so.
        "PUSHSVC_WECHAT_WEBHOOK_ORIGINS": f"https://qyapi.weixin.qq.com,{stub.url}",
        "PUSHSVC_WECHAT_TIMEOUT": "2",
        "PUSHSVC_WECHAT_ROBOT_WINDOW_SECONDS": str(robot_window),
        "PUSHSVC_QUIET_HOURS": "00:00-00:00",  # none: these tests run at any hour
    }


@pytest.fixture
def settings_env(settings_env: dict[str, str], stub: Stub, robot_window: float) -> dict[str, str]:
    return settings_env | wechat_env(stub, robot_window)


# -- helpers -------------------------------------------------------------------------------------

HEADER = "name,wechat_openid,wechat_webhook,locale,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"


def uscc(i: int) -> str:
    body = f"91440101MA{i:07d}"
    return body + uscc_check_char(body)


async def seed(api: Api, key: str, rows: list[tuple[str, str, str]]) -> None:
    """rows: (openid, webhook URL, locale), either contact may be empty."""
    lines = [HEADER] + [
        f"企业{i},{openid},{webhook},{locale},*,wechat,{uscc(i)},haizhu,C,small"
        for i, (openid, webhook, locale) in enumerate(rows)
    ]
    status, body = await api.call("POST", "/v1/subscribers/import", key, data="\n".join(lines).encode(),
                                  headers={"Content-Type": "text/csv"})
    assert status == 200 and body["imported"] == len(rows), body


async def publish(api: Api, key: str, **changes: Any) -> dict[str, Any]:
    status, policy = await api.call("POST", "/v1/policies", key, json={**POLICY, "channels": ["wechat"], **changes})
    assert status == 202, policy
    return policy  # type: ignore[no-any-return]


async def counts(api: Api, key: str, policy_id: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    return body["deliveries"]["wechat"] | {"_status": body["status"]}  # type: ignore[no-any-return]


async def finished(api: Api, key: str, policy_id: int, expected: int, timeout: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        c = await counts(api, key, policy_id)
        done = c["sent"] + c["failed"] >= expected and c["_status"] == "published"
        return c if done and c["queued"] == c["sending"] == c["held"] == 0 else None

    return await eventually(check, timeout=timeout)  # type: ignore[no-any-return]


def at_most_per_window(times: list[float], limit: int, window: float) -> bool:
    times = sorted(times)
    return all(later - earlier >= window for earlier, later in zip(times, times[limit:]))


def start_two(workers: Workers, batch_size: int) -> None:
    """Two worker processes taking one small batch at a time, so both get some of the work."""
    for _ in range(2):
        workers.start(PUSHSVC_FANOUT_BATCH_SIZE=str(batch_size), PUSHSVC_WORKER_MAX_JOBS="1")


def both_delivered(workers: Workers) -> bool:
    logs = [(workers.logdir / f"worker-{i}.log").read_text() for i in range(len(workers.procs))]
    return len(logs) == 2 and all("→ deliver" in log for log in logs)


def delivered_once(messages: list[dict[str, Any]], targets: set[str]) -> bool:
    seen = Counter(m["target"] for m in messages)
    return set(seen) == targets and all(n == 1 for n in seen.values())


# -- end to end ----------------------------------------------------------------------------------

async def test_webhook_markdown_and_template_message(stub: Stub, api: Api, workers: Workers) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, [
        ("", stub.webhook("org-a"), "zh-CN"),  # an organisation's group
        ("openid_person_b", "", "zh-CN"),  # a person
        ("openid_person_c", stub.webhook("org-c"), "en"),  # both: the group gets it
    ])
    workers.start()
    long_summary = "对吸纳就业的小微企业给予一次性扩岗补助，" * 150  # 3,000 characters, 9,000 bytes
    policy = await publish(api, key, title=LONG_TITLE, summary=long_summary)
    final = await finished(api, key, policy["id"], 3)
    assert final["sent"] == 3 and final["failed"] == 0

    messages = await stub.messages()
    by_target = {m["target"]: m for m in messages}
    assert set(by_target) == {"org-a", "org-c", "openid_person_b"} and len(messages) == 3

    sent_template = by_target["openid_person_b"]
    assert sent_template["kind"] == "template"
    body = sent_template["body"]
    short = body["url"]
    assert short.startswith(f"{PUBLIC}/s/") and body["template_id"] == TEMPLATE_ID
    assert all(len(f["value"]) <= 20 for f in body["data"].values())
    assert body["data"]["thing1"]["value"] == LONG_TITLE[:19] + "…"

    unsubscribe = re.compile(rf"\n\n\[(退订|Unsubscribe)\]\({re.escape(PUBLIC)}/u/[\w.-]+\)$")
    for robot_key, link in (("org-a", f"[查看全文]({short})"), ("org-c", f"[Read the full text]({short})")):
        sent = by_target[robot_key]
        content = sent["body"]["markdown"]["content"]
        assert sent["kind"] == "webhook" and sent["body"]["msgtype"] == "markdown"
        # Cut close to the limit less the room kept for the group's own unsubscribe line, which follows.
        assert 4096 - robot.FOOTER_ROOM - 100 < len(content.encode()) <= 4096
        own = unsubscribe.search(content)
        assert content.startswith(f"## {LONG_TITLE}") and own and content[: own.start()].endswith(link)

    # What GET /render shows is what was sent, with a placeholder for each subscriber's own link.
    status, shown = await api.call("GET", f"/v1/policies/{policy['id']}/render?channel=wechat&locale=zh-CN", key)
    assert status == 200, shown
    sent_a = by_target["org-a"]["body"]["markdown"]["content"]
    own_a = unsubscribe.search(sent_a)
    assert own_a is not None
    assert shown["webhook"]["markdown"]["content"] == sent_a[: own_a.start()] + "\n\n[退订]({unsubscribe_url})"
    assert shown["template"] == {**body, "touser": "{openid}"}


async def test_one_robot_key_is_paced_within_a_job(stub: Stub, api: Api, workers: Workers, robot_window: float) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, [("", stub.webhook("busy-group"), "zh-CN")] * 25)
    workers.start()
    policy = await publish(api, key)
    final = await finished(api, key, policy["id"], 25)
    assert final["sent"] == 25

    arrivals = sorted(m["at"] for m in await stub.messages())
    assert len(arrivals) == 25
    assert arrivals[ROBOT_MAX] - arrivals[0] >= robot_window  # the 21st waited for the window
    assert at_most_per_window(arrivals, ROBOT_MAX, robot_window)
    assert "45009" not in (await stub.stats())["errcodes"]  # paced, not discovered by failing


@pytest.mark.parametrize("robot_window", [6.0])  # longer than a test job may wait: the rest are held
async def test_two_workers_sharing_a_robot_key_never_exceed_it(
    stub: Stub, api: Api, workers: Workers, robot_window: float
) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, [("", stub.webhook("shared-group"), "zh-CN")] * 30)
    start_two(workers, batch_size=5)  # six deliver jobs, spread over both workers
    policy = await publish(api, key)
    await eventually(lambda: _has_held(api, key, policy["id"]), timeout=30, interval=0.1)
    final = await finished(api, key, policy["id"], 30)
    assert final["sent"] == 30

    messages = await stub.messages()
    arrivals = sorted(m["at"] for m in messages)
    assert len(arrivals) == 30
    assert arrivals[ROBOT_MAX] - arrivals[0] >= robot_window
    assert at_most_per_window(arrivals, ROBOT_MAX, robot_window)
    assert (await stub.stats())["errcodes"] == {}
    assert both_delivered(workers)


async def _has_held(api: Api, key: str, policy_id: int) -> bool:
    return (await counts(api, key, policy_id))["held"] > 0


async def test_token_expiry_mid_fanout_loses_nothing_and_sends_nothing_twice(
    stub: Stub, api: Api, workers: Workers
) -> None:
    key = (await api.department())["api_key"]
    openids = [f"openid_person_{i:04d}" for i in range(60)]
    await seed(api, key, [(o, "", "zh-CN") for o in openids])
    await stub.faults(expire_token_after=25)  # the token expires after the 25th message
    start_two(workers, batch_size=10)
    policy = await publish(api, key)
    final = await finished(api, key, policy["id"], 60)
    assert final["sent"] == 60 and final["failed"] == 0

    assert delivered_once(await stub.messages(), set(openids))
    stats = await stub.stats()
    assert stats["errcodes"].get("42001", 0) >= 1  # the expiry was hit ...
    assert stats["tokens_issued"] == 2  # ... and one process fetched the one new token
    assert both_delivered(workers)


async def test_permanent_refusals_fail_with_their_reason(stub: Stub, api: Api, workers: Workers) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, [
        ("openid_follower_1", "", "zh-CN"),
        ("openid_unfollowed", "", "zh-CN"),
        ("", stub.webhook("dead-key"), "zh-CN"),
    ])
    await stub.faults(not_following=["openid_unfollowed"], invalid_keys=["dead-key"])
    workers.start()
    policy = await publish(api, key)
    final = await finished(api, key, policy["id"], 3)
    assert final["sent"] == 1 and final["failed"] == 2
    status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=failed", key)
    errors = sorted(item["error"] for item in page["items"])
    assert errors[0] == "43004"  # the code only: a provider's text may quote the recipient
    assert errors[1].startswith("93000")
    assert all(item["attempts"] == 1 for item in page["items"])  # never retried


async def test_thirty_percent_temporary_errors_end_with_everything_delivered_once(
    stub: Stub, api: Api, workers: Workers
) -> None:
    key = (await api.department())["api_key"]
    openids = [f"openid_person_{i:04d}" for i in range(40)]
    robots = [f"group-{i}" for i in range(10)]
    await seed(api, key, [(o, "", "zh-CN") for o in openids] + [("", stub.webhook(r), "zh-CN") for r in robots])
    await stub.faults(rate_limit=0.2, server_error=0.1)
    workers.start(PUSHSVC_MAX_ATTEMPTS="15")  # 0.3^15: giving up on one of 50 never happens
    policy = await publish(api, key)
    final = await finished(api, key, policy["id"], 50, timeout=90)
    assert final["sent"] == 50 and final["failed"] == 0
    assert delivered_once(await stub.messages(), set(openids) | set(robots))
    stats = await stub.stats()
    assert stats["http_errors"] > 0 and stats["errcodes"].get("45009", 0) + stats["errcodes"].get("45011", 0) > 0


async def test_webhook_to_an_internal_address_is_refused(stub: Stub, api: Api) -> None:
    key = (await api.department())["api_key"]
    enterprise = {"uscc": uscc(1), "district": "haizhu", "industry": "C", "scale": "small"}
    base = {"name": "某企业", "audiences": {"enterprise": enterprise},
            "domains": ["*"], "channels": ["wechat"]}
    for url in (
        "https://127.0.0.1/cgi-bin/webhook/send?key=k",
        "http://127.0.0.1:8080/cgi-bin/webhook/send?key=k",
        "https://10.0.0.1/cgi-bin/webhook/send?key=k",
        "https://192.168.1.1/cgi-bin/webhook/send?key=k",
        "https://169.254.169.254/latest/meta-data",
        "http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",  # allowed host, but not over http
        "https://qyapi.weixin.qq.com@10.0.0.1/cgi-bin/webhook/send?key=k",
        stub.webhook("k").replace("http://", "https://"),  # the stand-in is listed for http only
    ):
        status, body = await api.call("POST", "/v1/subscribers", key, json={**base, "wechat": {"webhook_url": url}})
        assert status == 422, (url, body)
        assert "wechat.webhook_url" in [e["field"] for e in body["errors"]], body
    status, body = await api.call("POST", "/v1/subscribers", key,
                                  json={**base, "wechat": {"webhook_url": stub.webhook("k")}})
    assert status == 201, body


# -- the channel on its own ----------------------------------------------------------------------

MESSAGE = PolicyMessage(
    policy_id=7, kind="policy", version="1", title=LONG_TITLE, summary="对吸纳就业的小微企业给予补贴。",
    department="广州市人力资源和社会保障局", domain="employment-entrepreneurship", doc_number="穗人社规字〔2026〕3号",
    page_url=f"{PUBLIC}/p/7", short_url=f"{PUBLIC}/s/abcdefg", source_url=None, interpretation_url=None,
    produced_on=date(2026, 11, 20), effective_on=None, expires_on=None,
)


def recipient(n: int, openid: str | None = None, webhook: str | None = None) -> Recipient:
    return Recipient(delivery_id=n, subscriber_id=n, name=None, locale="zh-CN", wechat_openid=openid, wechat_webhook=webhook)


@pytest.fixture
async def channel_for(stub: Stub, redis_url: str, robot_window: float) -> AsyncIterator[Any]:
    opened: list[WechatChannel] = []

    async def make(**overrides: str) -> WechatChannel:
        env = {k.removeprefix("PUSHSVC_").lower(): v for k, v in wechat_env(stub, robot_window).items()}
        base = {"admin_token": ADMIN, "secret_key": SECRET, "redis_url": redis_url, "public_url": PUBLIC}
        settings = Settings(_env_file=None, **(base | env | overrides))  # type: ignore[arg-type]
        channel = WechatChannel(settings, Renderer(settings.templates_dir), TokenSigner(SECRET))
        await channel.start()
        opened.append(channel)
        return channel

    yield make
    for channel in opened:
        await channel.close()


async def test_news_card_carries_short_link_and_qr(stub: Stub, channel_for: Any) -> None:
    channel = await channel_for(wechat_robot_message="news")
    [outcome] = await channel.send(MESSAGE, [recipient(1, webhook=stub.webhook("news-group"))])
    assert outcome.status == "sent", outcome
    [sent] = await stub.messages()
    [article] = sent["body"]["news"]["articles"]
    assert sent["body"]["msgtype"] == "news" and article["title"] == LONG_TITLE
    assert article["url"] == MESSAGE.short_url and article["picurl"] == f"{PUBLIC}/p/7/qr.png"
    assert "广州市人力资源和社会保障局" in article["description"]
    assert channel.preview(MESSAGE, "zh-CN")["webhook"] == sent["body"]


async def test_which_contact_and_quiet_hours(stub: Stub, channel_for: Any) -> None:
    both = recipient(1, openid="openid_person_x", webhook=stub.webhook("g"))
    person = recipient(2, openid="openid_person_y")
    assert WechatChannel.address(both) == both.wechat_webhook
    assert WechatChannel.address(person) == "openid_person_y"
    assert WechatChannel.address(recipient(3)) is None
    channel = await channel_for()
    assert channel.honours_quiet_hours(person) and not channel.honours_quiet_hours(both)


async def test_send_time_checks_and_temporary_failures(stub: Stub, channel_for: Any) -> None:
    # The allow-list no longer holds the stand-in: its webhooks are refused at send time.
    strict = await channel_for(wechat_webhook_origins="https://qyapi.weixin.qq.com")
    [refused] = await strict.send(MESSAGE, [recipient(1, webhook=stub.webhook("g1"))])
    assert refused.status == "failed" and "webhook URL refused" in (refused.error or "")

    channel = await channel_for()
    await stub.faults(timeout=1.0)  # hangs past the client's 2 s
    outcomes = await channel.send(MESSAGE, [recipient(2, webhook=stub.webhook("g2")), recipient(3, openid="openid_z1")])
    assert {o.status for o in outcomes} == {"retry"} and all("timed out" in (o.error or "") for o in outcomes)

    await stub.faults(refused=["openid_z2"])
    [refusal] = await channel.send(MESSAGE, [recipient(4, openid="openid_z2")])
    assert refusal.status == "failed" and (refusal.error or "").startswith("43101")
    assert await stub.messages() == []

    # Without Redis there is no shared pace: nothing is sent, everything waits.
    no_redis = await channel_for(redis_url="redis://127.0.0.1:1/0")
    [waiting] = await no_redis.send(MESSAGE, [recipient(5, webhook=stub.webhook("g5"))])
    assert waiting.status == "retry" and "Redis unavailable" in (waiting.error or "")


async def test_stub_checks_credentials(stub: Stub) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{stub.url}/cgi-bin/token", params={"grant_type": "client_credential",
                                                               "appid": APPID, "secret": "wrong"}) as resp:
            assert (await resp.json())["errcode"] == 40125
        async with s.post(f"{stub.url}/cgi-bin/message/template/send", params={"access_token": "forged"},
                          data=json.dumps({"touser": "x"})) as resp:
            assert (await resp.json())["errcode"] == 40014
        async with s.post(f"{stub.url}/_stub/faults", json={"no_such_fault": 1}) as resp:
            assert resp.status == 422


def test_cutting_keeps_whole_characters() -> None:
    from pushsvc.channels.wechat.robot import cut_bytes

    cut = cut_bytes("政策" * 3000, 4096, "…[全文](https://x/s/a)")
    assert len(cut.encode()) <= 4096 and cut.endswith("…[全文](https://x/s/a)")
