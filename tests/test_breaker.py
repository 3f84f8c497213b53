"""Outages (issue 14, item 3): a circuit breaker per provider shared through Redis, and a retry
schedule that reaches a day. Reproduction 2 scaled down: the SMTP relay refusing connections for
longer than every retry of the old schedule would last, then back: everyone gets the message once,
nothing fails, and attempts are not spent while it is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from pushsvc.core.clock import now
from pushsvc.core.messages import Outcome, Recipient
from pushsvc.core.retry import attempts_for, ledger_update
from pushsvc.delivery.breaker import Breaker, provider_of
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.metrics import provider_states
from pushsvc.settings import Settings
from pushsvc.web import csrf
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_admin_browser import csrf_of, get, post
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, seed
from tests.test_metrics import scrape, value
from tests.test_operations import cli
from tests.test_status import cells

PROBE = 0.4


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"breaker_failures": 3, "breaker_probe_seconds": PROBE})


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_url) as client:
        yield client


class Relay:
    """A provider as a send step's call sees it: down (every recipient `retry`) or up."""

    def __init__(self) -> None:
        self.up = False
        self.calls: list[list[int]] = []
        self.told: list[Outcome] = []

    async def __call__(self, recipients: list[Recipient], report: Any) -> list[Outcome]:
        self.calls.append([r.delivery_id for r in recipients])
        outcomes = [Outcome(r.delivery_id, "sent", provider_ref=f"m{r.delivery_id}") if self.up
                    else Outcome(r.delivery_id, "retry", "Error connecting to 127.0.0.1 on port 1: Connection refused")
                    for r in recipients]
        for o in outcomes:
            report(o)
        return outcomes


def people(*ids: int) -> list[Recipient]:
    return [Recipient(i, i, None, "zh-CN", email=f"user{i}@example.com") for i in ids]


async def smtp(redis: Redis) -> Any:
    return next(p for p in await provider_states(redis) if p.provider == "smtp")


async def test_opens_after_n_failures_holds_without_calling_probes_once_and_closes(fast: Settings, redis: Redis) -> None:
    relay, breaker = Relay(), Breaker(redis, fast)
    for n in range(1, 4):  # three hand-overs in a row reach nobody: down
        outcomes = await breaker.guard("email", people(n, n + 10), relay.told.append, relay)
        assert {o.status for o in outcomes} == {"retry"}
    state = await smtp(redis)
    assert state.down_since is not None and state.failures == 3 and state.error == "Error connecting to 127.0.0.1 on port 1"

    # Down: nobody is handed over; everyone waits, held (no attempt) until the next probe.
    outcomes = await breaker.guard("email", people(4, 5), relay.told.append, relay)
    assert len(relay.calls) == 3 and {o.status for o in outcomes} == {"held"}
    assert state.next_probe and all(abs((o.not_before or now()) - state.next_probe) < timedelta(milliseconds=50)
                                    for o in outcomes)
    assert ledger_update(outcomes[0], 3, fast.max_attempts, state.down_since, 1, 2)["new_attempts"] == 2

    # Two workers at probe time: one probes with one recipient, the other holds all of its own.
    await asyncio.sleep(PROBE)
    other = Breaker(redis, fast)
    first, second = await asyncio.gather(breaker.guard("email", people(6, 7), relay.told.append, relay),
                                         other.guard("email", people(8, 9), relay.told.append, relay))
    assert relay.calls[3:] in ([[6]], [[8]])
    assert sorted(o.status for o in first + second) == ["held"] * 4  # the probe's failure spends no attempt either
    assert [o.status for o in relay.told[-1:]] == ["held"]
    assert (await smtp(redis)).down_since == state.down_since

    # Back: the next probe gets through, closes the breaker, and the rest of its hand-over goes at once.
    relay.up = True
    await asyncio.sleep(PROBE)
    outcomes = await breaker.guard("email", people(6, 7, 8), relay.told.append, relay)
    assert relay.calls[-2:] == [[6], [7, 8]] and [o.status for o in outcomes] == ["sent"] * 3
    state = await smtp(redis)
    assert state.down_since is None and state.failures == 0
    assert [o.status for o in await breaker.guard("email", people(9), relay.told.append, relay)] == ["sent"]


