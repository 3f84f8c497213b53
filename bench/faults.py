"""Issue 14: what each fault costs. One line of figures per fault and backend.

    python -m bench.faults [--quick] [--backend sqlite|postgresql|both] [--only kill,flush,...]
                           [--outage-seconds S] [--pg-url URL]

Faults (recipients; `--quick` sizes in brackets):
- kill:   SIGKILL of the worker 5 times during a 20,000 [2,000] e-mail fan-out, restarted at once;
- flush:  Redis FLUSHDB half-way through a 5,000 [1,000] e-mail fan-out;
- outage: the SMTP relay refusing connections (open sessions dropped) for 10 minutes [20 s] from a
          quarter of the way through a 2,000 [300] e-mail fan-out; retry times are scaled down
          (base 1 s, at most 30 s) so that the outage is long against them;
- slow:   a relay taking 0.5 s a message, 200 [40] recipients, job timeout 10 s;
- sms:    the SMS stand-in taking 30% of the requests and then never answering, 2,000 [300]
          recipients, the worker waiting 2 s for a reply.
Figures: lost (never received), duplicated (people who received it more than once, and the extra
copies), failed (the ledger's permanent failures), unknown (left for a receipt or query), and the
seconds from the end of the fault until the last message arrived (for slow and sms the fault lasts
the whole run: from the publish). Each run: a fresh database seeded directly (bench.common), the
sink (bench/sink.py) or `pushsvc stub sms`, `pushsvc serve` and one `pushsvc worker`, all
separate processes; faults in the relay sit in a TCP relay in this process. PostgreSQL runs in a
database of its own (`pushsvc_faults`, created on the server of --pg-url). The bench measures
whatever the code does; targets (issue 14): lost 0 and failed 0 everywhere, duplicates 0 but for
kill (at most the messages in flight at each kill), recovered within 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis as redis_sync
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import DEFAULT_PG_URL, bench_database, catalogue, seed, sqlite_url, stop_processes
from bench.fanout_email import Sink
from bench.fanout_sms import _own_postgres_database, _prepare, free_port
from bench.fanout_sms import policy as sms_policy
from pushsvc.channels.sms import national_number
from pushsvc.dev.demo_data import demo_policy
from pushsvc.settings import REPO_ROOT, Settings

HOST = "127.0.0.1"
ADMIN = "faults-admin-token-0123456789"
SMS_SECRET = "faults-sms-secret-0123456789"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
PG_DATABASE = "pushsvc_faults"
KILLS = 5
# In flight at a kill: a message on each SMTP connection (the service's default number of them).
IN_FLIGHT_PER_KILL = Settings.model_fields["smtp_connections"].default
RECOVERY_TARGET = 60.0
SETTLE_TIMEOUT = 900.0
CLI = [sys.executable, "-m", "pushsvc.cli"]
SIZES = {"kill": (20_000, 2_000), "flush": (5_000, 1_000), "outage": (2_000, 300), "slow": (200, 40), "sms": (2_000, 300)}
# Scaled down so that a run stays short and the faults are long against them.
BASE_ENV = {"PUSHSVC_QUIET_HOURS": "00:00-00:00", "PUSHSVC_STALE_AFTER_SECONDS": "10",
            "PUSHSVC_SWEEP_EVERY_SECONDS": "5", "PUSHSVC_JOB_TIMEOUT_SECONDS": "20",
            "PUSHSVC_RETRY_BASE_SECONDS": "1", "PUSHSVC_RETRY_MAX_SECONDS": "30"}
# SMS requests of 50 numbers: enough of them for 30% to time out.
FAULT_ENV = {"slow": {"PUSHSVC_JOB_TIMEOUT_SECONDS": "10"},
             "sms": {"PUSHSVC_SMS_TIMEOUT": "2", "PUSHSVC_FANOUT_BATCH_SIZE": "50"}}


# -- a relay in front of the sink: an outage, a slow relay -------------------------------------------


class Relay:
    """TCP relay to the sink. `down()` drops open sessions and refuses new ones until `up()`;
    `delay` holds each message's end-of-data for that long (the relay's reply comes that late)."""

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port, self.delay = target_port, delay
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._session, HOST, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._open):
            writer.transport.abort()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer, self.delay), self._pump(up_reader, writer, 0.0))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        with suppress(OSError):
            while chunk := await reader.read(65536):
                if delay and chunk.endswith(b"\r\n.\r\n"):
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


# -- one run ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    fault: str
    recipients: int
    lost: int
    duplicated: int
    extra: int
    failed: int
    unknown: int
    recovery: float

    def missed(self) -> list[str]:
        """The issue's targets this run missed: lost 0 and failed 0, no extra copies but for kill (at
        most the messages in flight at each kill: one per SMTP connection), recovered within 60 s."""
        allowed = KILLS * IN_FLIGHT_PER_KILL if self.fault == "kill" else 0
        checks = [(self.lost == 0, "lost"), (self.failed == 0, "failed"),
                  (self.extra <= allowed, f"more than {allowed} extra copies"),
                  (self.recovery <= RECOVERY_TARGET, f"recovery over {RECOVERY_TARGET:.0f} s")]
        return [what for ok, what in checks if not ok]

    def line(self, backend: str) -> str:
        missed = self.missed()
        return (f"{backend:<10} {self.fault:<7} recipients={self.recipients:<6} lost={self.lost} "
                f"duplicated={self.duplicated} (+{self.extra} copies) failed={self.failed} unknown={self.unknown} "
                f"recovered={self.recovery:.1f}s after the fault: "
                + ("met" if not missed else "MISSED (" + ", ".join(missed) + ")"))


def database(backend: str, tmp: Path, pg_url: str) -> str:
    if backend == "sqlite":
        return sqlite_url(tmp, "faults.db")

    async def recreate() -> None:
        engine = create_async_engine(pg_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
            await conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
        await engine.dispose()

    asyncio.run(recreate())
    return make_url(pg_url).set(database=PG_DATABASE).render_as_string(hide_password=False)


async def contacts(url: str, sms: bool) -> list[str]:
    """What each recipient is known by at the relay or gateway."""
    db = bench_database(url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.text(f"SELECT {'phone' if sms else 'email'} FROM subscribers"))
            return [national_number(v) if sms else v for (v,) in rows]
    finally:
        await db.close()


class Run:
    """The processes of one fault's run, and what it needs to drive and read them."""

    def __init__(self, fault: str, url: str, redis_url: str, tmp: Path, http: aiohttp.ClientSession) -> None:
        self.fault, self.url, self.redis_url, self.tmp, self.http = fault, url, redis_url, tmp, http
        self.sms = fault == "sms"
        self.api = f"http://{HOST}:{free_port()}"
        self.logs = open(tmp / f"{fault}.log", "ab")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sink: Sink | None = None
        self.relay: Relay | None = None
        self.stub = ""
        self.env: dict[str, str] = {}
        self.worker: subprocess.Popen[bytes] | None = None

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*CLI, *args], env=self.env, cwd=REPO_ROOT, stdout=self.logs, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")}, **BASE_ENV,
               **FAULT_ENV.get(self.fault, {}),
               "PUSHSVC_DATABASE_URL": self.url, "PUSHSVC_REDIS_URL": self.redis_url, "PUSHSVC_ADMIN_TOKEN": ADMIN,
               "PUSHSVC_SECRET_KEY": "faults-secret-key-" + "0" * 32, "PUSHSVC_PUBLIC_URL": self.api,
               "PUSHSVC_SMS_SECRET": SMS_SECRET}
        if self.sms:
            port = free_port()
            self.stub = f"http://{HOST}:{port}"
            env["PUSHSVC_SMS_URL"] = self.stub
        else:
            self.sink = Sink()
            self.relay = Relay(self.sink.smtp_port, 0.5 if self.fault == "slow" else 0.0)
            await self.relay.up()
            env.update({"PUSHSVC_SMTP_HOST": HOST, "PUSHSVC_SMTP_PORT": str(self.relay.port)})
        self.env = env
        redis_sync.Redis.from_url(self.redis_url).flushdb()
        if self.sms:
            self.spawn("stub", "sms", "--port", str(port), "--receipt-delay", "1")
        self.spawn("serve", "--port", self.api.rsplit(":", 1)[1])
        self.worker = self.spawn("worker")
        await self._until(self._api_ready, 60)
        if self.sms:
            async with self.http.post(f"{self.stub}/_stub/faults", json={"accept_timeout": 0.3}) as resp:
                assert resp.status == 200, await resp.text()

    async def _api_ready(self) -> bool:
        with suppress(aiohttp.ClientError):
            async with self.http.get(f"{self.api}/readyz") as resp:
                return resp.status == 200
        return False

    @staticmethod
    async def _until(check: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := await check()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout:.0f} s")
            await asyncio.sleep(0.2)
        return result

    async def publish(self) -> tuple[dict[str, str], int]:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with self.http.post(f"{self.api}/v1/departments", headers=auth,
                                  json={"name": "faults", "domains": ["employment-entrepreneurship"]}) as resp:
            headers = {"Authorization": f"Bearer {(await resp.json())['api_key']}"}
        audiences = sorted(catalogue().groups)
        body = sms_policy(audiences) if self.sms else {**demo_policy(date.today()), "targeting": {"audiences": audiences}}
        async with self.http.post(f"{self.api}/v1/policies", headers=headers, json=body) as resp:
            assert resp.status == 202, await resp.text()
            return headers, (await resp.json())["id"]

    async def received(self) -> tuple[dict[str, int], float | None]:
        """Messages per recipient, and when the last arrived (epoch seconds)."""
        if self.sms:
            async with self.http.get(f"{self.stub}/_stub/messages") as resp:
                messages = await resp.json()
            counts: dict[str, int] = {}
            for m in messages:
                for r in m["results"]:
                    if r["code"] == "OK":
                        counts[r["phone_number"]] = counts.get(r["phone_number"], 0) + 1
            last = max((datetime.fromisoformat(m["received_at"]).timestamp() for m in messages), default=None)
            return counts, last
        assert self.sink is not None
        async with self.http.get(f"{self.sink.stats_url}/recipients") as resp:
            counts = await resp.json()
        return counts, (await self.sink.stats(self.http))["last_at"]

    async def count(self) -> int:
        return sum((await self.received())[0].values())

    async def reaching(self, n: int) -> None:
        await self._until(lambda: self._at_least(n), SETTLE_TIMEOUT)

    async def _at_least(self, n: int) -> bool:
        return await self.count() >= n

    async def settled(self, headers: dict[str, str], policy_id: int) -> dict[str, int]:
        """The ledger's counts once nothing is waiting or being sent, and the relay has been quiet 3 s."""
        channel = "sms" if self.sms else "email"

        async def idle() -> dict[str, int] | None:
            async with self.http.get(f"{self.api}/v1/policies/{policy_id}", headers=headers) as resp:
                body = await resp.json()
            c = body["deliveries"][channel]
            if body["status"] != "published" or c["queued"] or c["sending"] or c["held"]:
                return None
            _, last = await self.received()
            return c if last is None or time.time() - last > 3 else None

        return await self._until(idle, SETTLE_TIMEOUT)

    def restart_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()
        self.worker = self.spawn("worker")

    async def stop(self) -> None:
        stop_processes([p for p in self.procs if p.poll() is None])
        if self.relay is not None:
            await self.relay.down()
        if self.sink is not None:
            self.sink.stop()
        self.logs.close()


