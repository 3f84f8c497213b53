"""The local SMTP sink: what it keeps, the faults it injects, and its web view."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushsvc.dev.stubs.smtp_sink import SmtpSink, serve_sink, sink_web_app


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(maildir=tmp_path / "mail") as s:
        yield s


def raw_message(subject: str, to: str = "a@example.com", html_body: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "pushsvc@example.gov.cn"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("政策全文见链接。\n<b>not bold</b>\n")
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


async def send(sink: SmtpSink, recipients: list[str], data: bytes) -> dict[str, aiosmtplib.SMTPResponse]:
    errors, _ = await aiosmtplib.send(
        data, sender="pushsvc@example.gov.cn", recipients=recipients, hostname=sink.host, port=sink.port
    )
    return errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_keeps_the_bytes_it_was_sent_and_writes_maildir(sink: SmtpSink) -> None:
    assert sink.port != 0
    data = raw_message("关于支持中小微企业稳岗扩岗的若干措施")
    assert await send(sink, ["a@example.com", "b@example.com"], data) == {}

    assert sink.wait_for(1, timeout=2)
    assert sink.count() == 1
    [m] = sink.messages()
    assert (m.n, m.mail_from, m.rcpt_tos, m.data) == (
        1,
        "pushsvc@example.gov.cn",
        ("a@example.com", "b@example.com"),
        data,
    )
    assert m.received_at.tzinfo is not None
    assert sink.maildir is not None and (sink.maildir / "1.eml").read_bytes() == data

    assert not sink.wait_for(2, timeout=0.05)
    sink.clear()
    assert sink.count() == 0 and sink.messages() == []
    await send(sink, ["a@example.com"], data)
    assert [m.n for m in sink.messages()] == [2]  # numbering goes on: maildir files are not overwritten


async def test_without_maildir_writes_nothing(tmp_path: Path) -> None:
    with SmtpSink() as s:
        await send(s, ["a@example.com"], raw_message("x"))
        assert s.count() == 1 and s.maildir is None
    assert list(tmp_path.iterdir()) == []


async def test_temporary_failure_window_then_recovery(sink: SmtpSink) -> None:
    sink.set_faults(temp_fail_for=0.4)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(sink, ["a@example.com"], raw_message("x"))
    [err] = refused.value.recipients
    assert (err.code, err.message) == (451, "4.3.0 try again later")
    await asyncio.sleep(0.45)
    assert await send(sink, ["a@example.com"], raw_message("x")) == {}
    assert sink.stats() == {"messages": 1, "rcpt_temp_failed": 1, "rcpt_rejected": 0}


async def test_rejects_listed_addresses_and_keeps_the_rest(sink: SmtpSink) -> None:
    sink.set_faults(reject={"Gone@Example.com"})
    errors = await send(sink, ["ok@example.com", "gone@example.com"], raw_message("x"))
    assert {a: (r.code, r.message) for a, r in errors.items()} == {
        "gone@example.com": (550, "5.1.1 <gone@example.com>: mailbox unavailable")
    }
    assert sink.messages()[0].rcpt_tos == ("ok@example.com",)

    sink.set_faults()  # clears every fault
    assert await send(sink, ["gone@example.com"], raw_message("x")) == {}


async def test_failure_rate_is_exact_under_concurrency(sink: SmtpSink) -> None:
    sink.set_faults(temp_fail_rate=0.25)
    recipients = [f"r{i}@example.com" for i in range(8)]
    errors = await send(sink, recipients, raw_message("x"))
    assert len(errors) == 2 and {r.code for r in errors.values()} == {451}

    sink.clear()
    sink.set_faults(temp_fail_rate=0.5)
    data = raw_message("x")

    async def one(i: int) -> int:
        try:
            return len(await send(sink, [f"a{i}@example.com", f"b{i}@example.com"], data))
        except aiosmtplib.SMTPRecipientsRefused:  # both of its recipients drew a failure
            return 2

    refused = await asyncio.gather(*(one(i) for i in range(40)))
    assert sum(refused) == 40
    delivered = sum(1 for r in refused if r < 2)
    assert sink.stats() == {"messages": delivered, "rcpt_temp_failed": 40, "rcpt_rejected": 0}

    with pytest.raises(ValueError):
        sink.set_faults(temp_fail_rate=1.5)


async def test_web_view_escapes_and_shows_the_message(sink: SmtpSink) -> None:
    evil = "<script>alert(1)</script> 通知"
    html_body = '<p onclick="x()">Hello "there"</p><script>alert(2)</script>'
    await send(sink, ["a@example.com"], raw_message(evil, to='"<b>x</b>" <a@example.com>', html_body=html_body))

    async with TestClient(TestServer(sink_web_app(sink))) as client:
        index = await client.get("/")
        page = await index.text()
        assert index.status == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt; 通知" in page
        assert "<script>" not in page
        assert 'href="/messages/1"' in page

        detail = await client.get("/messages/1")
        page = await detail.text()
        assert detail.status == 200
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; 通知" in page
        assert "&lt;b&gt;x&lt;/b&gt;" in page  # the decoded To header
        assert "政策全文见链接。" in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
        assert '<iframe sandbox="" srcdoc="&lt;p onclick=&quot;x()&quot;&gt;' in page
        assert "script-src 'none'" in detail.headers["Content-Security-Policy"]

        raw = await client.get("/messages/1/raw")
        assert raw.content_type == "text/plain" and await raw.read() == sink.messages()[0].data

        listing = await (await client.get("/messages.json")).json()
        assert listing == [
            {
                "n": 1,
                "mail_from": "pushsvc@example.gov.cn",
                "rcpt_tos": ["a@example.com"],
                "subject": evil,
                "received_at": sink.messages()[0].received_at.isoformat(),
            }
        ]
        assert (await client.get("/messages/2")).status == 404
        assert (await client.get("/messages/abc")).status == 404


async def test_serve_sink_runs_both_until_cancelled(tmp_path: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    task = asyncio.create_task(serve_sink("127.0.0.1", smtp_port, web_port, tmp_path))
    deadline = time.monotonic() + 5
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{web_port}/messages.json") as r:
                    assert await r.json() == []
                    break
            except aiohttp.ClientConnectionError:
                assert time.monotonic() < deadline, "serve_sink did not come up"
                await asyncio.sleep(0.05)
        await aiosmtplib.send(
            raw_message("hello"),
            sender="s@example.com",
            recipients=["a@example.com"],
            hostname="127.0.0.1",
            port=smtp_port,
        )
        async with http.get(f"http://127.0.0.1:{web_port}/messages.json") as r:
            assert [m["subject"] for m in await r.json()] == ["hello"]
    assert (tmp_path / "1.eml").exists()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):  # the SMTP port is closed again
        socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
