"""GET /metrics in Prometheus text: this process's requests, plus the whole service's numbers read
at scrape time from Redis (counters the workers keep) and the ledger (pushsvc.metrics).

Expose /metrics to the monitoring network only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from pushsvc.core.clock import now
from pushsvc.http.metrics import REGISTRY
from pushsvc.http.routing import endpoint, services
from pushsvc.metrics import (
    FANOUT,
    FANOUT_HELP,
    oldest_queued_age,
    policies_publishing,
    provider_states,
    queue_state,
    read_shared,
)
from pushsvc.services import Services

log = logging.getLogger(__name__)

class _Families(Collector):
    """Families read at scrape time (from Redis and the ledger), shown once."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def _from_redis(svc: Services) -> list[Metric]:
    shared = await read_shared(svc.redis)
    families: list[Metric] = []
    for counter, values in shared.counters.items():
        family = CounterMetricFamily(counter.name, counter.help, labels=counter.labels)
        for labels, n in sorted(values.items()):
            family.add_metric(labels, n)
        families.append(family)
    fanout = shared.fanout
    families.append(HistogramMetricFamily(FANOUT, FANOUT_HELP, sum_value=fanout.sum,
                                          buckets=[(_le(bound), n) for bound, n in fanout.buckets]))
    queue = await queue_state(svc.redis)
    jobs = GaugeMetricFamily("pushsvc_queue_jobs", "Jobs in the arq queue: waiting to start, running, "
                             "scheduled for later (deferred, retries)", labels=("state",))
    for state in ("waiting", "running", "scheduled"):
        jobs.add_metric((state,), getattr(queue, state))
    down = GaugeMetricFamily("pushsvc_provider_down", "Since when a provider is down (its circuit breaker open), "
                             "as Unix time; 0 while it is up", labels=("provider",))
    for p in await provider_states(svc.redis):
        down.add_metric((p.provider,), p.down_since.timestamp() if p.down_since else 0.0)
    return [*families, jobs, down]


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def _from_ledger(svc: Services) -> list[Metric]:
    async with svc.db.read() as conn:
        age = await oldest_queued_age(conn, now())
        publishing = await policies_publishing(conn)
    return [
        GaugeMetricFamily("pushsvc_oldest_queued_delivery_age_seconds",
                          "Seconds the longest-waiting queued delivery has waited (0: none queued)", value=age or 0.0),
        GaugeMetricFamily("pushsvc_policies_publishing", "Policies whose fan-out is under way", value=publishing),
    ]


@endpoint("GET", "/metrics", summary="Prometheus metrics: requests, deliveries, receipts, fan-out time, queue, providers down, "
          "ledger", tag="operations")
async def metrics(request: web.Request) -> web.Response:
    svc = services(request)
    families: list[Metric] = []
    up = GaugeMetricFamily("pushsvc_metrics_source_up", "Whether a source of these metrics answered the scrape",
                           labels=("source",))
    for source, read, errors in (("redis", _from_redis, (RedisError, OSError)),
                                 ("database", _from_ledger, (SQLAlchemyError, OSError))):
        try:
            families += await read(svc)
            up.add_metric((source,), 1)
        except errors as exc:  # the rest of the numbers are still worth having
            log.warning("metrics: %s unavailable (%s)", source, type(exc).__name__)
            up.add_metric((source,), 0)
    scraped = CollectorRegistry()
    scraped.register(_Families([*families, up]))
    body = generate_latest(REGISTRY) + generate_latest(scraped)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
