"""Publishing end to end: the API, a real arq worker process, a real SMTP server, the ledger."""

from __future__ import annotations

import email
import email.policy
import signal
from typing import Any
from urllib.parse import urlsplit

from pushsvc.core.identifiers import uscc_check_char
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY

HEADER = "name,email,domains,channels,enterprise.uscc,enterprise.district,enterprise.industry,enterprise.scale"


def csv_rows(n: int, start: int = 0, district: str = "haizhu") -> bytes:
    lines = [HEADER]
    for i in range(start, start + n):
        body = f"91440101MA{i:07d}"
        lines.append(f"测试企业{i},user{i}@example.com,*,email,{body}{uscc_check_char(body)},{district},C,small")
    return "\n".join(lines).encode()


async def seed(api: Api, key: str, n: int, start: int = 0, district: str = "haizhu") -> None:
    status, body = await api.call("POST", "/v1/subscribers/import", key, data=csv_rows(n, start, district),
                                  headers={"Content-Type": "text/csv"})
    assert status == 200 and body["imported"] == n, body


async def counts(api: Api, key: str, policy_id: int) -> dict[str, int]:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    assert status == 200, body
    return body["deliveries"]["email"] | {"_status": body["status"]}


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


async def test_publish_sends_once_with_headers_and_unsubscribe_works(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 30)
    await seed(api, key, 5, start=100, district="yuexiu")  # not targeted
    workers.start()

    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and policy["status"] == "publishing"
    await eventually(lambda: sink.count() >= 30)
    final = await eventually(lambda: _done(api, key, policy["id"], 30))
    assert final["sent"] == 30 and final["_status"] == "published"

    messages = sink.messages()
    assert len(messages) == 30 and len({tuple(m.rcpt_tos) for m in messages}) == 30
    first = parsed(messages[0].data)
    assert POLICY["title"] in first["Subject"] and "市人社局" in first["Subject"]
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first.get_content_type() == "multipart/alternative"
    text = first.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"/p/{policy['id']}" in text and POLICY["interpretation_url"] in text

    # Follow the unsubscribe link of one recipient: the next policy no longer reaches them.
    victim = messages[0].rcpt_tos[0]
    link = first["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    status, page = await api.call("GET", urlsplit(link).path)
    assert status == 200 and "<form" in page
    status, page = await api.call("POST", urlsplit(link).path, data={"List-Unsubscribe": "One-Click"})
    assert status == 200

    sink.clear()
    status, second = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": "第二项政策"})
    await eventually(lambda: _done(api, key, second["id"], 29))
    assert sink.count() == 29 and victim not in {r for m in sink.messages() for r in m.rcpt_tos}

    status, page = await api.call("GET", f"/p/{policy['id']}")
    assert status == 200 and POLICY["doc_number"] in page


async def _done(api: Api, key: str, policy_id: int, expected: int) -> dict[str, int] | None:
    c = await counts(api, key, policy_id)
    finished = c["sent"] + c["failed"]
    return c if finished >= expected and c["_status"] == "published" and c["queued"] == c["sending"] == 0 else None


async def test_smtp_refusing_for_a_while_loses_nothing(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 50)
    sink.set_faults(temp_fail_for=3.0)
    workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    final = await eventually(lambda: _done(api, key, policy["id"], 50), timeout=60)
    assert final["sent"] == 50 and final["failed"] == 0
    delivered = [r for m in sink.messages() for r in m.rcpt_tos]
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 50
    status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=sent&limit=10", key)
    assert len(page["items"]) == 10 and page["next_cursor"] and max(i["attempts"] for i in page["items"]) >= 1


async def test_permanent_failure_keeps_the_reason(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 5)
    sink.set_faults(reject={"user2@example.com"})
    workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    final = await eventually(lambda: _done(api, key, policy["id"], 5))
    assert final["sent"] == 4 and final["failed"] == 1
    status, page = await api.call("GET", f"/v1/policies/{policy['id']}/deliveries?status=failed", key)
    [failed] = page["items"]
    assert failed["attempts"] == 1 and failed["error"].startswith("550")


async def test_scheduled_policy_waits_for_publish_at(api: Api, workers: Workers, sink: SmtpSink) -> None:
    from datetime import datetime, timedelta, timezone

    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 3)
    workers.start()
    at = (datetime.now(timezone.utc) + timedelta(seconds=3)).isoformat()
    status, policy = await api.call("POST", "/v1/policies", key, json={**POLICY, "publish_at": at})
    assert status == 202 and policy["status"] == "scheduled"
    await eventually(lambda: _done(api, key, policy["id"], 3), timeout=30)
    assert sink.count() == 3


async def test_worker_killed_mid_fanout_resends_at_most_in_flight(
    api: Api, workers: Workers, sink: SmtpSink, settings_env: dict[str, Any]
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    total = 3000
    await seed(api, key, total)
    worker = workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    await eventually(lambda: sink.count() >= total // 3, timeout=60, interval=0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    at_kill = sink.count()
    workers.start()
    await eventually(lambda: _done(api, key, policy["id"], total), timeout=120)
    received = [r for m in sink.messages() for r in m.rcpt_tos]
    assert set(received) == {f"user{i}@example.com" for i in range(total)}
    duplicates = len(received) - len(set(received))
    # Only what was in flight at the kill may come twice: at most one batch per concurrent job.
    assert duplicates <= int(settings_env["PUSHSVC_FANOUT_BATCH_SIZE"]) * 8, (duplicates, at_kill)
