"""Issue 3: e-mail fan-out throughput against the raw SMTP limit, and against a naive design.

    python -m bench.fanout_email [--subscribers N] [--naive-recipients M] [--connections C]

1. Seeds N subscribers (bulk, into a temporary SQLite file: the embedded default), all matched by
   the bench policy, all on e-mail.
2. Starts a local SMTP sink in its own process (bench/sink.py).
3. raw: N pre-rendered messages sent with aiosmtplib over PUSHSVC_SMTP_CONNECTIONS (default 8)
   long-lived connections, from a fresh process: what this machine's sink can take.
4. pushsvc: the API (in this process) and one `pushsvc worker` process; timed from the publish
   request until the sink has accepted the last message. The worker's RSS is sampled throughout.
5. naive: one arq job and one new SMTP connection per recipient, each message built with the
   `email` package, for M recipients, by a worker with the same max_jobs.
On a machine with two or more CPUs the sink (and this driver, idle while it waits) runs on CPU 1
and whatever sends (raw sender, pushsvc worker, naive worker) on CPU 0, so each sender gets the
same single core and the sink never competes with it. Redis and SQLite's work float.
CPU: the senders' own user+system seconds per 1,000 messages, over the sending only: the worker
process and its urgent-lane child from the publish until the ledger has every outcome (rendering,
ledger reads and writes, SMTP), the raw sender over its sending; and the sink's, which both drive.
Targets: pushsvc/raw >= 0.6, worker peak RSS < 300 MB, pushsvc CPU per message <= 1.5x the raw
sender's (`--no-check-cpu`: printed, not judged).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import psutil
import redis
from aiohttp import web
from arq import create_pool
from arq.worker import Worker, func
from rich.console import Console
from rich.table import Table

from bench.common import catalogue, cpu_count, cpu_seconds, isolated, seed, sqlite_url, tree_cpu_seconds
from pushsvc.app import build_app
from pushsvc.dev.demo_data import demo_policy
from pushsvc.jobs import job_deserializer, job_serializer
from pushsvc.services import open_services, redis_settings
from pushsvc.settings import REPO_ROOT, load_settings

HOST = "127.0.0.1"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
TARGET_RATIO = 0.6
TARGET_RSS_MB = 300.0
TARGET_CPU_RATIO = 1.5  # pushsvc's CPU per message at most this many times the raw sender's
SENDER = "bench@example.gov.cn"
SENDER_CPU, SINK_CPU = 0, 1
RUN_TIMEOUT = 1800.0


@dataclass
class Run:
    messages: int
    seconds: float
    avg_bytes: float = 0.0
    peak_rss_mb: float | None = None
    sent: int | None = None
    failed: int | None = None
    cpu_seconds: float | None = None  # the sender's own
    sink_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_per_1000(self) -> float | None:
        return None if self.cpu_seconds is None else self.cpu_seconds * 1000 / self.messages


CPUS = cpu_count()  # read before this driver pins itself


def pinning() -> bool:
    return CPUS >= 2


def pin_to(cpu: int) -> Callable[[], None] | None:
    """A preexec_fn pinning a child process to one CPU (None when there is nothing to pin to)."""
    return (lambda: os.sched_setaffinity(0, {cpu})) if pinning() else None


# --- the sink -------------------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "bench.sink"] + (["--cpu", str(SINK_CPU)] if pinning() else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        assert self.proc.stdout is not None
        ready, smtp_port, stats_port = self.proc.stdout.readline().split()
        assert ready == "READY"
        self.smtp_port = int(smtp_port)
        self.stats_url = f"http://{HOST}:{stats_port}"

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.stats_url}/stats") as resp:
            return await resp.json()  # type: ignore[no-any-return]

    async def clear(self, http: aiohttp.ClientSession) -> None:
        async with http.post(f"{self.stats_url}/clear"):
            pass

    async def wait_for(self, http: aiohttp.ClientSession, count: int) -> dict[str, Any]:
        """Poll until `count` messages are in; returns the stats (last_at: when the last arrived)."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            stats = await self.stats(http)
            if stats["messages"] >= count:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink has {stats['messages']} of {count} messages")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def timed(http: aiohttp.ClientSession, sink: Sink, count: int, start: Callable[[], Any]) -> Run:
    """From just before `start()` (awaited if a coroutine) until the sink has `count` messages;
    the sink's CPU over the same span."""
    await sink.clear(http)
    sink_cpu = cpu_seconds(sink.proc.pid)
    started = time.time()
    result = start()
    if asyncio.iscoroutine(result):
        await result
    stats = await sink.wait_for(http, count)
    return Run(stats["messages"], stats["last_at"] - started, stats["bytes"] / max(stats["messages"], 1),
               sink_cpu_seconds=cpu_seconds(sink.proc.pid) - sink_cpu)


