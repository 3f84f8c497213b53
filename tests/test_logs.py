"""Logs: one JSON object a line, contacts masked in every line, and a request's id carried into
the jobs it starts, checked in the logs of a real `pushsvc serve` and a real worker process."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.logs import JsonFormatter, TextFormatter, accepted_request_id, log_context, mask_contacts
from pushsvc.settings import REPO_ROOT
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_fanout_email import _done, csv_rows, seed

PHONE_FORMS = ["+8613800138000", "+86 138 0013 8000", "13800138000", "138-0013-8000", "008613800138000"]


def record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("pushsvc.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_every_form_of_a_contact_is_masked_and_ids_are_left_alone() -> None:
    for phone in PHONE_FORMS:
        masked = mask_contacts(f"to {phone}.")
        assert "0013" not in masked.replace(" ", "").replace("-", "") and "****8000" in masked, masked
    assert mask_contacts("a.user+x@example.gov.cn, 李@例子.中国") == "a***@example.gov.cn, 李***@例子.中国"
    assert mask_contacts("GET /manage?email=bob@example.com&x=1") == "GET /manage?email=b***@example.com&x=1"
    untouched = "policy 12 job deliver:12:email:1001-2000 at 1700000000000 (ms) took 0.25 s, ref 913800138000123"
    assert mask_contacts(untouched) == untouched
    # Eleven digits that look like a mobile number are masked whatever they are: better too much.
    assert mask_contacts("id 13800000001") == "id 138****0001"


def test_json_lines_carry_ids_and_mask_message_and_traceback() -> None:
    try:
        raise ValueError("bad address alice@example.com")
    except ValueError as exc:
        failure = exc
    with log_context(request_id="req-1", job_id="fanout:3:0"):
        line = JsonFormatter().format(record("sending to %s and %s", "bob@example.com", "+8613800138000", exc=failure))
    assert "\n" not in line
    data = json.loads(line)
    assert data["request_id"] == "req-1" and data["job_id"] == "fanout:3:0"
    assert data["level"] == "WARNING" and data["logger"] == "pushsvc.test" and data["time"].endswith("+00:00")
    assert data["message"] == "sending to b***@example.com and +86138****8000"
    assert "a***@example.com" in data["exception"] and "alice@" not in line and "13800138000" not in line

    outside = json.loads(JsonFormatter().format(record("nothing running")))
    assert outside["request_id"] is None and "job_id" not in outside
    text = TextFormatter().format(record("call 13800138000"))
    assert text.endswith("pushsvc.test: call 138****8000")


def test_only_plain_request_ids_are_taken_from_the_caller() -> None:
    assert accepted_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "x" * 65, "with space", "new\nline", "ünïcode"):
        generated = accepted_request_id(bad)
        assert len(generated) == 32 and generated != bad


# -- end to end: a served API and a worker, as an operator runs them --------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(settings_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`pushsvc serve` with its own logging (JSON by default), its output in a file."""
    port, log_path = free_port(), tmp_path / "api.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pushsvc.cli", "serve", "--port", str(port)],
                                env={**os.environ, **settings_env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    yield f"http://127.0.0.1:{port}", log_path
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
async def served_api(served: tuple[str, Path]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        api = Api(session, served[0])

        async def up() -> bool:
            try:
                return (await api.call("GET", "/healthz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, timeout=30)
        yield api


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


async def test_request_id_reaches_the_jobs_and_no_contact_is_logged(
    served: tuple[str, Path], served_api: Api, workers: Workers, sink: SmtpSink
) -> None:
    api = served_api
    key = (await api.department())["api_key"]
    await seed(api, key, 12)
    sink.set_faults(reject=["user3@example.com"])  # a failure, whose reply names the address
    workers.start()
    # Contacts in a path: the access log writes the path, so they must come out masked.
    status, _ = await api.call("GET", "/v1/subscribers/user5@example.com/13800138000", key)
    assert status == 404
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY, headers={"X-Request-Id": "req-7f3a"})
    assert status == 202, policy
    await eventually(lambda: _done(api, key, policy["id"], 12))

    api_lines = json_lines(served[1])
    worker_lines = json_lines(workers.logdir / "worker-0.log")
    assert api_lines and worker_lines
    for line in api_lines + worker_lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
    [publish] = [x for x in api_lines if '"POST /v1/policies"' in x["message"]]
    assert publish["request_id"] == "req-7f3a" and " 202 " in publish["message"]
    traced = [x for x in worker_lines if x["request_id"] == "req-7f3a"]
    assert any(x["job_id"] == f"fanout:{policy['id']}:0" and "fan-out run" in x["message"] for x in traced)
    assert any(x["job_id"].startswith(f"deliver:{policy['id']}:email:") and "1 failed" in x["message"] for x in traced)
    [lookup] = [x for x in api_lines if "GET /v1/subscribers/" in x["message"]]
    assert '"GET /v1/subscribers/u***@example.com/138****8000" 404' in lookup["message"]

    everything = served[1].read_text(encoding="utf-8") + (workers.logdir / "worker-0.log").read_text(encoding="utf-8")
    raw_contacts = [line.split(",")[1] for line in csv_rows(12).decode().splitlines()[1:]] + ["13800138000"]
    assert not [c for c in raw_contacts if c in everything]
