"""The benches themselves, scaled down: they run, agree with themselves and print their tables."""

from __future__ import annotations

import pytest

from bench import fanout_email, faults, match
from bench.common import DEFAULT_PG_URL, sqlite_url
from tests.conftest import PG_URL


@pytest.mark.slow
def test_match_bench_at_20000(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    urls = [sqlite_url(tmp_path, "m.db")] + ([DEFAULT_PG_URL] if PG_URL else [])
    args = ["--subscribers", "20000", "--explain"] + [a for url in urls for a in ("--database-url", url)]
    assert match.main(args) == 0
    out = capsys.readouterr().out
    assert "SQLite" in out and "disagree" not in out and ("SCAN" in out or "SEARCH" in out)


@pytest.mark.slow
def test_fanout_bench_small(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    # The session's own Redis database: the bench flushes it, and other sessions may run alongside.
    fanout_email.main(["--subscribers", "2000", "--naive-recipients", "200", "--redis-url", redis_url])
    out = capsys.readouterr().out
    assert "2,000 sent, 0 failed" in out and "pushsvc / raw" in out and "pushsvc / naive" in out


def test_fault_bench_sms_timeouts_quick(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    # The SMS stand-in taking 30% of the requests and never answering: nothing lost, failed or twice.
    assert faults.main(["--quick", "--backend", "sqlite", "--only", "sms", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert "sms" in out and "lost=0 duplicated=0 (+0 copies) failed=0" in out, out