# --- raw: what the sink can take ------------------------------------------------------------------
def policy_email(to: str) -> EmailMessage:
    """The bench policy as the `email` package builds it: Chinese text and HTML alternatives."""
    policy = demo_policy(date.today())
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = policy["title"]
    msg.set_content(f"{policy['summary']}\n\n{policy['body']}\n\n政策原文：{policy['url']}\n"
                    f"政策解读：{policy['interpretation_url']}\n")
    msg.add_alternative(f"<html><body><h1>{policy['title']}</h1><p>{policy['summary']}</p>"
                        f"<pre>{policy['body']}</pre></body></html>", subtype="html")
    return msg


def sample_message(size_like: int = 0) -> bytes:
    """Pre-rendered bytes, padded to `size_like` so that raw and pushsvc move the same bytes."""
    msg = policy_email("someone@example.com")
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if size_like > len(data):
        pad = b"\r\n ".join([b"x" * 70] * ((size_like - len(data)) // 73 + 1))  # folded: lines stay short
        data = data.replace(b"\r\n\r\n", b"\r\nX-Padding: " + pad + b"\r\n\r\n", 1)
    return data


def raw_send(port: int, n: int, connections: int, data: bytes) -> float:
    """In a fresh process on the senders' CPU: `n` copies of `data` over `connections` sessions.
    Returns the CPU seconds (user+system) the sending took, the interpreter's start left out."""
    if pinning():
        os.sched_setaffinity(0, {SENDER_CPU})

    async def run() -> None:
        todo = iter(range(n))

        async def lane() -> None:
            smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False)
            await smtp.connect()
            for i in todo:
                await smtp.sendmail(SENDER, [f"raw{i}@example.com"], data)
            await smtp.quit()

        await asyncio.gather(*(lane() for _ in range(connections)))

    started = time.process_time()
    asyncio.run(run())
    return time.process_time() - started


# --- pushsvc --------------------------------------------------------------------------------------
@contextmanager
def rss_sampler(pid: int, every: float = 0.1) -> Iterator[list[float]]:
    """Samples a process's RSS (MB) in a thread; the list holds the peak so far."""
    peak = [0.0]
    stop = threading.Event()
    proc = psutil.Process(pid)

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, preexec_fn=pin_to(SENDER_CPU))


async def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30, times: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(text) < times:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log} never said {text!r}:\n{log.read_text(errors='replace')[-2000:]}")
        await asyncio.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(70)
    except subprocess.TimeoutExpired:
        proc.kill()


async def run_pushsvc(http: aiohttp.ClientSession, sink: Sink, env: dict[str, str], n: int, workdir: Path,
                      api_socket: socket.socket) -> Run:
    # The API here gets the worker's settings, without changing this process's environment.
    settings = load_settings(**{k.removeprefix("PUSHSVC_").lower(): v for k, v in env.items() if k.startswith("PUSHSVC_")})
    svc = await open_services(settings)
    runner = web.AppRunner(build_app(settings, svc), access_log=None)
    await runner.setup()
    await web.SockSite(runner, api_socket).start()
    log = workdir / "worker.log"
    worker = start_process(["-m", "pushsvc.cli", "worker"], env, log)
    try:
        # Twice: the worker's and its urgent lane's, so that neither's start-up counts as fan-out CPU.
        await wait_for_line(log, "Starting worker", worker, timeout=90, times=2)
        auth = {"Authorization": f"Bearer {settings.admin_token}"}
        async with http.post(f"{settings.public_url}/v1/departments", headers=auth,
                             json={"name": "bench", "domains": ["employment-entrepreneurship"]}) as resp:
            key = (await resp.json())["api_key"]
        policy = {**demo_policy(date.today()), "targeting": {"audiences": sorted(catalogue().groups)}}  # everyone
        headers = {"Authorization": f"Bearer {key}"}
        published: dict[str, Any] = {}

        async def publish() -> None:
            async with http.post(f"{settings.public_url}/v1/policies", headers=headers, json=policy) as resp:
                assert resp.status == 202, await resp.text()
                published.update(await resp.json())

        with rss_sampler(worker.pid) as peak:
            cpu = tree_cpu_seconds(worker.pid)
            run = await timed(http, sink, n, publish)
            counts = await final_counts(http, settings.public_url, headers, published["id"])
            cpu = tree_cpu_seconds(worker.pid) - cpu
        run.peak_rss_mb, run.sent, run.failed, run.cpu_seconds = peak[0], counts["sent"], counts["failed"], cpu
        return run
    finally:
        stop_process(worker)
        await runner.cleanup()
        await svc.close()


