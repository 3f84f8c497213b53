"""`pushsvc demo`: the whole service in one terminal, on data of its own.

It starts a local SMTP sink (with a page to read the mail), the SMS gateway and WeChat stand-ins
(receipts posted back to the demo's API), the API and a real worker process; seeds sample
subscribers on e-mail, SMS and WeChat through the import API, publishes a sample policy to all
three channels through the API and shows its delivery live, then what each stand-in received.
It never touches the configured database or Redis database: it uses a fresh `var/demo.db`
(relative to the working directory) and its own Redis database number (PUSHSVC_DEMO_REDIS_DB,
default 14, on the configured Redis server), both emptied on every run. The channels' secrets are
made up for each run (the stand-ins are the demo's own) and quiet hours are off, so that the
demo sends at any hour.

SMS goes to the generic gateway's stand-in, or (`--sms`, or PUSHSVC_DEMO_SMS) to the Aliyun or
Tencent Cloud stand-in, speaking their real protocols, or to both with failover: then the Aliyun
stand-in is told to fail after its first requests and Tencent Cloud takes over. The summary shows
per provider the messages it took, the receipts (delivered) and the failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import redis
from aiohttp import web
from dotenv import dotenv_values
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pushsvc.app import build_app
from pushsvc.channels.sms import OK as SMS_OK
from pushsvc.channels.sms.providers.base import callback_path
from pushsvc.channels.sms.providers.failover import parse_routes
from pushsvc.core.catalogue import load_catalogue
from pushsvc.core.clock import now
from pushsvc.core.figures import duration
from pushsvc.core.quiet_hours import local_date
from pushsvc.dev.demo_data import SampleFactory, SampleSubscriber, csv_text, demo_policy
from pushsvc.dev.demo_staff import SampleStaff, make_sample_staff
from pushsvc.dev.stubs.sms import STUBS
from pushsvc.dev.stubs.sms.cloud import CloudFaults, CloudSmsStub
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink, sink_web_app
from pushsvc.dev.stubs.wechat import WEBHOOK_PATH, WechatStub
from pushsvc.services import open_services
from pushsvc.settings import Settings, load_settings

HOST = "127.0.0.1"
API_PORT = 8080
SINK_WEB_PORT = 8025
DEFAULT_REDIS_DB = 14
SUBSCRIBERS = 2000
DEPARTMENT = {"name": "广州市人力资源和社会保障局", "domains": ["employment-entrepreneurship", "social-insurance"]}
CHANNELS = ("email", "sms", "wechat")
FINAL = ("sent", "delivered", "failed")  # "sent" is final: an SMS receipt may never come
DELIVERED = ("sent", "delivered")
RECEIPT_CHANNELS = ("sms",)  # whose `sent` turn `delivered` when the gateway's receipt comes back
SMS_RECEIPT_DELAY = 1.0  # seconds the SMS stand-in waits before posting a receipt
RECEIPT_WAIT_SECONDS = 5.0  # how long past the fan-out the demo waits for the last receipts
POLL_SECONDS = 0.25
ONCE_TIMEOUT_SECONDS = 120.0
NO_QUIET_HOURS = "00:00-00:00"
# Where the demo's SMS goes (`pushsvc demo --sms`): the stand-ins, as PUSHSVC_SMS_PROVIDERS lists
# them. Both: Aliyun takes every batch first and Tencent Cloud stands by (weight 0), so that the
# failover shows however few batches the sample policy makes.
SMS_SETUPS = {"generic": "generic", "aliyun": "aliyun", "tencent": "tencent", "both": "aliyun:1,tencent:0"}
# With both: the first takes this many requests, then answers every one with a server error.
FAIL_AFTER_REQUESTS = 1
CLOUD_URL_SETTINGS = {"aliyun": "PUSHSVC_SMS_ALIYUN_URL", "tencent": "PUSHSVC_SMS_TENCENT_URL"}
PROVIDER_NAMES = {"generic": "SMS gateway", "aliyun": "Aliyun", "tencent": "Tencent Cloud"}
# Generated for this run when neither the environment nor .env has them, so the demo always starts.
SECRETS = {"PUSHSVC_ADMIN_TOKEN": 24, "PUSHSVC_SECRET_KEY": 48}


@dataclass(frozen=True)
class DemoPaths:
    var: Path

    @property
    def database(self) -> Path:
        return self.var / "demo.db"

    @property
    def maildir(self) -> Path:
        return self.var / "demo-mail"

    @property
    def worker_log(self) -> Path:
        return self.var / "demo-worker.log"

    def received(self, channel: str) -> Path:
        """What a stand-in received, saved as its /_stub/messages JSON: readable after the demo ends."""
        return self.var / f"demo-{channel}.json"

    def reset(self) -> None:
        """A clean slate: last run's database, mail and stand-in records are gone."""
        self.var.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.maildir, ignore_errors=True)
        for channel in (*CHANNELS, *(f"sms-{name}" for name in STUBS)):
            self.received(channel).unlink(missing_ok=True)


