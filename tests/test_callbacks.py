"""Delivery-status callbacks (issue 17): the receiver set, read and removed by its department only;
events posted in order, signed, retried while the receiver is down, not lost when the worker
posting them is killed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.core.identifiers import uscc_check_char
from pushsvc.core.verification import ContactKeys
from pushsvc.settings import Settings
from pushsvc.store.schema import callbacks
from pushsvc.store.suppressions import add as add_suppressions
from tests.conftest import ADMIN, Api, Workers, eventually, serving
from tests.test_api_foundation import POLICY

TOKEN = "receiver-token-0123456789"
# Quick posts for the tests: every second, a short wait for an answer.
FAST = {"PUSHSVC_CALLBACK_EVERY_SECONDS": "1", "PUSHSVC_CALLBACK_TIMEOUT_SECONDS": "4"}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # The receiver is this machine's; no quiet hours, so the time of day changes nothing.
    return {**settings_env, "PUSHSVC_CALLBACK_ALLOW_PRIVATE": "true", "PUSHSVC_QUIET_HOURS": "00:00-00:00"}


class Receiver:
    """A department's system taking callbacks, checking them as its developers would: the bearer
    token, then the signature over the body it got and a time close to its own clock."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.taken: list[dict[str, Any]] = []  # events of posts answered 2xx, in arrival order, each once
        self.repeated = 0  # events posted again after being taken (told apart by their id)
        self.posts: list[int] = []  # each post's size
        self.bad: list[str] = []  # why a post was not ours
        self.down = False  # answer 503
        self.hold: asyncio.Event | None = None  # when set to an unset event, posts wait for it
        self.in_flight = 0
        self._server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/hooks/pushsvc"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/pushsvc", self._post)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()

    def verified(self, request: web.Request, body: bytes) -> str | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return "wrong bearer token"
        fields = dict(part.split("=", 1) for part in request.headers.get("X-Pushsvc-Signature", "").split(","))
        stamp = fields.get("t", "")
        expected = hmac.new(self.token.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("v1", "")):
            return "bad signature"
        if abs(time.time() - int(stamp)) > 300:
            return "stale signature"
        return None

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.in_flight += 1
        try:
            if self.hold is not None:
                await self.hold.wait()
            problem = self.verified(request, body)
            if problem:
                self.bad.append(problem)
                return web.Response(status=401)
            if self.down:
                return web.Response(status=503)
            events = await request.json()
            assert isinstance(events, list) and request.content_type == "application/json"
            self.posts.append(len(events))
            seen = {e["id"] for e in self.taken}
            fresh = [e for e in events if e["id"] not in seen]
            self.repeated += len(events) - len(fresh)
            self.taken += fresh
            return web.Response(status=204)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def enterprise(i: int) -> dict[str, Any]:
    body = f"91440101MA{i:07d}"
    return {"enterprise": {"uscc": body + uscc_check_char(body), "district": "haizhu", "industry": "C", "scale": "small"}}


async def seed(api: Api, key: str, n: int) -> None:
    header = "name,email,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"
    lines = [header] + [
        f"企业{i},user{i}@example.com,*,email,{enterprise(i)['enterprise']['uscc']},haizhu,C,small" for i in range(n)]
    status, body = await api.call("POST", "/v1/subscribers/import", key, data="\n".join(lines).encode(),
                                  headers={"Content-Type": "text/csv"})
    assert status == 200 and body["imported"] == n, body


async def issue_test_key(api: Api, department: dict[str, Any]) -> str:
    status, body = await api.call("POST", f"/v1/departments/{department['id']}/keys", department["api_key"],
                                  json={"name": "integration", "kind": "test"})
    assert status == 201 and body["api_key"].startswith("psk_test_"), body
    return str(body["api_key"])


def assert_in_order(events: list[dict[str, Any]]) -> None:
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "events out of order or twice"


