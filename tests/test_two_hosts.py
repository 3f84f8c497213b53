"""More than one machine (issue 19, item 7): two API processes and two workers, each started from a
working directory of its own (as on separate hosts: no checkout, no .env there, the settings in the
environment), against one PostgreSQL and one Redis. A policy published through one API is fanned
out and sent by both workers, every recipient once, and the other API reads the same progress. A
data folder given as a relative path is taken from the working directory, checked at start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import REPO_ROOT, Settings
from tests.conftest import ADMIN, PG_URL, SECRET, Api, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import seed

RECIPIENTS = 300
BATCH = 20
PUSHSVC = str(Path(sys.executable).with_name("pushsvc"))  # the installed command, as an operator runs it


class Host:
    """One machine's processes: started from its own folder, with only the shared settings."""

    def __init__(self, name: str, root: Path, env: dict[str, str]) -> None:
        self.name = name
        self.cwd = root / name
        self.cwd.mkdir()
        # What a fresh host has: the system's environment without this checkout's PUSHSVC_ variables.
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")}, **env}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, role: str) -> Path:
        return self.cwd.parent / f"{self.name}-{role}.log"

    def start(self, role: str, *args: str) -> None:
        with self.log(role).open("wb") as out:
            self.procs[role] = subprocess.Popen([PUSHSVC, *args], cwd=self.cwd, env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT)

    def log_text(self, role: str) -> str:
        return self.log(role).read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hosts(settings_env: dict[str, str], tmp_path: Path) -> Iterator[list[Host]]:
    # Small batches and two job slots a worker, so that the fan-out's deliver jobs are spread.
    env = {**settings_env, "PUSHSVC_FANOUT_BATCH_SIZE": str(BATCH), "PUSHSVC_WORKER_MAX_JOBS": "2"}
    made = [Host(name, tmp_path, env) for name in ("host-a", "host-b")]
    yield made
    for host in made:
        host.stop()


def delivered_by(log: str) -> int:
    """How many deliver jobs a worker's (JSON) log says it ran to the end."""
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return sum(1 for line in lines if "←" in line.get("message", "") and ":deliver" in line["message"])


@pytest.mark.skipif(not PG_URL, reason="several hosts share PostgreSQL: set PUSHSVC_TEST_DATABASE_URL")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_hosts_share_a_fanout(hosts: list[Host], sink: SmtpSink) -> None:
    ports = [free_port() for _ in hosts]
    for host, port in zip(hosts, ports):
        assert not (host.cwd / ".env").exists() and not any(host.cwd.iterdir())
        host.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
        host.start("worker", "worker")
    sink.set_delay(0.02)  # a relay that takes its time: both workers' jobs are in flight together

    async with aiohttp.ClientSession() as session:
        api_a, api_b = (Api(session, f"http://127.0.0.1:{port}") for port in ports)

        async def ready(api: Api) -> bool:
            try:
                return (await api.call("GET", "/readyz"))[0] == 200
            except aiohttp.ClientConnectionError:
                return False

        for api in (api_a, api_b):
            await eventually(lambda: ready(api), timeout=60)
        for host in hosts:
            # The worker and its urgent lane.
            await eventually(lambda: host.log_text("worker").count("Starting worker") >= 2, timeout=60)

        dept = await api_a.department()
        key = dept["api_key"]
        await seed(api_a, key, RECIPIENTS)
        status, policy = await api_a.call("POST", "/v1/policies", key, json=POLICY)
        assert status == 202, policy

        async def done_on_b() -> dict[str, int] | None:
            status, body = await api_b.call("GET", f"/v1/policies/{policy['id']}", key)
            assert status == 200, body
            counts = body["deliveries"]["email"]
            return counts if body["status"] == "published" and counts["sent"] == RECIPIENTS else None

        counts_b = await eventually(done_on_b, timeout=90)
        assert counts_b["failed"] == counts_b["queued"] == 0
        status, body_a = await api_a.call("GET", f"/v1/policies/{policy['id']}", key)
        assert status == 200 and body_a["deliveries"]["email"] == counts_b

    # Every recipient once, and each worker sent its share.
    recipients = [r for m in sink.messages() for r in m.rcpt_tos]
    assert len(recipients) == RECIPIENTS and len(set(recipients)) == RECIPIENTS
    shares = {host.name: delivered_by(host.log_text("worker")) for host in hosts}
    assert all(shares.values()) and sum(shares.values()) >= RECIPIENTS // BATCH, shares
    for host in hosts:  # nothing either process needed came from its working directory
        assert not any(host.cwd.iterdir()), list(host.cwd.iterdir())
        for role in ("api", "worker"):
            assert "Traceback" not in host.log_text(role), host.log_text(role)[-3000:]


def test_a_relative_data_folder_is_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Started from a folder without templates/: the process stops at once, naming the setting and
    # the folder it looked in, rather than starting and failing every message it renders.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")},
           "PUSHSVC_ADMIN_TOKEN": ADMIN, "PUSHSVC_SECRET_KEY": SECRET, "PUSHSVC_TEMPLATES_DIR": "templates"}
    result = subprocess.run([PUSHSVC, "worker"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PUSHSVC_TEMPLATES_DIR" in result.stderr and str(tmp_path / "templates") in result.stderr, result.stderr

    # Where the folder is, the setting holds its absolute path, whatever the process does later.
    shutil.copytree(REPO_ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, admin_token=ADMIN, secret_key=SECRET, templates_dir="templates")  # type: ignore[call-arg]
    assert settings.templates_dir == tmp_path / "templates"