def ensure_secrets(env_file: Path = Path(".env")) -> list[str]:
    """Set ephemeral secrets in os.environ for those missing from it and from .env; returns their names."""
    from_file = dotenv_values(env_file) if env_file.is_file() else {}
    missing = [name for name in SECRETS if not os.environ.get(name) and not from_file.get(name)]
    for name in missing:
        os.environ[name] = secrets.token_urlsafe(SECRETS[name])
    return missing


def demo_redis_url(configured: str, db: int) -> str:
    """The configured Redis server, with the demo's own database number."""
    parts = urlsplit(configured)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query)) | {"db": str(db)}
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"  # geturl() would drop the "//"
    return parts._replace(path=f"/{db}").geturl()


def stand_in_secrets() -> dict[str, str]:
    """Credentials shared by the service and the demo's own stand-ins, new for every run."""
    return {
        "PUSHSVC_SMS_SECRET": secrets.token_urlsafe(32),
        "PUSHSVC_SMS_CALLBACK_TOKEN": secrets.token_urlsafe(24),
        "PUSHSVC_SMS_ALIYUN_ACCESS_KEY_ID": "LTAI" + secrets.token_hex(10),
        "PUSHSVC_SMS_ALIYUN_ACCESS_KEY_SECRET": secrets.token_urlsafe(24),
        "PUSHSVC_SMS_ALIYUN_TEMPLATE_CODE": f"SMS_{secrets.randbelow(10**9):09d}",
        "PUSHSVC_SMS_TENCENT_SECRET_ID": "AKID" + secrets.token_hex(16),
        "PUSHSVC_SMS_TENCENT_SECRET_KEY": secrets.token_urlsafe(24),
        "PUSHSVC_SMS_TENCENT_SDK_APP_ID": f"14{secrets.randbelow(10**8):08d}",
        "PUSHSVC_SMS_TENCENT_TEMPLATE_ID": str(1_000_000 + secrets.randbelow(9_000_000)),
        "PUSHSVC_WECHAT_APPID": "wx" + secrets.token_hex(8),
        "PUSHSVC_WECHAT_SECRET": secrets.token_hex(16),
        "PUSHSVC_WECHAT_TEMPLATE_ID": "demo-" + secrets.token_urlsafe(12),
    }


