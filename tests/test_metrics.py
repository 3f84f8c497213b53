"""GET /metrics after a real fan-out by a worker process: the workers' delivery counters, read
from Redis by the API, next to the API's own request counters, the queue and the ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushsvc.channels.sms import signed_headers
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, seed

SMS_SECRET = "test-sms-secret-0123456789"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "PUSHSVC_SMS_SECRET": SMS_SECRET}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Api) -> Samples:
    async with api.session.get(api.base + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> Iterator[dict[str, str]]:
    return (dict(labels) for n, labels in samples if n == name)


async def test_metrics_show_a_fanout_done_by_a_worker(api: Api, workers: Workers, sink: SmtpSink) -> None:
    key = (await api.department())["api_key"]
    await seed(api, key, 20)
    sink.set_faults(temp_fail_for=60)  # every attempt refused for now: deliveries wait in the queue
    workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy

    async def waiting() -> bool:
        return (value(await scrape(api), "pushsvc_oldest_queued_delivery_age_seconds") or 0) > 0

    await eventually(waiting)
    # Then one address refused for good, and one recipient in five refused for now.
    sink.set_faults(temp_fail_rate=0.2, reject=["user3@example.com"])
    await eventually(lambda: _done(api, key, policy["id"], 20), timeout=60)
    receipt = json.dumps({"receipts": [{"message_id": "not-ours-1", "delivered": True}]}).encode()
    status, _ = await api.call("POST", "/v1/receipts/sms", data=receipt, headers=signed_headers(SMS_SECRET, receipt))
    assert status == 200

    m = await scrape(api)
    assert value(m, "pushsvc_deliveries_total", kind="policy", channel="email", outcome="sent") == 19
    assert value(m, "pushsvc_deliveries_total", kind="policy", channel="email", outcome="failed") == 1
    assert (value(m, "pushsvc_delivery_retries_total", channel="email") or 0) >= 1
    assert value(m, "pushsvc_receipts_total", channel="sms", result="unknown") == 1
    assert (value(m, "pushsvc_fanout_seconds_count") or 0) >= 1
    assert value(m, "pushsvc_fanout_seconds_bucket", le="+Inf") == value(m, "pushsvc_fanout_seconds_count")
    assert value(m, "pushsvc_oldest_queued_delivery_age_seconds") == 0  # nothing left waiting
    assert value(m, "pushsvc_policies_publishing") == 0
    assert {s["state"] for s in series(m, "pushsvc_queue_jobs")} == {"waiting", "running", "scheduled"}
    assert value(m, "pushsvc_metrics_source_up", source="redis") == value(m, "pushsvc_metrics_source_up", source="database") == 1

    # Requests by route template and status, never by raw path.
    assert (value(m, "pushsvc_http_requests_total", method="POST", route="/v1/policies", status="202") or 0) >= 1
    assert (value(m, "pushsvc_http_requests_total", method="GET", route="/v1/policies/{id}", status="200") or 0) >= 1
    routes = {s["route"] for s in series(m, "pushsvc_http_requests_total")}
    assert not any(str(policy["id"]) in r.split("/") for r in routes)
    await api.call("GET", "/no/such/page/12345")
    assert "(unmatched)" in {s["route"] for s in series(await scrape(api), "pushsvc_http_requests_total")}


async def test_queue_and_ledger_while_nobody_works(api: Api) -> None:
    key = (await api.department())["api_key"]
    status, _ = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202
    status, _ = await api.call("POST", "/v1/policies", key, json={**POLICY, "publish_at": "2099-01-01T09:00:00+08:00"})
    assert status == 202
    m = await scrape(api)
    assert value(m, "pushsvc_queue_jobs", state="waiting") == 1  # no worker: the fan-out waits
    assert value(m, "pushsvc_queue_jobs", state="scheduled") == 1
    assert value(m, "pushsvc_policies_publishing") == 1