async def final_counts(http: aiohttp.ClientSession, base: str, headers: dict[str, str], policy_id: int) -> dict[str, int]:
    deadline = time.monotonic() + 120
    while True:
        async with http.get(f"{base}/v1/policies/{policy_id}", headers=headers) as resp:
            body = await resp.json()
        counts = body["deliveries"]["email"]
        if body["status"] == "published" and counts["queued"] == counts["sending"] == 0 or time.monotonic() > deadline:
            return counts  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)


# --- naive: one job and one connection per recipient ----------------------------------------------
async def naive_send(ctx: dict[str, Any], address: str) -> None:
    """The naive way: build the whole message for this one recipient, open a connection for it."""
    await aiosmtplib.send(policy_email(address), hostname=HOST, port=int(os.environ["BENCH_SMTP_PORT"]), start_tls=False)


def naive_worker() -> None:
    """`python -m bench.fanout_email --naive-worker`: an arq worker running naive_send."""
    logging.basicConfig(level=logging.INFO)  # arq says "Starting worker" when it is ready
    settings = load_settings()
    Worker(functions=[func(naive_send, timeout=60)], redis_settings=redis_settings(settings.redis_url),
           job_serializer=job_serializer, job_deserializer=job_deserializer, max_jobs=settings.worker_max_jobs,
           poll_delay=0.2, handle_signals=True).run()


async def run_naive(http: aiohttp.ClientSession, sink: Sink, env: dict[str, str], m: int, workdir: Path) -> Run:
    redis.Redis.from_url(env["PUSHSVC_REDIS_URL"]).flushdb()
    log = workdir / "naive-worker.log"
    worker = start_process(["-m", "bench.fanout_email", "--naive-worker"], env, log)
    pool = await create_pool(redis_settings(env["PUSHSVC_REDIS_URL"]), job_serializer=job_serializer,
                             job_deserializer=job_deserializer)
    try:
        await wait_for_line(log, "Starting worker", worker)

        async def enqueue_all() -> None:
            for i in range(m):
                await pool.enqueue_job("naive_send", f"naive{i}@example.com")

        cpu = cpu_seconds(worker.pid)
        run = await timed(http, sink, m, enqueue_all)
        run.cpu_seconds = cpu_seconds(worker.pid) - cpu
        return run
    finally:
        await pool.aclose()
        stop_process(worker)


# --- the whole bench ------------------------------------------------------------------------------
def bench_env(database_url: str, redis_url: str, api_port: int, smtp_port: int, connections: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")},
        "PUSHSVC_DATABASE_URL": database_url,
        "PUSHSVC_REDIS_URL": redis_url,
        "PUSHSVC_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "PUSHSVC_SECRET_KEY": secrets.token_urlsafe(48),
        "PUSHSVC_PUBLIC_URL": f"http://{HOST}:{api_port}",
        "PUSHSVC_SMTP_HOST": HOST,
        "PUSHSVC_SMTP_PORT": str(smtp_port),
        "PUSHSVC_SMTP_CONNECTIONS": str(connections),
        "BENCH_SMTP_PORT": str(smtp_port),
    }


async def bench(args: argparse.Namespace, workdir: Path, console: Console) -> dict[str, Run]:
    database_url = sqlite_url(workdir, "fanout.db")
    console.print(f"seeding {args.subscribers:,} subscribers ...")
    seeded = isolated(seed, database_url, args.subscribers, ("*",))
    console.print(f"  {seeded.rows:,} rows in {seeded.seconds:.1f} s")
    redis.Redis.from_url(args.redis_url).flushdb()
    sink = Sink()
    connections = args.connections or load_settings(admin_token="x" * 16, secret_key="x" * 32).smtp_connections
    api_socket = socket.create_server((HOST, 0))  # handed to the API: its port is known before it starts
    env = bench_env(database_url, args.redis_url, api_socket.getsockname()[1], sink.smtp_port, connections)
    runs: dict[str, Run] = {}
    try:
        if pinning():
            os.sched_setaffinity(0, {SINK_CPU})  # this driver mostly waits; keep it off the senders' CPU
        async with aiohttp.ClientSession() as http:
            console.print("pushsvc: publish -> fan-out -> deliver ...")
            runs["pushsvc"] = await run_pushsvc(http, sink, env, args.subscribers, workdir, api_socket)
            data = sample_message(int(runs["pushsvc"].avg_bytes))
            console.print(f"raw: {args.subscribers:,} pre-rendered messages over {connections} connections ...")
            raw_cpu: list[float] = []

            async def send_raw() -> None:
                raw_cpu.append(await asyncio.to_thread(isolated, raw_send, sink.smtp_port, args.subscribers,
                                                       connections, data))

            runs["raw"] = await timed(http, sink, args.subscribers, send_raw)
            runs["raw"].cpu_seconds = raw_cpu[0]
            if args.naive_recipients:
                console.print(f"naive: {args.naive_recipients:,} jobs, one connection each ...")
                runs["naive"] = await run_naive(http, sink, env, args.naive_recipients, workdir)
    finally:
        sink.stop()
        api_socket.close()
    return runs