def listening_socket(preferred: int) -> socket.socket:
    """Bound to `preferred` if it is free, else to any free port; handed to the server as is, so
    no other process can take the port between choosing and serving."""
    for port in (preferred, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise OSError("no free port")


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def run_demo(once: bool, sms: str = "generic") -> int:
    console = Console()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migration's chatter is not the demo
    from pushsvc.store.migrate import upgrade  # after the line above: alembic logs as it is imported

    generated = ensure_secrets()
    paths = DemoPaths(Path("var").resolve())
    paths.reset()
    sink = SmtpSink(HOST, 0, paths.maildir)
    sink.start()
    api_sock, web_sock = listening_socket(API_PORT), listening_socket(SINK_WEB_PORT)
    try:
        configured = load_settings().redis_url  # environment or .env: the demo uses the same server
        os.environ.update({
            "PUSHSVC_DATABASE_URL": f"sqlite+aiosqlite:///{paths.database}",
            "PUSHSVC_REDIS_URL": demo_redis_url(configured, int(os.environ.get("PUSHSVC_DEMO_REDIS_DB", DEFAULT_REDIS_DB))),
            "PUSHSVC_PUBLIC_URL": f"http://{HOST}:{port_of(api_sock)}",
            "PUSHSVC_SMTP_HOST": HOST,
            "PUSHSVC_SMTP_PORT": str(sink.port),
            "PUSHSVC_SMTP_STARTTLS": "false",
            "PUSHSVC_SMTP_TLS": "false",
            "PUSHSVC_QUIET_HOURS": NO_QUIET_HOURS,
            "PUSHSVC_SMS_PROVIDERS": SMS_SETUPS[sms],
            **stand_in_secrets(),
        })  # fmt: skip
        settings = load_settings()
        if generated:
            console.print(f"[dim]no {' or '.join(generated)} configured: using ephemeral ones for this run[/]")
        console.print(f"[dim]quiet hours off for the demo (PUSHSVC_QUIET_HOURS={NO_QUIET_HOURS}): "
                      "SMS and WeChat go out at any hour[/]")
        try:
            redis.Redis.from_url(settings.redis_url).flushdb()
        except redis.exceptions.ConnectionError as exc:
            console.print(f"[red]Redis is not reachable at {settings.redis_url}: {exc}[/] (scripts/demo starts one)")
            return 1
        upgrade(settings.database_url)
        demo = Demo(settings, console, paths, sink, once, tuple(name for name, _ in parse_routes(SMS_SETUPS[sms])))
        return asyncio.run(demo.run(api_sock, web_sock))
    finally:
        api_sock.close()
        web_sock.close()
        sink.stop()


class Demo:
    def __init__(self, settings: Settings, console: Console, paths: DemoPaths, sink: SmtpSink, once: bool,
                 sms_setup: tuple[str, ...] = ("generic",)) -> None:
        self.settings = settings
        self.sms_setup = sms_setup
        self.console = console
        self.paths = paths
        self.sink = sink
        self.once = once
        self.stop = asyncio.Event()
        self.staff: list[SampleStaff] = []

    async def run(self, api_sock: socket.socket, web_sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        async with AsyncExitStack() as later:  # undone in reverse order: the worker first
            stand_ins = StandIns(self.settings, self.sms_setup)
            later.push_async_callback(stand_ins.stop)  # should anything below fail
            os.environ.update(await stand_ins.start())
            self.settings = load_settings()  # now with the stand-ins' addresses, for the API and the worker
            svc = await open_services(self.settings)
            later.push_async_callback(svc.close)
            for app, sock in ((build_app(self.settings, svc), api_sock), (sink_web_app(self.sink), web_sock)):
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                later.push_async_callback(runner.cleanup)
                await web.SockSite(runner, sock).start()
            sms = ", ".join(f"{PROVIDER_NAMES[name]} {url}" for name, url in stand_ins.sms_urls().items())
            self.console.print(f"[dim]stand-ins: SMTP sink {HOST}:{self.sink.port}, SMS {sms}, WeChat {stand_ins.wechat_url}[/]")
            if stand_ins.failing is not None:
                first, standby = (PROVIDER_NAMES[n] for n in stand_ins.sms_setup)
                self.console.print(f"[dim]SMS through {first}, {standby} standing by: {first} is told to fail once it "
                                   f"has taken {FAIL_AFTER_REQUESTS} request(s), to show the failover[/]")
            later.push_async_callback(stand_ins.stop)  # after the worker's, before the API's: see stop()
            worker = self.start_worker()
            later.push_async_callback(self.stop_worker, worker)
            http = await later.enter_async_context(aiohttp.ClientSession(self.settings.public_url))
            status = await self.show(DemoApi(http, self.settings.admin_token), stand_ins, port_of(web_sock))
        return status

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A real `pushsvc worker` process with the demo's settings, logging to var/demo-worker.log."""
        with self.paths.worker_log.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "pushsvc.cli", "worker"], env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
            )

    async def stop_worker(self, worker: subprocess.Popen[bytes]) -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(worker.wait, self.settings.job_timeout_seconds + 5)
        except subprocess.TimeoutExpired:
            worker.kill()

    async def show(self, api: DemoApi, stand_ins: StandIns, mail_port: int) -> int:
        with self.console.status(f"seeding {SUBSCRIBERS:,} sample subscribers through the import API ..."):
            department = await api.call("POST", "/v1/departments", api.admin, json=DEPARTMENT)
            key = department["api_key"]
            catalogue = load_catalogue(self.settings.audiences_dir)
            # Every organisation on WeChat gets a robot of its own, so no robot key nears its 20 a minute.
            factory = SampleFactory(catalogue, mixed_channels=True, robot_webhook=stand_ins.wechat_url + WEBHOOK_PATH)
            subs = [factory.make(i) for i in range(SUBSCRIBERS)]
            imported = await api.call("POST", "/v1/subscribers/import", key, data=csv_text(catalogue, subs).encode(),
                                      headers={"Content-Type": "text/csv"})
        self.console.print(f"department [bold]{DEPARTMENT['name']}[/] created; "
                           f"{imported['imported']:,} subscribers imported, {len(imported['rejected'])} rejected")
        self.staff = await make_sample_staff(self.settings.database_url, department["id"])
        self.console.print(f"  {contact_summary(subs)}")
        today = local_date(now())
        policy = await api.call("POST", "/v1/policies", key, json=demo_policy(today, CHANNELS),
                                headers={"Idempotency-Key": "demo"})
        self.console.print(f"published [bold]{policy['title']}[/] ({policy['doc_number']}) to {', '.join(CHANNELS)}")
        final = await self.watch(api, key, policy["id"])
        if final is None:
            self.console.print("[yellow]stopped before the fan-out finished[/]")
            return 1
        stand_ins.save(self.paths)
        sms = await api.call("GET", f"/v1/policies/{policy['id']}/render", key, params={"channel": "sms"})
        ok = self.print_outcome(final, key, stand_ins, mail_port, sms)
        self.print_providers((await api.call("GET", "/v1/reports/department", key))["sms_providers"], stand_ins)
        if self.once:
            return 0 if ok else 1
        self.console.print("\nserving until Ctrl-C ...")
        await self.stop.wait()
        self.console.print("stopping")
        return 0

    async def watch(self, api: DemoApi, key: str, policy_id: int) -> dict[str, Any] | None:
        """Progress bars per channel until every delivery is final and the SMS receipts are in, or
        RECEIPT_WAIT_SECONDS have passed since the rest was final; None if stopped or timed out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ONCE_TIMEOUT_SECONDS
        receipts_until: float | None = None
        columns = (TextColumn("{task.description:>8}"), BarColumn(), TextColumn("{task.fields[tally]}"),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=self.console) as progress:
            bars: dict[str, TaskID] = {}
            while not self.stop.is_set():
                policy = await api.call("GET", f"/v1/policies/{policy_id}", key)
                for channel, counts in policy["deliveries"].items():
                    if channel not in bars:
                        bars[channel] = progress.add_task(channel, total=None, tally="")
                    progress.update(bars[channel], total=max(sum(counts.values()), 1),
                                    completed=sum(counts[s] for s in FINAL), tally=tally(channel, counts))
                if is_finished(policy):
                    receipts_until = receipts_until or loop.time() + RECEIPT_WAIT_SECONDS
                    if not awaiting_receipts(policy) or loop.time() >= receipts_until:
                        return policy
                elif self.once and loop.time() > deadline:
                    return None
                try:
                    await asyncio.wait_for(self.stop.wait(), POLL_SECONDS)
                except TimeoutError:
                    pass
        return None

    def print_outcome(
        self, policy: dict[str, Any], key: str, stand_ins: StandIns, mail_port: int, sms: dict[str, Any]
    ) -> bool:
        """The outcome per channel, where to read what was sent, the policy's pages; True if all was sent."""
        def out(line: str) -> None:
            self.console.print(line, soft_wrap=True)  # URLs and curl lines stay whole for copying

        base, pid = self.settings.public_url, policy["id"]
        kinds = Counter(m["kind"] for m in stand_ins.wechat.messages)
        at_stand_in = {
            "email": f"{self.sink.count():,} mails",
            "sms": f"{stand_ins.sms_numbers():,} numbers in {stand_ins.sms_requests():,} requests",
            "wechat": f"{kinds['webhook']:,} robot + {kinds['template']:,} template messages",
        }
        table = Table("channel", "matched", "sent", "delivered", "failed", "received by the stand-in",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        ok = True
        for channel, counts in policy["deliveries"].items():
            sent = sum(counts[s] for s in DELIVERED)
            ok = ok and sent == sum(counts.values())
            delivered = f"{counts['delivered']:,}" if channel in RECEIPT_CHANNELS else "–"
            table.add_row(channel, f"{sum(counts.values()):,}", f"{sent:,}", delivered, f"{counts['failed']:,}",
                          at_stand_in.get(channel, ""))
        for column in table.columns[1:5]:
            column.justify = "right"
        out(f"\n[bold]outcome[/]: {policy['matched']:,} subscribers matched "
            f"(sent: taken by the provider; delivered: the SMS gateway's receipt came back)")
        self.console.print(table)
        out("[bold]read what was sent[/]")
        out(f"  email    http://{HOST}:{mail_port}/  and as .eml files in {self.paths.maildir}/")
        for name, url in stand_ins.sms_urls().items():
            out(f"  sms      {url}/_stub/messages  (saved to {self.paths.received(stand_ins.record_name(name))})")
        out(f"  wechat   {stand_ins.wechat_url}/_stub/messages  (saved to {self.paths.received('wechat')})")
        out(f"  the SMS  {sms['text']}  [dim]({sms['chars']} characters, {sms['parts']} parts)[/]")
        out("\n[bold]the policy[/]")
        out(f"  page           {base}/p/{pid}")
        out(f"  QR code        {base}/p/{pid}/qr.png")
        out(f"  poster         {base}/p/{pid}/poster")
        for channel in policy["channels"]:
            out(f"  render {channel:<7} curl -H 'Authorization: Bearer {key}' '{base}/v1/policies/{pid}/render?channel={channel}'")
        out("\n[bold]open[/]")
        out(f"  OpenAPI  {base}/openapi.json")
        out(f"  the API  curl -H 'Authorization: Bearer {key}' {base}/v1/policies/{pid}")
        out(f"  department key (shown once): {key}")
        out(f"  worker log  {self.paths.worker_log}")
        out(f"\n[bold]the console[/]  {base}/console  (sign in as one of these; passwords shown once)")
        for person in self.staff:
            out(f"  {person.role:<17} {person.username:<14} {person.password}")
        if self.once:
            out("[dim]the pages above are served while the demo runs: run it without --once to keep them up[/]")
        return ok

    def print_providers(self, figures: list[dict[str, Any]], stand_ins: StandIns) -> None:
        """Per SMS provider, from the department report: what it took, its receipts and failures;
        and the requests its stand-in refused (the failover's cause)."""
        table = Table("SMS provider", "took", "delivered", "failed", "median sent → delivered", "requests refused",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for f in figures:
            refused = stand_ins.refused_requests(f["provider"])
            table.add_row(PROVIDER_NAMES.get(f["provider"], f["provider"]), f"{f['messages']:,}", f"{f['delivered']:,}",
                          f"{f['failed']:,}", duration(f["delivery_time"]["median_seconds"]),
                          "–" if refused is None else f"{refused:,}")
        for column in table.columns[1:]:
            column.justify = "right"
        self.console.print("\n[bold]SMS per provider[/] (the department report's figures)")
        self.console.print(table)
        if stand_ins.failing is not None:
            self.console.print(f"failover: {PROVIDER_NAMES[stand_ins.failing]} refused "
                               f"{stand_ins.refused_requests(stand_ins.failing):,} requests once told to fail; "
                               "their numbers went to the next provider", soft_wrap=True)


class StandIns:
    """The SMS and WeChat stand-ins, served in the demo's event loop on free ports. SMS: the generic
    gateway's, or the clouds' of `sms_setup` (SMS_SETUPS); with two, the first is told to fail
    after FAIL_AFTER_REQUESTS requests (`failing`)."""

    def __init__(self, settings: Settings, sms_setup: tuple[str, ...] = ("generic",)) -> None:
        self.sms_setup = sms_setup
        self.gateway: SmsGatewayStub | None = None
        self.clouds: dict[str, CloudSmsStub] = {}
        if sms_setup == ("generic",):
            self.gateway = SmsGatewayStub(settings.sms_secret, settings.sms_template_code,
                                          f"{settings.public_url}/v1/receipts/sms", SMS_RECEIPT_DELAY)
        for name in (n for n in sms_setup if n in STUBS):
            token, s = settings.sms_callback_token, settings
            key_id, secret, template = ((s.sms_aliyun_access_key_id, s.sms_aliyun_access_key_secret,
                                         s.sms_aliyun_template_code) if name == "aliyun" else
                                        (s.sms_tencent_secret_id, s.sms_tencent_secret_key, s.sms_tencent_template_id))
            self.clouds[name] = STUBS[name](key_id, secret, s.public_url + callback_path(name, token, "report"),
                                            s.public_url + callback_path(name, token, "reply"), SMS_RECEIPT_DELAY,
                                            template)
        self.failing = sms_setup[0] if len(sms_setup) > 1 else None
        self.wechat = WechatStub.from_settings(settings)
        self.wechat_url = ""
        self._stopped = False

    async def start(self) -> dict[str, str]:
        """Serve them all; returns the settings that point the service at them."""
        urls = {"PUSHSVC_WECHAT_API_URL": await self.wechat.start(HOST, 0)}
        self.wechat_url = urls["PUSHSVC_WECHAT_API_URL"]
        if self.gateway is not None:
            urls["PUSHSVC_SMS_URL"] = await self.gateway.start(HOST, 0)
        for name, stub in self.clouds.items():
            urls[CLOUD_URL_SETTINGS[name]] = await stub.start(HOST, 0)
        if self.failing is not None:
            self.clouds[self.failing].faults = CloudFaults(fail_after=FAIL_AFTER_REQUESTS)
        # The only origin robot webhooks may use: the demo never calls out.
        return urls | {"PUSHSVC_WECHAT_WEBHOOK_ORIGINS": self.wechat_url}

    async def stop(self) -> None:
        """Once only: the demo stops them after the worker, before the API goes (so no receipt is
        posted to nobody), and again on any way out."""
        if not self._stopped:
            self._stopped = True
            for stub in [self.gateway, *self.clouds.values(), self.wechat]:
                if stub is not None:
                    await stub.stop()

    def sms_urls(self) -> dict[str, str]:
        return {"generic": self.gateway.url} if self.gateway is not None else \
            {name: stub.url for name, stub in self.clouds.items()}

    def sms_numbers(self) -> int:
        """Numbers the SMS stand-ins accepted (one SMS each)."""
        if self.gateway is not None:
            return sum(r["code"] == SMS_OK for m in self.gateway.messages for r in m["results"])
        return sum(stub.stats["numbers"] for stub in self.clouds.values())

    def sms_requests(self) -> int:
        """Requests the SMS stand-ins accepted."""
        stubs = [self.gateway] if self.gateway is not None else list(self.clouds.values())
        return sum(len(stub.messages) for stub in stubs)

    def refused_requests(self, provider: str) -> int | None:
        """Requests a cloud's stand-in refused with an injected fault; None for the generic gateway."""
        stub = self.clouds.get(provider)
        return None if stub is None else stub.stats["refused_requests"]

    @staticmethod
    def record_name(provider: str) -> str:
        """Under which name a stand-in's record is saved (DemoPaths.received): sms, sms-aliyun, sms-tencent."""
        return "sms" if provider == "generic" else f"sms-{provider}"

    def save(self, paths: DemoPaths) -> None:
        """What each received, as its /_stub/messages answers, kept after the demo ends."""
        records: dict[str, list[dict[str, Any]]] = {"wechat": self.wechat.messages}
        if self.gateway is not None:
            records["sms"] = self.gateway.messages
        records |= {self.record_name(name): stub.messages for name, stub in self.clouds.items()}
        for name, messages in records.items():
            paths.received(name).write_text(json.dumps(messages, ensure_ascii=False, indent=1), encoding="utf-8")


def contact_summary(subs: list[SampleSubscriber]) -> str:
    on = Counter(channel for sub in subs for channel in sub.channels)
    robots, openids = sum(1 for s in subs if s.wechat_webhook), sum(1 for s in subs if s.wechat_openid)
    return (f"on e-mail {on['email']:,}, SMS {on['sms']:,} (mainland mobile numbers), WeChat {on['wechat']:,} "
            f"({robots:,} organisations' WeCom group robots, {openids:,} people's Official Account openids)")


def tally(channel: str, counts: dict[str, int]) -> str:
    sent = sum(counts[s] for s in DELIVERED)
    delivered = f", {counts['delivered']:,} delivered" if channel in RECEIPT_CHANNELS else ""
    return f"{sent:,} sent{delivered}, {counts['failed']:,} failed of {sum(counts.values()):,}"


def is_finished(policy: dict[str, Any]) -> bool:
    """Fan-out done and every delivery row sent, delivered or failed."""
    if policy["status"] != "published":
        return False
    return all(sum(c[s] for s in FINAL) == sum(c.values()) for c in policy["deliveries"].values())


def awaiting_receipts(policy: dict[str, Any]) -> bool:
    return any(policy["deliveries"].get(channel, {}).get("sent", 0) for channel in RECEIPT_CHANNELS)


class DemoApi:
    """The demo is a client of its own API, like any department's system."""

    def __init__(self, http: aiohttp.ClientSession, admin_token: str) -> None:
        self.http = http
        self.admin = admin_token

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        async with self.http.request(method, path, headers=headers, **kwargs) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {body}")
            return body
