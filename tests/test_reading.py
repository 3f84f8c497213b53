"""Reading: the links of messages and QR codes count a policy page's visitors per channel, each
once a day by a keyed hash kept only in Redis until the day ends; the database holds numbers and
no address; the department report and the console's policy page show opened / reached per channel.
Real servers (the API, worker processes, the SMTP sink), on every test database."""

from __future__ import annotations

import sqlalchemy as sa
from redis.asyncio import Redis

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.policies.reading import visitor_digest
from pushsvc.store.schema import policy_visits, short_links
from tests.conftest import SECRET, Api, Workers
from tests.console_helpers import make_staff, signed_in
from tests.test_api_foundation import POLICY, enterprise
from tests.test_lifecycle import wait
from tests.test_redis_keys import redis  # noqa: F401  (a client of the test session's Redis)
from tests.test_self_service import db_rows


async def visit(api: Api, path: str, browser: str) -> int:
    async with api.session.get(api.base + path, headers={"User-Agent": browser}, allow_redirects=False) as resp:
        return resp.status


async def test_visitors_are_counted_once_a_day_per_channel_and_nobody_is_kept(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, str], redis: Redis  # noqa: F811
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    for n in (1, 2):
        status, _ = await api.call("POST", "/v1/subscribers", key, json=enterprise(n))
        assert status == 201
    workers.start()
    status, published = await api.call("POST", "/v1/policies", key, json=POLICY)
    pid = published["id"]
    await wait(api, key, pid, {"email": 2})
    [(code,)] = await db_rows(settings_env, sa.select(short_links.c.code).where(short_links.c.target == f"/p/{pid}"))

    for path, browser in [
        (f"/s/{code}?via=sms", "phone A"), (f"/s/{code}?via=sms", "phone A"),  # the same person twice: once
        (f"/s/{code}?via=sms", "phone B"),  # someone else
        (f"/s/{code}", "phone A"), (f"/s/{code}?via=bogus", "phone B"),  # a short link naming no channel
        (f"/p/{pid}?via=email", "mail A"), (f"/p/{pid}?via=email", "mail A"),
        (f"/p/{pid}", "browser C"),  # browsing, not a message's link: not counted
    ]:
        assert await visit(api, path, browser) in (200, 302)
    V = policy_visits.c
    rows = await db_rows(settings_env, sa.select(V.channel, V.visitors, V.day).where(V.policy_id == pid))
    assert {(r.channel, r.visitors) for r in rows} == {("sms", 2), ("link", 2), ("email", 1)}
    # Nothing of the visitors in the database, nor in Redis but keyed hashes that end with the day.
    assert {c.name for c in policy_visits.c} == {"policy_id", "channel", "day", "visitors"}
    keys = [k.decode() async for k in redis.scan_iter("pushsvc:visit:*")]
    assert len(keys) == 5 and not any("127.0.0.1" in k or "phone" in k for k in keys)
    assert all(0 < ttl <= 24 * 3600 + 1 for ttl in [await redis.ttl(k) for k in keys])
    assert visitor_digest(SECRET, "2026-12-05", "127.0.0.1", "phone A") != visitor_digest(
        SECRET, "2026-12-06", "127.0.0.1", "phone A")

    status, report = await api.call("GET", "/v1/reports/department", key)
    assert status == 200, report
    [figures] = [p for p in report["policies"] if p["id"] == pid]
    assert figures["reading"]["email"] == {"opened": 1, "reached": 2, "open_rate": 0.5}
    assert figures["reading"]["sms"] == {"opened": 2, "reached": 0, "open_rate": None}
    assert figures["reading"]["link"] == {"opened": 2, "reached": None, "open_rate": None}
    assert report["total"]["reading"]["email"]["opened"] == 1

    staff = await make_staff(api, dept["id"], "drafter")
    console = await signed_in(api, staff["username"], staff["password"])
    try:
        status, html, _ = await console.get(f"/console/policies/{pid}")
        assert status == 200 and 'data-opened="email">1<' in html and 'data-opened="sms">2<' in html
    finally:
        await console.close()