async def test_a_success_resets_the_count_and_providers_are_apart(fast: Settings, redis: Redis) -> None:
    relay, breaker = Relay(), Breaker(redis, fast)
    for _ in range(2):
        await breaker.guard("email", people(1), relay.told.append, relay)
    relay.up = True
    await breaker.guard("email", people(2), relay.told.append, relay)
    relay.up = False
    for _ in range(2):
        await breaker.guard("email", people(3), relay.told.append, relay)
    assert (await smtp(redis)).down_since is None  # 2, a success, 2: never 3 in a row
    for _ in range(3):
        await breaker.guard("sms", [Recipient(5, 5, None, "zh-CN", phone="+8613800138005")], relay.told.append, relay)
    states = {p.provider: p for p in await provider_states(redis)}
    assert states["sms-gateway"].down_since is not None and states["smtp"].down_since is None
    robot = Recipient(6, 6, None, "zh-CN", wechat_webhook="https://qyapi.weixin.qq.com/x", wechat_openid="o")
    assert provider_of("wechat", robot) == "wechat-robot"
    assert provider_of("wechat", Recipient(7, 7, None, "zh-CN", wechat_openid="o")) == "wechat-template"


async def test_without_redis_everything_goes_through(fast: Settings) -> None:
    relay = Relay()
    away = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        for _ in range(5):
            outcomes = await Breaker(away, fast).guard("email", people(1, 2), relay.told.append, relay)
            assert [o.status for o in outcomes] == ["retry", "retry"]
    finally:
        await away.aclose()
    assert len(relay.calls) == 5


def test_the_retry_schedule_reaches_a_day_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHSVC_ADMIN_TOKEN", "x" * 20)
    monkeypatch.setenv("PUSHSVC_SECRET_KEY", "y" * 40)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.retry_for_hours == 24 and s.max_attempts == attempts_for(86400, 2, 600) == 297
    # Even at the shortest jitter, the backoffs before giving up add up to the day.
    assert sum(min(600, 2 * 2 ** (n - 1)) / 2 for n in range(1, s.max_attempts)) >= 86400
    assert Settings(_env_file=None, max_attempts=400).max_attempts == 400  # type: ignore[call-arg]
    assert Settings(_env_file=None, retry_for_hours=0, max_attempts=3).max_attempts == 3  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="PUSHSVC_RETRY_MAX_SECONDS"):
        Settings(_env_file=None, retry_max_seconds=1)  # type: ignore[call-arg]


async def _attempts(api: Api, key: str, policy_id: int) -> dict[str, int]:
    status, page = await api.call("GET", f"/v1/policies/{policy_id}/deliveries?limit=100", key)
    assert status == 200, page
    return {i["subscriber_id"]: i["attempts"] for i in page["items"]}


async def test_an_smtp_outage_longer_than_the_old_retries_fails_nothing(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, str]
) -> None:
    """Reproduction 2, scaled: 6 attempts from a 0.2 s base were spent within about 5 s; the relay
    refuses connections for 12 s. Two workers share the breaker. Retries by attempts alone
    (PUSHSVC_RETRY_FOR_HOURS=0), so the breaker alone keeps the attempts."""
    key = (await api.department())["api_key"]
    await seed(api, key, 20)
    sink.stop()  # connection refused
    env = {"PUSHSVC_RETRY_BASE_SECONDS": "0.2", "PUSHSVC_BREAKER_FAILURES": "3",
           "PUSHSVC_BREAKER_PROBE_SECONDS": "1", "PUSHSVC_FANOUT_BATCH_SIZE": "5"}
    workers.start(**env)
    workers.start(**env)
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy

    async def down() -> float:
        return value(await scrape(api), "pushsvc_provider_down", provider="smtp") or 0.0

    since = await eventually(down, timeout=20)
    early = await _attempts(api, key, policy["id"])
    out = cli({**settings_env, **env}, "status").stdout
    [smtp_row] = [cells(line) for line in out.splitlines() if cells(line)[:1] == ["smtp"]]
    assert smtp_row[1] == "DOWN", out
    assert await _admin_shows_smtp_down(api)
    await asyncio.sleep(12)  # every retry of the old schedule would be spent many times over
    assert await down() == since
    late = await _attempts(api, key, policy["id"])
    assert sum(late.values()) == sum(early.values())  # nothing spent while down, probes included

    sink.start()  # back on the same port
    final = await eventually(lambda: _done(api, key, policy["id"], 20), timeout=30)
    assert final["sent"] == 20 and final["failed"] == 0
    received = [m.rcpt_tos[0] for m in sink.messages()]
    assert sorted(received) == sorted(f"user{i}@example.com" for i in range(20))  # each exactly once
    assert await down() == 0.0
    assert max((await _attempts(api, key, policy["id"])).values()) < 6


async def _admin_shows_smtp_down(api: Api) -> bool:
    status, html, resp = await get(api, "/admin?lang=en")
    browser = {csrf.COOKIE: resp.cookies[csrf.COOKIE].value}
    status, _, jar = await post(api, "/admin/login", {"token": ADMIN, "lang": "en", csrf.FIELD: csrf_of(html)}, browser)
    assert status == 303
    status, html, _ = await get(api, "/admin?lang=en", {"pushsvc_admin": jar["pushsvc_admin"].value})
    assert status == 200, html
    return "SMTP relay" in html and "Down since" in html
