"""Operating pushsvc: the CLI, settings and catalogue checks at start-up, readiness, and workers
that are stopped, killed or lose their Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import redis as redis_sync
from aiohttp.test_utils import TestServer

from pushsvc.app import build_app
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import REPO_ROOT, Settings
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, csv_rows, seed


def cli(env: dict[str, str], *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushsvc.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_explains_each_command() -> None:
    out = cli({}, "--help").stdout
    for command in ("serve", "worker", "db", "departments", "subscribers", "demo", "stub"):
        assert command in out
    assert "CSV" in cli({}, "subscribers", "import", "--help").stdout


def test_missing_or_bad_settings_are_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")}
    result = subprocess.run([sys.executable, "-m", "pushsvc.cli", "serve"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PUSHSVC_ADMIN_TOKEN" in result.stderr and "PUSHSVC_SECRET_KEY" in result.stderr
    env.update(PUSHSVC_ADMIN_TOKEN=ADMIN, PUSHSVC_SECRET_KEY="k" * 40, PUSHSVC_REDIS_URL="http://nope")
    result = subprocess.run([sys.executable, "-m", "pushsvc.cli", "worker"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "PUSHSVC_REDIS_URL" in result.stderr


def test_broken_catalogue_stops_startup_with_file_and_line(tmp_path: Path, settings_env: dict[str, str]) -> None:
    broken = tmp_path / "audiences"
    shutil.copytree(REPO_ROOT / "audiences", broken)
    path = broken / "groups" / "taxpayer.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("type: enum", "type: colour", 1), encoding="utf-8")
    result = cli({**settings_env, "PUSHSVC_AUDIENCES_DIR": str(broken)}, "serve", "--port", "0")
    assert result.returncode != 0
    assert "taxpayer.yaml:" in result.stderr


def test_cli_creates_departments_and_imports(settings_env: dict[str, str], tmp_path: Path) -> None:
    result = cli(settings_env, "departments", "create", "--name", "市税务局", "--domains", "tax-administration")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("psk_")
    bad = cli(settings_env, "departments", "create", "--name", "x", "--domains", "astrology")
    assert bad.returncode == 2 and "astrology" in bad.stderr

    data = csv_rows(50).decode().splitlines()
    data.append("坏行,bad@,*,email,XYZ,haizhu,C,small")
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text("\n".join(data), encoding="utf-8")
    result = cli(settings_env, "subscribers", "import", str(csv_file))
    assert "imported 50, merged 0, rejected 1" in result.stdout
    assert "row 52: email" in result.stdout
    assert result.returncode == 1  # some rows were rejected


async def test_readyz_is_503_when_redis_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    server = TestServer(build_app(down), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/readyz")) as resp:
            body = await resp.json()
            assert resp.status == 503 and body["checks"]["database"] == "ok"
            assert body["checks"]["redis"].startswith("unavailable")
    await server.close()


async def test_sigterm_lets_sends_finish_and_leaves_nothing_sending(api: Api, workers: Workers, sink: SmtpSink) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 1500)
    worker = workers.start()
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    await eventually(lambda: sink.count() >= 200, interval=0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    status, body = await api.call("GET", f"/v1/policies/{policy['id']}", key)
    assert body["deliveries"]["email"]["sending"] == 0
    workers.start()
    final = await eventually(lambda: _done(api, key, policy["id"], 1500), timeout=90)
    assert final["sent"] == 1500
    received = [r for m in sink.messages() for r in m.rcpt_tos]
    assert len(received) == len(set(received)) == 1500  # a clean stop sends nobody anything twice


async def test_redis_losing_every_job_loses_no_delivery(
    api: Api, workers: Workers, sink: SmtpSink, redis_url: str
) -> None:
    dept = await api.department()
    key = dept["api_key"]
    await seed(api, key, 300)
    sink.set_faults(temp_fail_for=2.0)  # keep work queued while Redis forgets it
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    worker = workers.start()
    await eventually(lambda: _has_deliveries(api, key, policy["id"]))
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    redis_sync.Redis.from_url(redis_url).flushdb()  # what a Redis restart without persistence does
    workers.start()
    final = await eventually(lambda: _done(api, key, policy["id"], 300), timeout=90)
    assert final["sent"] == 300


async def _has_deliveries(api: Api, key: str, policy_id: int) -> bool:
    status, body = await api.call("GET", f"/v1/policies/{policy_id}", key)
    return sum(body["deliveries"]["email"].values()) > 0


def test_access_log_masks_tokens() -> None:
    from pushsvc.http.access_log import masked_path

    assert masked_path("/u/eyJhIjoxfQ.c2ln") == "/u/***"
    assert masked_path("/p/12") == "/p/12"