def per_1000(seconds: float | None, messages: int) -> str:
    return "-" if seconds is None else f"{seconds * 1000 / messages:.2f}"


def print_runs(console: Console, runs: dict[str, Run], connections_note: str, check_cpu: bool) -> bool:
    raw, ours = runs["raw"], runs["pushsvc"]
    table = Table(title=f"e-mail fan-out, {CPUS} CPU(s); {connections_note}")
    for column in ("run", "messages", "seconds", "msg/s", "avg size", "vs raw", "CPU s/1k", "sink CPU s/1k",
                   "worker peak RSS", "ledger"):
        table.add_column(column, justify="right")
    for name, run in runs.items():
        ledger = f"{run.sent:,} sent, {run.failed:,} failed" if run.sent is not None else "-"
        rss = f"{run.peak_rss_mb:.0f} MB" if run.peak_rss_mb is not None else "-"
        table.add_row(name, f"{run.messages:,}", f"{run.seconds:.1f}", f"{run.rate:,.0f}",
                      f"{run.avg_bytes / 1024:.1f} KiB", f"{run.rate / raw.rate:.2f}",
                      per_1000(run.cpu_seconds, run.messages), per_1000(run.sink_cpu_seconds, run.messages), rss, ledger)
    console.print(table)
    ratio = ours.rate / raw.rate
    ok = ratio >= TARGET_RATIO and (ours.peak_rss_mb or 0) < TARGET_RSS_MB
    console.print(f"pushsvc / raw = {ratio:.2f} (target >= {TARGET_RATIO}); worker peak RSS "
                  f"{ours.peak_rss_mb:.0f} MB (target < {TARGET_RSS_MB:.0f}): {'met' if ok else 'missed'}")
    assert ours.cpu_per_1000 is not None and raw.cpu_per_1000 is not None
    cpu_ratio = ours.cpu_per_1000 / raw.cpu_per_1000
    cpu_ok = cpu_ratio <= TARGET_CPU_RATIO
    console.print(f"CPU per 1,000 messages: pushsvc worker {ours.cpu_per_1000:.2f} s, raw sender "
                  f"{raw.cpu_per_1000:.2f} s, ratio {cpu_ratio:.2f} (target <= {TARGET_CPU_RATIO}): "
                  f"{'met' if cpu_ok else 'missed'}{'' if check_cpu else ' (not judged: --no-check-cpu)'}")
    ok = ok and (cpu_ok or not check_cpu)
    if "naive" in runs:
        console.print(f"pushsvc / naive = {ours.rate / runs['naive'].rate:.1f}x")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_email", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000, help="matched subscribers (default 100,000)")
    parser.add_argument("--naive-recipients", type=int, default=3000, help="recipients of the naive run (0: skip)")
    parser.add_argument("--connections", type=int, default=None, help="SMTP connections (default PUSHSVC_SMTP_CONNECTIONS)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"flushed first (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--check-cpu", action=argparse.BooleanOptionalAction, default=True,
                        help=f"exit 1 when pushsvc's CPU per message is over {TARGET_CPU_RATIO}x the raw sender's "
                             "(default; --no-check-cpu prints it only)")
    parser.add_argument("--naive-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_worker:
        naive_worker()
        return 0
    console = Console(width=None if sys.stdout.isatty() else 130)
    workdir = Path(tempfile.mkdtemp(prefix="pushsvc-bench-"))
    try:
        runs = asyncio.run(bench(args, workdir, console))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note = ("senders pinned to CPU 0, sink to CPU 1" if pinning() else "no CPU pinning (one CPU)")
    return 0 if print_runs(console, runs, note, args.check_cpu) else 1


if __name__ == "__main__":
    sys.exit(main())