async def inflict(run: Run, n: int, outage: float) -> float:
    """The fault, while the fan-out runs; returns when it ended (epoch seconds)."""
    if run.fault == "kill":
        for k in range(1, KILLS + 1):
            await run.reaching(k * n // (KILLS + 1))
            run.restart_worker()
        return time.time()
    if run.fault == "flush":
        await run.reaching(n // 2)
        redis_sync.Redis.from_url(run.redis_url).flushdb()
        return time.time()
    if run.fault == "outage":
        assert run.relay is not None
        await run.reaching(n // 4)
        await run.relay.down()
        await asyncio.sleep(outage)
        await run.relay.up()
        return time.time()
    return time.time()  # slow, sms: the fault lasts the whole run


async def measure(fault: str, url: str, redis_url: str, n: int, tmp: Path, outage: float) -> Figures:
    expected = await contacts(url, fault == "sms")
    async with aiohttp.ClientSession() as http:
        run = Run(fault, url, redis_url, tmp, http)
        try:
            await run.start()
            headers, policy_id = await run.publish()
            fault_end = await inflict(run, n, outage)
            counts = await run.settled(headers, policy_id)
            received, last = await run.received()
        finally:
            await run.stop()
    twice = [c for c in received.values() if c > 1]
    return Figures(fault, n, sum(1 for who in expected if who not in received), len(twice),
                   sum(c - 1 for c in twice), counts["failed"], counts.get("unknown", 0),
                   max(0.0, (last or fault_end) - fault_end))


def one(fault: str, backend: str, args: argparse.Namespace, tmp: Path) -> Figures:
    n = SIZES[fault][1 if args.quick else 0]
    url = database(backend, tmp, args.pg_url)
    seed(url, n, ("*",))
    if backend != "sqlite":
        _own_postgres_database(url)
    if fault == "sms":
        asyncio.run(_prepare(url))
    outage = args.outage_seconds if args.outage_seconds is not None else (20.0 if args.quick else 600.0)
    return asyncio.run(measure(fault, url, args.redis_url, n, tmp, outage))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and a 20 s outage: a smoke test")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--only", default=",".join(SIZES), help=f"faults to run, comma-separated ({', '.join(SIZES)})")
    parser.add_argument("--outage-seconds", type=float, default=None, help="the relay's outage (default 600, quick 20)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"flushed (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server (its own database is made)")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in faults if f not in SIZES]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    missed = False
    for backend in backends:
        for fault in faults:
            figures = one(fault, backend, args, tmp)
            missed = missed or bool(figures.missed())
            print(figures.line("SQLite" if backend == "sqlite" else "PostgreSQL"), flush=True)
    print(f"logs: {tmp}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