async def test_the_receiver_is_the_departments_own(api: Api, settings_env: dict[str, str]) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    key, other_key = dept["api_key"], other["api_key"]
    body = {"url": "https://hooks.example.gov.cn/pushsvc", "bearer_token": TOKEN}
    assert (await api.call("PUT", "/v1/callback", json=body))[0] == 401
    assert (await api.call("GET", "/v1/callback"))[0] == 401
    assert (await api.call("DELETE", "/v1/callback", "psk_unknown"))[0] == 401
    assert (await api.call("PUT", "/v1/callback", ADMIN, json=body))[0] == 403
    assert (await api.call("GET", "/v1/callback", key))[0] == 404

    status, problem = await api.call("PUT", "/v1/callback", key, json={**body, "bearer_token": "too-short"})
    assert status == 422 and problem["errors"][0]["field"] == "bearer_token"
    status, problem = await api.call("PUT", "/v1/callback", key, json={**body, "url": "ftp://example.gov.cn/x"})
    assert status == 422 and problem["errors"][0]["field"] == "url"

    status, shown = await api.call("PUT", "/v1/callback", key, json={**body, "url": "http://127.0.0.1:9/hook"})
    assert status == 200 and shown["url"] == "http://127.0.0.1:9/hook" and shown["backlog"] == 0
    status, _ = await api.call("PUT", "/v1/callback", other_key, json={**body, "url": "http://127.0.0.1:10/other"})
    assert status == 200
    status, mine = await api.call("GET", "/v1/callback", key)
    assert status == 200 and mine["url"] == "http://127.0.0.1:9/hook" and TOKEN not in str(mine)
    status, theirs = await api.call("GET", "/v1/callback", other_key)
    assert theirs["url"] == "http://127.0.0.1:10/other"

    # The token is kept sealed: the database holds no copy of it.
    engine = create_async_engine(settings_env["PUSHSVC_DATABASE_URL"])
    try:
        async with engine.connect() as conn:
            stored = list((await conn.execute(sa.select(callbacks.c.bearer_token))).scalars())
    finally:
        await engine.dispose()
    assert len(stored) == 2 and not any(TOKEN in s for s in stored)

    assert (await api.call("DELETE", "/v1/callback", key))[0] == 204
    assert (await api.call("GET", "/v1/callback", key))[0] == 404
    assert (await api.call("DELETE", "/v1/callback", key))[0] == 404
    assert (await api.call("GET", "/v1/callback", other_key))[0] == 200


