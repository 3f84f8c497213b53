"""`pushsvc status` as an operator runs it: the queue and the ledger after a real fan-out, and
work waiting while no worker runs."""

from __future__ import annotations

import re

from pushsvc.core.figures import duration
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, seed
from tests.test_operations import cli


def cells(line: str) -> list[str]:
    return [c for c in re.split(r"\s*[│┃]\s*", line.strip()) if c]


def row(output: str, first: str) -> list[str]:
    """The cells of the table row starting with `first`."""
    for line in output.splitlines():
        if cells(line)[:1] == [first]:
            return cells(line)
    raise AssertionError(f"no row {first!r} in:\n{output}")


def queue_counts(output: str) -> list[int]:
    """waiting, running, scheduled: the row under the queue table's header."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if cells(line) == ["waiting", "running", "scheduled"])
    return [int(c) for c in cells(lines[header + 2])]


async def test_status_shows_queue_and_ledger(api: Api, workers: Workers, sink: SmtpSink,
                                             settings_env: dict[str, str]) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 15)
    sink.set_faults(reject=["user4@example.com"])
    workers.start()
    status, done = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, done
    await eventually(lambda: _done(api, key, done["id"], 15))
    workers.stop_all()
    before = cli(settings_env, "status")
    # With no worker: one fan-out waits, one is scheduled for later.
    assert (await api.call("POST", "/v1/policies", key, json={**POLICY, "title": "第二项"}))[0] == 202
    later = {**POLICY, "title": "第三项", "publish_at": "2099-01-01T09:00:00+08:00"}
    assert (await api.call("POST", "/v1/policies", key, json=later))[0] == 202

    result = cli(settings_env, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # The stopped workers' cron jobs may be queued too, and come due meanwhile: compare totals.
    (w0, r0, s0), (waiting, running, scheduled) = queue_counts(before.stdout), queue_counts(out)
    assert waiting + running + scheduled == w0 + r0 + s0 + 2 and waiting >= 1 and scheduled >= 1
    # channel, queued, sending, sent, delivered, failed, held, digest, unknown, suppressed, total
    assert row(out, "email") == ["email", "0", "0", "14", "0", "1", "0", "0", "0", "0", "15"]
    assert row(out, "all")[-1] == "15"
    assert "Policies publishing: 0" in before.stdout
    assert "Oldest queued delivery: none queued" in out and "Policies publishing: 1" in out


def test_status_says_what_it_cannot_reach(settings_env: dict[str, str]) -> None:
    result = cli({**settings_env, "PUSHSVC_REDIS_URL": "redis://127.0.0.1:1/0"}, "status")
    assert result.returncode == 1
    assert "Queue: Redis unavailable" in result.stdout and row(result.stdout, "all")


def test_durations_read_like_a_person_would_say_them() -> None:
    # The admin page's delivery times and the status command's ages alike; tenths under a minute.
    assert [duration(s) for s in (0.4, 4.7, 59.97, 192, 7500, 270000)] == [
        "0.4 s", "4.7 s", "1 min 0 s", "3 min 12 s", "2 h 5 min", "3 d 3 h"]
    assert duration(None) == "–"
