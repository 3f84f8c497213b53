"""Shared fixtures: real databases (SQLite, and PostgreSQL when PUSHSVC_TEST_DATABASE_URL is set),
a real Redis, the API on a real loopback port, worker processes, and the local SMTP sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as redis_sync
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.app import build_app
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import REPO_ROOT, Settings
from pushsvc.store.migrate import upgrade
from pushsvc.store.schema import metadata

ADMIN = "test-admin-token-0123456789"
SECRET = "test-secret-key-0123456789-0123456789-abcdef"
REDIS_BASE = os.environ.get("PUSHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_URL = os.environ.get("PUSHSVC_TEST_DATABASE_URL")
ARTIFACTS = REPO_ROOT / "test-artifacts"

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> Iterator[str | None]:
    """A database of this test session's own (sessions may run side by side), migrated once; tests
    truncate its tables."""
    if not PG_URL:
        yield None
        return
    base, _, name = PG_URL.rpartition("/")
    own = f"{name}_{os.getpid()}"
    _pg_autocommit(PG_URL, f"DROP DATABASE IF EXISTS {own}", f"CREATE DATABASE {own}")
    url = f"{base}/{own}"
    upgrade(url)
    yield url
    _pg_autocommit(PG_URL, f"DROP DATABASE IF EXISTS {own} WITH (FORCE)")


def _pg_autocommit(url: str, *statements: str) -> None:
    async def run() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_migrated: str | None) -> str:
    if request.param == "sqlite":
        path = tmp_path / "pushsvc.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    assert pg_migrated is not None
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    _pg_autocommit(pg_migrated, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    return pg_migrated


@pytest.fixture(scope="session")
def redis_session_url() -> Iterator[str]:
    """A Redis database of this session's own (1-11; 12 is the demo test's), claimed with a lock in
    database 0, so that test sessions running side by side never take each other's jobs."""
    lock = redis_sync.Redis.from_url(f"{REDIS_BASE}/0")
    for db in range(1, 12):
        if lock.set(f"pushsvc-test-db:{db}", os.getpid(), nx=True, ex=4 * 3600):
            break
    else:
        raise RuntimeError("no free Redis database for this test session")
    yield f"{REDIS_BASE}/{db}"
    lock.delete(f"pushsvc-test-db:{db}")
    lock.close()


@pytest.fixture
def redis_url(redis_session_url: str) -> Iterator[str]:
    client = redis_sync.Redis.from_url(redis_session_url)
    client.flushdb()
    yield redis_session_url
    client.flushdb()
    client.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(maildir=None) as s:
        yield s


@pytest.fixture
def settings_env(database_url: str, redis_url: str, sink: SmtpSink) -> dict[str, str]:
    """The PUSHSVC_* environment every process of a test shares."""
    return {
        "PUSHSVC_DATABASE_URL": database_url,
        "PUSHSVC_REDIS_URL": redis_url,
        "PUSHSVC_ADMIN_TOKEN": ADMIN,
        "PUSHSVC_SECRET_KEY": SECRET,
        "PUSHSVC_PUBLIC_URL": "https://push.example.gov.cn",
        "PUSHSVC_SMTP_HOST": "127.0.0.1",
        "PUSHSVC_SMTP_PORT": str(sink.port),
        "PUSHSVC_SMTP_FROM": "广州市政策推送 <push@example.gov.cn>",
        "PUSHSVC_SMTP_CONNECTIONS": "4",
        "PUSHSVC_JOB_TIMEOUT_SECONDS": "10",
        "PUSHSVC_STALE_AFTER_SECONDS": "5",
        "PUSHSVC_SWEEP_EVERY_SECONDS": "5",
        "PUSHSVC_RETRY_BASE_SECONDS": "0.5",
        "PUSHSVC_RETRY_MAX_SECONDS": "2",
        # Scaled-down retries give up after PUSHSVC_MAX_ATTEMPTS alone, not after a day (test_breaker sets one).
        "PUSHSVC_RETRY_FOR_HOURS": "0",
        "PUSHSVC_FANOUT_BATCH_SIZE": "100",
    }


@pytest.fixture
def settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


class Api:
    """A client of the API on a real loopback port."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = await resp.json(content_type=None) if "json" in ctype else await resp.text()
            return resp.status, body

    async def department(self, name: str = "市人社局", domains: list[str] | None = None) -> dict[str, Any]:
        status, body = await self.call(
            "POST", "/v1/departments", ADMIN,
            json={"name": name, "domains": domains or ["employment-entrepreneurship", "tax-administration"]},
        )
        assert status == 201, body
        return body


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    """The application on a loopback port, as one API process; several share the database and Redis."""
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Api(session, str(server.make_url("")).rstrip("/"))
    await server.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serving(settings) as client:
        yield client


class Workers:
    """`pushsvc worker` processes, started and stopped like an operator would."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"worker-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushsvc.cli", "worker"],
            env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(settings_env, tmp_path)
    yield w
    w.stop_all()


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll an async or sync check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


CHROMIUM = os.environ.get("PUSHSVC_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ARTIFACTS / "screenshots"
# Flags for a closed network: no background calls home, no GPU, a fresh profile per launch.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium driven by Playwright; one process for the session, a context per test."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run scripts/test (it installs it) or apt-get install chromium")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def screenshot_path(name: str) -> Path:
    """Where a browser test saves a page's screenshot: test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