async def test_only_https_to_public_addresses_without_the_setting(settings: Settings) -> None:
    strict = settings.model_copy(update={"callback_allow_private": False})
    async with serving(strict) as api:
        key = (await api.department())["api_key"]
        for url in ("http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                    "https://[::1]/hook", "https://localhost/hook", "http://example.gov.cn/hook"):
            status, problem = await api.call("PUT", "/v1/callback", key, json={"url": url, "bearer_token": TOKEN})
            assert status == 422 and problem["errors"][0]["field"] == "url", (url, problem)
        assert (await api.call("GET", "/v1/callback", key))[0] == 404  # nothing half-written


async def test_receiver_down_for_a_while_gets_every_event_once_in_order(
    api: Api, workers: Workers, receiver: Receiver
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    test = await issue_test_key(api, dept)
    await seed(api, key, 300)
    receiver.down = True
    status, _ = await api.call("PUT", "/v1/callback", key, json={"url": receiver.url, "bearer_token": TOKEN})
    assert status == 200
    workers.start(**FAST)
    status, policy = await api.call("POST", "/v1/policies", test, json=POLICY)
    assert status == 202 and policy["test"] is True

    # Down: the department sees why, and what waits.
    shown = await eventually(lambda: _failing(api, key), timeout=60)
    assert shown["last_error"] == "HTTP 503" and shown["backlog"] > 0 and shown["next_attempt_at"]
    await asyncio.sleep(3)
    assert receiver.taken == []
    receiver.down = False

    await eventually(lambda: len(receiver.taken) >= 600, timeout=90)
    await asyncio.sleep(2)  # nothing more comes
    assert len(receiver.taken) == 600 and receiver.repeated == 0 and receiver.bad == []
    assert max(receiver.posts) <= 500 and len(receiver.posts) >= 2
    assert_in_order(receiver.taken)
    by_subscriber: dict[int, list[str]] = {}
    for event in receiver.taken:
        assert event["policy_id"] == policy["id"] and event["channel"] == "email" and event["notice"] == 0
        by_subscriber.setdefault(event["subscriber_id"], []).append(event["status"])
    assert len(by_subscriber) == 300 and all(s == ["sent", "delivered"] for s in by_subscriber.values())
    status, shown = await api.call("GET", "/v1/callback", key)
    assert shown["backlog"] == 0


async def _failing(api: Api, key: str) -> dict[str, Any] | None:
    status, shown = await api.call("GET", "/v1/callback", key)
    return shown if status == 200 and shown["last_error"] else None


async def test_worker_killed_while_posting_loses_nothing(api: Api, workers: Workers, receiver: Receiver) -> None:
    dept = await api.department()
    key = dept["api_key"]
    test = await issue_test_key(api, dept)
    await seed(api, key, 40)
    receiver.hold = asyncio.Event()  # the first post hangs until the worker is dead
    status, _ = await api.call("PUT", "/v1/callback", key, json={"url": receiver.url, "bearer_token": TOKEN})
    assert status == 200
    first = workers.start(**FAST)
    status, policy = await api.call("POST", "/v1/policies", test, json=POLICY)
    assert status == 202
    await eventually(lambda: receiver.in_flight > 0, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # The hanging post is not taken (the receiver's own transaction failed, say): only a post that
    # reaches a worker alive can leave nothing behind.
    receiver.down = True
    receiver.hold.set()
    await eventually(lambda: receiver.in_flight == 0)
    receiver.hold, receiver.down = None, False
    assert receiver.taken == []
    workers.start(**FAST)

    # The killed worker's lease runs out (a job's time), then the new one posts it all. The post
    # the killed worker made may be taken too: then its events come again, with the same ids.
    await eventually(lambda: len(receiver.taken) >= 80, timeout=90)
    await asyncio.sleep(2)
    assert len(receiver.taken) == 80 and receiver.bad == []
    assert_in_order(receiver.taken)
    assert sorted(e["status"] for e in receiver.taken) == ["delivered"] * 40 + ["sent"] * 40


async def test_case_messages_are_told_too(api: Api, workers: Workers, receiver: Receiver) -> None:
    key = (await api.department())["api_key"]
    status, _ = await api.call("PUT", "/v1/callback", key, json={"url": receiver.url, "bearer_token": TOKEN})
    assert status == 200
    workers.start(**FAST)
    status, case = await api.call("POST", "/v1/cases", key, json={
        "case_no": "GZ-CB-1", "service_item": "个体工商户设立登记", "channels": ["email"],
        "applicant": {"name": "张小三", "email": "delivered@simulator.pushsvc.invalid"}})
    assert status == 201, case
    status, body = await api.call("POST", "/v1/cases/GZ-CB-1/events", key, json={
        "event_id": "e1", "status": "accepted", "occurred_at": datetime.now(timezone.utc).isoformat()})
    assert status in (200, 201, 202), body
    await eventually(lambda: len(receiver.taken) >= 2, timeout=60)
    assert [(e["case_no"], e["status"], e["channel"], e["policy_id"], e["subscriber_id"], e["reference"])
            for e in receiver.taken] == [("GZ-CB-1", "sent", "email", None, None, None),
                                         ("GZ-CB-1", "delivered", "email", None, None, None)]


async def test_a_suppressed_contact_is_told(api: Api, workers: Workers, receiver: Receiver, settings: Settings) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 2)
    # user1's address bounced for good before (what pushsvc.delivery.bounces records).
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await add_suppressions(conn, ContactKeys(settings.secret_key), "email", ["user1@example.com"],
                                   "hard_bounce", "5.1.1", datetime.now(timezone.utc))
    finally:
        await engine.dispose()
    status, _ = await api.call("PUT", "/v1/callback", key, json={"url": receiver.url, "bearer_token": TOKEN})
    assert status == 200
    workers.start(**FAST)
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    await eventually(lambda: len(receiver.taken) >= 2, timeout=60)
    await asyncio.sleep(2)
    told = sorted((e["status"], e["error_code"]) for e in receiver.taken)
    assert told == [("sent", None), ("suppressed", "hard_bounce")], receiver.taken


async def test_a_name_that_turns_private_after_it_was_checked_is_refused_when_posting() -> None:
    """The check at PUT cannot hold for ever (a name's address may change): the poster's resolver
    refuses a private address at connect time. `localhost` stands for such a name."""
    from pushsvc.delivery.callbacks import _PublicOnly

    resolver = _PublicOnly()
    try:
        with pytest.raises(OSError, match="private address"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()
