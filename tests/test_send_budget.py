"""A send never outlives its job, outcomes are written as they come, attempts only grow (issue 14,
reproductions 1 and 3): the send step with stand-in channels and a real Redis, then the API, real
worker processes and a slowed-down SMTP sink."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import OperationalError

from pushsvc.channels.base import Channel, Report, no_report
from pushsvc.core.messages import HasContacts, Message, Outcome, Recipient
from pushsvc.delivery import send
from pushsvc.delivery.send import Row, SendStep
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.services import Services
from pushsvc.settings import Settings
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import seed
from tests.test_send_step import POLICY as MESSAGE
from tests.test_send_step import NoDatabase

# -- the step, with stand-in channels ----------------------------------------------------------------


class Trickle(Channel):
    """Answers one recipient every `pause` seconds, honouring the deadline like the real channels;
    after `hang_after` answers it stops answering (a provider that hangs)."""

    name: ClassVar[str] = "trickle"

    def __init__(self, pause: float, hang_after: int | None = None) -> None:
        self.pause = pause
        self.hang_after = hang_after

    @staticmethod
    def address(contacts: HasContacts) -> str | None:
        return contacts.email

    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        return {}

    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        assert deadline is not None
        loop = asyncio.get_running_loop()
        outcomes = []
        for n, r in enumerate(recipients):
            if loop.time() >= deadline:
                outcome = Outcome(r.delivery_id, "untried", "the job's send budget ran out")
            else:
                if self.hang_after is not None and n >= self.hang_after:
                    await asyncio.sleep(3600)
                await asyncio.sleep(self.pause)
                outcome = Outcome(r.delivery_id, "sent", provider_ref=f"m{r.delivery_id}")
            report(outcome)
            outcomes.append(outcome)
        return outcomes


class Ledger:
    """Records each write (and when); fails the first `failures` writes as a database would."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.writes: list[tuple[float, list[dict[str, Any]]]] = []

    async def __call__(self, conn: Any, updates: Sequence[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE deliveries", {}, Exception("database is locked"))
        self.writes.append((asyncio.get_running_loop().time(), list(updates)))

    @property
    def rows(self) -> dict[int, dict[str, Any]]:
        return {u["did"]: u for _, updates in self.writes for u in updates}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def step_settings(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Settings:
    monkeypatch.setenv("PUSHSVC_ADMIN_TOKEN", "x" * 20)
    monkeypatch.setenv("PUSHSVC_SECRET_KEY", "y" * 40)
    monkeypatch.setenv("PUSHSVC_REDIS_URL", redis_url)
    monkeypatch.setenv("PUSHSVC_JOB_TIMEOUT_SECONDS", "5")
    return Settings(_env_file=None)  # type: ignore[call-arg]


def make_step(settings: Settings, redis: Redis, channel: Channel, ledger: Ledger, deadline: float) -> SendStep:
    svc = Services(settings=settings, db=NoDatabase(), catalogue=None, signer=None, renderer=None,  # type: ignore[arg-type]
                   redis=redis, channels={channel.name: channel})  # type: ignore[arg-type]
    return SendStep(svc, "policy", ledger, deadline)


def people(n: int) -> list[Recipient]:
    return [Recipient(i, i, None, "zh-CN", email=f"u{i}@example.com") for i in range(1, n + 1)]


def rows(n: int, attempts_so_far: int = 0) -> dict[int, tuple[Row, ...]]:
    return {i: (Row(i, attempts_so_far + 1),) for i in range(1, n + 1)}


async def test_the_budget_stops_new_sends_and_what_it_left_is_untried(
    step_settings: Settings, redis: Redis
) -> None:
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    sending = make_step(step_settings, redis, Trickle(0.1), ledger, loop.time() + 0.45)
    began = loop.time()
    await sending.send(Trickle.name, MESSAGE, people(10), rows(10, attempts_so_far=2))
    await sending.flush()
    assert loop.time() - began < 1.0  # the channel stopped at the deadline, not after ten messages
    by_status = Counter(u["new_status"] for u in ledger.rows.values())
    assert by_status["sent"] in (4, 5) and by_status["queued"] == 10 - by_status["sent"]
    for u in ledger.rows.values():
        # An attempt only for what was sent; the rest due again at once, its count as it was.
        assert u["new_attempts"] == (3 if u["new_status"] == "sent" else 2)
        assert u["new_status"] == "sent" or u["new_next"] is not None


async def test_outcomes_are_written_as_they_come_not_at_the_end(
    step_settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send, "FLUSH_SECONDS", 0.2)
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    sending = make_step(step_settings, redis, Trickle(0.05), ledger, loop.time() + 60)
    await sending.send(Trickle.name, MESSAGE, people(20), rows(20))
    finished = loop.time()
    await sending.flush()
    assert len(ledger.writes) >= 3 and ledger.writes[0][0] < finished - 0.5
    assert sorted(ledger.rows) == list(range(1, 21)) and sum(len(u) for _, u in ledger.writes) == 20


async def test_a_provider_that_hangs_is_cut_off_and_what_it_answered_is_kept(
    step_settings: Settings, redis: Redis
) -> None:
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    # Cut off at the deadline plus 30% of the 5 s job.
    sending = make_step(step_settings, redis, Trickle(0.05, hang_after=3), ledger, loop.time() + 0.2)
    results = await sending.send(Trickle.name, MESSAGE, people(6), rows(6))
    await sending.flush()
    assert sorted(r.status for r in results) == ["queued"] * 3 + ["sent"] * 3
    assert {d: u["new_status"] for d, u in ledger.rows.items()} == {1: "sent", 2: "sent", 3: "sent", 4: "queued",
                                                                   5: "queued", 6: "queued"}
    assert all(u["new_attempts"] == 1 for u in ledger.rows.values())  # the hung ones were tried


async def test_a_cancelled_send_records_what_was_answered(step_settings: Settings, redis: Redis) -> None:
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    sending = make_step(step_settings, redis, Trickle(0.05, hang_after=2), ledger, loop.time() + 60)
    task = asyncio.create_task(sending.send(Trickle.name, MESSAGE, people(4), rows(4)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sending.flush()
    assert {d: u["new_status"] for d, u in ledger.rows.items()} == {1: "sent", 2: "sent", 3: "queued", 4: "queued"}
    assert sending.settled == {1, 2, 3, 4}


async def test_a_database_error_while_writing_is_tried_again(
    step_settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send, "_WRITE_PAUSE", 0.01)
    loop = asyncio.get_running_loop()
    ledger = Ledger(failures=3)
    sending = make_step(step_settings, redis, Trickle(0.0), ledger, loop.time() + 60)
    await sending.send(Trickle.name, MESSAGE, people(5), rows(5))
    await sending.flush()
    written = sorted(u["did"] for _, updates in ledger.writes for u in updates)
    assert written == [1, 2, 3, 4, 5] and {u["new_status"] for u in ledger.rows.values()} == {"sent"}

    # A database away for good: the step says so and keeps the outcomes for a later write.
    ledger.failures = 100
    before = len(ledger.writes)
    sending = make_step(step_settings, redis, Trickle(0.0), ledger, loop.time() + 60)
    await sending.send(Trickle.name, MESSAGE, people(2), rows(2))
    with pytest.raises(OperationalError):
        await sending.flush()
    assert len(ledger.writes) == before
    ledger.failures = 0
    await sending.flush()
    assert sorted(u["did"] for _, updates in ledger.writes[before:] for u in updates) == [1, 2]


# -- end to end: a slow relay, a killed worker ---------------------------------------------------------


async def ledger_rows(api: Api, key: str, policy_id: int) -> list[dict[str, Any]]:
    status, page = await api.call("GET", f"/v1/policies/{policy_id}/deliveries?limit=1000", key)
    assert status == 200, page
    return list(page["items"])


async def test_a_slow_relay_sends_everyone_once_and_attempts_only_grow(
    api: Api, workers: Workers, sink: SmtpSink
) -> None:
    """Reproduction 1, scaled: 20 recipients, a 5 s job, one connection, 0.5 s a message."""
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 20)
    sink.set_delay(0.5)
    workers.start(PUSHSVC_JOB_TIMEOUT_SECONDS="5", PUSHSVC_SMTP_CONNECTIONS="1")
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    seen: dict[int, int] = {}

    async def all_sent() -> bool:
        rows = await ledger_rows(api, key, policy["id"])
        for row in rows:
            assert row["attempts"] >= seen.get(row["subscriber_id"], 0), row  # attempts never go down
            seen[row["subscriber_id"]] = row["attempts"]
        return len(rows) == 20 and all(row["status"] == "sent" for row in rows)

    await eventually(all_sent, timeout=60, interval=0.3)
    await asyncio.sleep(6)  # a sweep later: nothing goes out again
    received = Counter(r for m in sink.messages() for r in m.rcpt_tos)
    assert received == Counter({f"user{i}@example.com": 1 for i in range(20)})
    rows = await ledger_rows(api, key, policy["id"])
    assert {(row["status"], row["attempts"]) for row in rows} == {("sent", 1)}


async def test_a_killed_worker_resends_at_most_what_was_not_recorded(
    api: Api, workers: Workers, sink: SmtpSink
) -> None:
    """Reproduction 3, scaled: outcomes are written within a second, so a kill sends again only the
    messages in flight and those answered in the last second, not every row of the claimed batches."""
    dept = await api.department()
    key = dept["api_key"]
    total, connections, delay = 200, 2, 0.1
    await seed(api, key, total)
    sink.set_delay(delay)
    env = {"PUSHSVC_JOB_TIMEOUT_SECONDS": "5", "PUSHSVC_SMTP_CONNECTIONS": str(connections),
           "PUSHSVC_FANOUT_BATCH_SIZE": "50"}
    worker = workers.start(**env)
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    await eventually(lambda: sink.count() >= total // 2, timeout=60, interval=0.05)
    worker.send_signal(signal.SIGKILL)
    await asyncio.to_thread(worker.wait)
    workers.start(**env)
    await eventually(lambda: _all_sent(api, key, policy["id"], total), timeout=90, interval=0.5)
    received = Counter(r for m in sink.messages() for r in m.rcpt_tos)
    assert set(received) == {f"user{i}@example.com" for i in range(total)}
    duplicates = sum(received.values()) - total
    # In flight (one per connection) plus a second's worth of answers not yet written, twice over
    # for the timing of the write; every row of the four claimed batches sent before the kill
    # (about 100) went again before.
    per_second = connections / delay
    assert duplicates <= 2 * (connections + per_second * send.FLUSH_SECONDS), received.most_common(5)
    rows = await ledger_rows(api, key, policy["id"])
    assert all(row["status"] == "sent" and row["attempts"] >= 1 for row in rows)


async def _all_sent(api: Api, key: str, policy_id: int, total: int) -> bool:
    rows = await ledger_rows(api, key, policy_id)
    return len(rows) == total and all(row["status"] == "sent" for row in rows)
