"""The send step every sender uses, with a stand-in channel and no servers: quiet hours, what a
channel that is missing, cannot render or breaks comes to, and the row updates kept for the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from typing import Any, ClassVar, cast

import pytest

from pushsvc.channels.base import Channel, Report, no_report
from pushsvc.core.messages import CaseAlertMessage, HasContacts, Message, Outcome, PolicyMessage, Recipient
from pushsvc.core.rendering import RenderError
from pushsvc.delivery.send import Row, SendStep
from pushsvc.services import Services
from pushsvc.settings import Settings

NIGHT = datetime(2026, 11, 28, 14, 30, tzinfo=timezone.utc)  # 22:30 in Guangzhou
NOON = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)
POLICY = PolicyMessage(
    policy_id=1, kind="policy", version="1", title="t", summary="s", department="d", domain="employment",
    doc_number=None, page_url="https://push.example.gov.cn/p/1", short_url="https://push.example.gov.cn/s/A",
    source_url=None, interpretation_url=None, produced_on=None, effective_on=None, expires_on=None,
)
ALERT = CaseAlertMessage(
    case_id=1, title="t", case_no="c1", department="d", status_label={}, time_limit_days=10, elapsed_days=8,
    due_on=date(2026, 12, 1), page_url="https://push.example.gov.cn/c/x", short_url="https://push.example.gov.cn/s/B",
)


class StandIn(Channel):
    """Sends to everyone unless told to fail; honours quiet hours like SMS does."""

    name: ClassVar[str] = "standin"

    def __init__(self, fault: Exception | None = None) -> None:
        self.fault = fault
        self.sent: list[int] = []

    @staticmethod
    def address(contacts: HasContacts) -> str | None:
        return contacts.phone

    def honours_quiet_hours(self, recipient: Recipient) -> bool:
        return True

    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        return {}

    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        if self.fault is not None:
            raise self.fault
        self.sent += [r.delivery_id for r in recipients]
        return [Outcome(r.delivery_id, "sent", provider_ref=f"m{r.delivery_id}") for r in recipients]


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PUSHSVC_ADMIN_TOKEN", "x" * 20)
    monkeypatch.setenv("PUSHSVC_SECRET_KEY", "y" * 40)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def step(settings: Settings, channel: Channel | None, written: list[dict[str, Any]] | None = None) -> SendStep:
    async def ledger(conn: Any, updates: Sequence[dict[str, Any]]) -> None:
        assert written is not None
        written.extend(updates)

    svc = Services(settings=settings, db=NoDatabase(), catalogue=None, signer=None, renderer=None,  # type: ignore[arg-type]
                   redis=None, channels={StandIn.name: channel} if channel else {})
    return SendStep(svc, "policy", ledger if written is not None else None)


class NoDatabase:
    """The step writes through `db.write()`; the ledger stand-ins ignore the connection."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        yield None


def people(*ids: int, **quiet: int) -> list[Recipient]:
    return [Recipient(i, i, None, "zh-CN", phone=f"+861380013800{i}", **cast(dict[str, Any], quiet)) for i in ids]


def own_rows(*ids: int) -> dict[int, tuple[Row, ...]]:
    return {i: (Row(i, 1),) for i in ids}


async def test_subscribers_in_their_quiet_hours_are_held_the_rest_sent(settings: Settings) -> None:
    channel = StandIn()
    results = await step(settings, channel).send(
        StandIn.name, POLICY, [*people(1), *people(2, quiet_start=0, quiet_end=0)], own_rows(1, 2), NIGHT)
    by_id = {r.outcome.delivery_id: r for r in results}
    assert by_id[1].status == "held" and by_id[1].retry_at == datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)
    assert by_id[2].status == "sent" and channel.sent == [2]  # their own span: none


async def test_only_messages_to_subscribers_wait_for_quiet_hours(settings: Settings) -> None:
    channel = StandIn()
    [result] = await step(settings, channel).send(StandIn.name, ALERT, people(1), own_rows(1), NIGHT)
    assert result.status == "sent" and channel.sent == [1]


@pytest.mark.parametrize(("fault", "status"), [(RenderError("no such variable"), "failed"),
                                               (RuntimeError("provider client broke"), "queued")])
async def test_a_channel_that_raises_settles_its_recipients_and_keeps_the_rest(
    settings: Settings, fault: Exception, status: str
) -> None:
    written: list[dict[str, Any]] = []
    sending = step(settings, StandIn(fault), written)
    sending.settle(StandIn.name, [Outcome(9, "failed", "unsubscribed before sending")], own_rows(9))
    results = await sending.send(StandIn.name, POLICY, people(1, 2), own_rows(1, 2), NOON)
    assert [r.status for r in results] == [status, status]
    await sending.flush()
    assert sorted(u["did"] for u in written) == [1, 2, 9]


async def test_a_channel_not_configured_fails_for_good(settings: Settings) -> None:
    [result] = await step(settings, None).send(StandIn.name, POLICY, people(1), own_rows(1), NOON)
    assert result.status == "failed" and result.outcome.error == "channel 'standin' is not configured"


async def test_one_outcome_settles_every_row_it_stands_for(settings: Settings) -> None:
    """A digest: one message for a subscriber settles each policy's row, each at its own attempt."""
    written: list[dict[str, Any]] = []
    sending = step(settings, StandIn(RuntimeError("down")), written)
    [result] = await sending.send(StandIn.name, POLICY, people(1), {1: (Row(1, 1), Row(5, settings.max_attempts))},
                                  NOON)
    await sending.flush()
    assert [(u["did"], u["new_status"]) for u in result.updates] == [(1, "queued"), (5, "failed")]
    assert written == list(result.updates)
