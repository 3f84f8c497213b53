"""A local SMTP server that keeps every message it accepts: the mailbox of the demo, the tests and benchmarks.

`SmtpSink` runs aiosmtpd in its own thread, stores messages in memory (and optionally as `.eml` files)
and can be told to fail recipients on purpose, or, as a remote mail server does, to accept a message
and then report on it to its return path: a DSN saying it failed for good (5.1.1) or is delayed
(4.4.7), or an auto-reply, sent by SMTP to the bounce receiver (`set_bounce_receiver`).
`sink_web_app` shows what it holds to a person.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from zoneinfo import ZoneInfo

import aiosmtplib
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

TEMP_FAIL = "451 4.3.0 try again later"
# Quoting the address, as real servers do (Postfix: "550 5.1.1 <a@b>: Recipient address rejected: ...").
MAILBOX_UNAVAILABLE = "550 5.1.1 <{address}>: mailbox unavailable"
SHOWN_ZONE = ZoneInfo("Asia/Shanghai")
INDEX_LIMIT = 500  # the HTML list shows the newest ones; messages.json has them all
_PPM = 1_000_000  # fault rates are kept in parts per million so the counting is exact integer arithmetic


@dataclass(frozen=True, slots=True)
class SinkMessage:
    n: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class _Faults:
    temp_fail_until: float = 0.0  # time.monotonic() deadline
    temp_fail_ppm: int = 0
    reject: frozenset[str] = frozenset()
    bounce: frozenset[str] = frozenset()
    delay_report: frozenset[str] = frozenset()
    auto_reply: frozenset[str] = frozenset()


class _Controller(Controller):
    """Records the port the OS picked: asked for port 0, aiosmtpd would check itself on port 0."""

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await super()._create_server()
        assert isinstance(server, asyncio.Server)  # what loop.create_server returns
        self.port = server.sockets[0].getsockname()[1]
        return server


class _Handler:
    """aiosmtpd's hooks, kept off SmtpSink so its public surface stays small."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._sink._answer_rcpt(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.delay:  # a slow relay: the message is taken when the reply is given
            await asyncio.sleep(self._sink.delay)
        data = envelope.original_content or b""
        self._sink._accept(envelope.mail_from or "", envelope.rcpt_tos, data)
        self._sink._report_later(envelope.mail_from or "", envelope.rcpt_tos, data)
        return "250 OK"


class SmtpSink:
    """An SMTP server on `host:port` (port 0: any free one, then read `.port`) that keeps what it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, maildir: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.maildir = maildir
        self._cond = threading.Condition()
        self._messages: list[SinkMessage] = []
        self._next_n = 1  # never reset, so files in maildir are not overwritten after clear()
        self._faults = _Faults()
        self.delay = 0.0  # seconds before each message's reply (set_delay)
        self._rate_seen = 0
        self._temp_failed = 0
        self._rejected = 0
        self._controller: _Controller | None = None
        self._bounce_receiver: tuple[str, int] | None = None
        self._reporting: set[asyncio.Task[None]] = set()
        self.reports_sent = 0

    def start(self) -> None:
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        # aiosmtpd logs each connection and recipient at INFO: at benchmark rates that is the main cost.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        controller = _Controller(
            _Handler(self),
            hostname=self.host,  # explicit: aiosmtpd's default may bind ::1 only
            port=self.port,
            server_hostname="pushsvc-smtp-sink",  # else every connection calls socket.getfqdn()
        )
        controller.start()
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what it received -------------------------------------------------------------------
    def messages(self) -> list[SinkMessage]:
        with self._cond:
            return list(self._messages)

    def message(self, n: int) -> SinkMessage | None:
        with self._cond:
            if not self._messages:
                return None
            i = n - self._messages[0].n  # numbers are consecutive from the first message kept
            return self._messages[i] if 0 <= i < len(self._messages) else None

    def count(self) -> int:
        return len(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages = []
            self._rate_seen = self._temp_failed = self._rejected = 0

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least `count` messages are kept (from async code: `asyncio.to_thread`)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._messages) >= count, timeout)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "messages": len(self._messages),
                "rcpt_temp_failed": self._temp_failed,
                "rcpt_rejected": self._rejected,
            }

    # --- fault injection --------------------------------------------------------------------
    def set_faults(self, temp_fail_for: float = 0, temp_fail_rate: float = 0, reject: Iterable[str] = (),
                   bounce: Iterable[str] = (), delay_report: Iterable[str] = (), auto_reply: Iterable[str] = ()) -> None:
        """Fail recipients from now on: all of them for `temp_fail_for` seconds (451), a share
        `temp_fail_rate` of the rest (451, spread evenly and exactly), and those in `reject` (550).
        Messages to addresses in `bounce`, `delay_report` or `auto_reply` are accepted, then
        answered at their return path (to the bounce receiver) with a DSN of a hard failure
        (5.1.1), a DSN of a delay (4.4.7), or an out-of-office reply.
        Called with no arguments it clears every fault."""
        if temp_fail_for < 0:
            raise ValueError("temp_fail_for must be >= 0")
        if not 0 <= temp_fail_rate <= 1:
            raise ValueError("temp_fail_rate must be between 0 and 1")
        faults = _Faults(
            temp_fail_until=time.monotonic() + temp_fail_for if temp_fail_for else 0.0,
            temp_fail_ppm=round(temp_fail_rate * _PPM),
            reject=frozenset(a.lower() for a in reject),
            bounce=frozenset(a.lower() for a in bounce),
            delay_report=frozenset(a.lower() for a in delay_report),
            auto_reply=frozenset(a.lower() for a in auto_reply),
        )
        with self._cond:
            self._faults = faults
            self._rate_seen = 0

    def set_bounce_receiver(self, host: str, port: int) -> None:
        """Where the reports of `set_faults(bounce=, delay_report=, auto_reply=)` are sent by SMTP,
        as a return path's MX would receive them."""
        self._bounce_receiver = (host, port)

    def set_delay(self, seconds: float) -> None:
        """Take `seconds` over each message before accepting it, as a slow relay does (0: at once).
        Sessions are served side by side, so each connection is slowed on its own."""
        if seconds < 0:
            raise ValueError("the delay must be >= 0")
        self.delay = seconds

    # --- called from the SMTP thread --------------------------------------------------------
    def _answer_rcpt(self, address: str) -> str | None:
        with self._cond:
            faults = self._faults
            if faults.reject and address.lower() in faults.reject:
                self._rejected += 1
                return MAILBOX_UNAVAILABLE.format(address=address)
            if faults.temp_fail_until and time.monotonic() < faults.temp_fail_until:
                self._temp_failed += 1
                return TEMP_FAIL
            if faults.temp_fail_ppm:
                # The k-th recipient fails when floor(k * rate) steps up: exactly `rate` of any run.
                self._rate_seen += 1
                k, ppm = self._rate_seen, faults.temp_fail_ppm
                if k * ppm // _PPM > (k - 1) * ppm // _PPM:
                    self._temp_failed += 1
                    return TEMP_FAIL
        return None

    def _accept(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        with self._cond:
            msg = SinkMessage(self._next_n, mail_from, tuple(rcpt_tos), data, datetime.now(UTC))
            self._next_n += 1
            self._messages.append(msg)
            self._cond.notify_all()
        if self.maildir is not None:
            (self.maildir / f"{msg.n}.eml").write_bytes(data)


    def _report_later(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        """From the SMTP thread's loop: send the reports the faults ask for, after the 250."""
        with self._cond:
            faults = self._faults
        for rcpt in rcpt_tos:
            address = rcpt.lower()
            report = (_dsn(rcpt, data, "failed", "5.1.1") if address in faults.bounce
                      else _dsn(rcpt, data, "delayed", "4.4.7") if address in faults.delay_report
                      else _auto_reply(rcpt, data) if address in faults.auto_reply else None)
            if report is None:
                continue
            if not mail_from or self._bounce_receiver is None:
                log.warning("SMTP sink: no return path or no bounce receiver set; report for a message dropped")
                continue
            task = asyncio.get_running_loop().create_task(self._send_report(mail_from, report))
            self._reporting.add(task)
            task.add_done_callback(self._reporting.discard)

    async def _send_report(self, return_path: str, report: bytes) -> None:
        assert self._bounce_receiver is not None
        host, port = self._bounce_receiver
        try:
            await send_report(host, port, return_path, report)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("SMTP sink: the bounce receiver refused a report: %s", exc)
            return
        with self._cond:
            self.reports_sent += 1
            self._cond.notify_all()


_REPORTER = "pushsvc-smtp-sink"


async def send_report(host: str, port: int, return_path: str, report: bytes) -> None:
    """Send a report to `return_path` from the null sender, as RFC 3464 and 3834 want (nobody
    answers a report); raises aiosmtplib's errors."""
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        await smtp.sendmail("", [return_path], report)


def _original_head(data: bytes) -> bytes:
    head, _, _ = data.partition(b"\r\n\r\n")
    return head + b"\r\n"


def _original_subject(data: bytes) -> str:
    return _header(_head_of(data), "subject")


def _dsn(recipient: str, data: bytes, action: str, status: str) -> bytes:
    """An RFC 3464 report on one recipient, with the original message's header (text/rfc822-headers)."""
    boundary = f"=_sink_{secrets.token_hex(8)}"
    diagnostic = (f"smtp; 550 {status} <{recipient}>: mailbox unavailable" if action == "failed"
                  else f"smtp; 451 {status} connection timed out, still trying")
    human = ("Your message could not be delivered to one or more recipients." if action == "failed"
             else "Your message has not been delivered yet; delivery will be tried again.")
    return "\r\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{_REPORTER}>",
        "Subject: " + ("Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)"),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {_REPORTER}",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        f"Original-Recipient: rfc822; {recipient}",
        f"Action: {action}",
        f"Status: {status}",
        f"Diagnostic-Code: {diagnostic}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        "",
    ]).encode("ascii") + _original_head(data) + f"\r\n--{boundary}--\r\n".encode("ascii")


def _auto_reply(recipient: str, data: bytes) -> bytes:
    """An out-of-office answer from the recipient's mailbox, as Exchange and vacation(1) send them."""
    subject = " ".join(_original_subject(data).split()).encode("ascii", "replace").decode("ascii")
    return "\r\n".join([
        f"From: {recipient}",
        f"Subject: Automatic reply: {subject}",
        "Auto-Submitted: auto-replied",
        "X-Autoreply: yes",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "I am out of the office until Monday and will read your message then.",
        "",
    ]).encode("ascii")


# --- the web view -----------------------------------------------------------------------------
def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    return "" if raw is None else _decode_header(msg, name, raw)


def _decode_header(msg: Message, name: str, raw: Any) -> str:
    try:
        return str(msg.policy.header_fetch_parse(name, str(raw)))
    except Exception:  # the email package raises on some malformed headers; a sink shows them raw
        return str(raw)


def _part_text(part: Message | None) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except Exception:  # unknown charset or broken encoding: show the bytes as best we can
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def _head_of(data: bytes) -> Message:
    return BytesHeaderParser(policy=policy.default).parsebytes(data)


def _shown_time(at: datetime) -> str:
    return at.astimezone(SHOWN_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, body: str) -> web.Response:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}"
        "pre{white-space:pre-wrap;background:#f6f6f6;padding:.8em}"
        "iframe{width:100%;height:32em;border:1px solid #ccc}</style></head>"
        f"<body>{body}</body></html>"
    )
    return web.Response(
        text=doc,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "script-src 'none'; object-src 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _index(sink: SmtpSink) -> web.Response:
    messages = sink.messages()
    rows = []
    for m in reversed(messages[-INDEX_LIMIT:]):
        rows.append(
            f"<tr><td>{m.n}</td><td>{_shown_time(m.received_at)}</td>"
            f"<td>{html.escape(', '.join(m.rcpt_tos))}</td>"
            f'<td><a href="/messages/{m.n}">{html.escape(_header(_head_of(m.data), "subject")) or "(no subject)"}</a>'
            "</td></tr>"
        )
    shown = f"newest {INDEX_LIMIT} of {len(messages)}" if len(messages) > INDEX_LIMIT else str(len(messages))
    body = (
        f"<h1>SMTP sink</h1><p>{shown} message(s), times in Asia/Shanghai. "
        '<a href="/messages.json">JSON</a></p>'
        "<table><tr><th>#</th><th>received</th><th>to</th><th>subject</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return _page("SMTP sink", body)


def _detail(m: SinkMessage) -> web.Response:
    msg = BytesParser(policy=policy.default).parsebytes(m.data)
    assert isinstance(msg, EmailMessage)  # policy.default builds EmailMessage
    headers = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(_decode_header(msg, name, raw))}</td></tr>"
        for name, raw in msg.raw_items()
    )
    parts = [
        f'<p><a href="/">all messages</a> · <a href="/messages/{m.n}/raw">raw</a></p>',
        f"<h1>{html.escape(_header(msg, 'subject')) or '(no subject)'}</h1>",
        (
            f"<p>envelope: from {html.escape(m.mail_from)} to {html.escape(', '.join(m.rcpt_tos))}, "
            f"received {_shown_time(m.received_at)} (Asia/Shanghai)</p>"
        ),
        f"<table>{headers}</table>",
    ]
    text = _part_text(msg.get_body(preferencelist=("plain",)))
    if text is not None:
        parts.append(f"<h2>Text part</h2><pre>{html.escape(text)}</pre>")
    html_part = _part_text(msg.get_body(preferencelist=("html",)))
    if html_part is not None:
        # An empty sandbox runs no script and cannot reach this page; srcdoc needs the quotes escaped.
        parts.append(f'<h2>HTML part</h2><iframe sandbox="" srcdoc="{html.escape(html_part, quote=True)}"></iframe>')
    attachments = [
        f"<li>{html.escape(a.get_filename() or '(unnamed)')} ({html.escape(a.get_content_type())})</li>"
        for a in msg.iter_attachments()
    ]
    if attachments:
        parts.append(f"<h2>Attachments</h2><ul>{''.join(attachments)}</ul>")
    return _page(f"Message {m.n}", "".join(parts))


def _summary(m: SinkMessage) -> dict[str, Any]:
    return {
        "n": m.n,
        "mail_from": m.mail_from,
        "rcpt_tos": list(m.rcpt_tos),
        "subject": _header(_head_of(m.data), "subject"),
        "received_at": m.received_at.isoformat(),
    }


def sink_web_app(sink: SmtpSink) -> web.Application:
    """Pages to read what the sink received: `/`, `/messages/{n}`, `/messages/{n}/raw`, `/messages.json`."""

    def found(request: web.Request) -> SinkMessage:
        m = sink.message(int(request.match_info["n"]))
        if m is None:
            raise web.HTTPNotFound(text="no such message")
        return m

    async def index(request: web.Request) -> web.Response:
        return _index(sink)

    async def detail(request: web.Request) -> web.Response:
        return _detail(found(request))

    async def raw(request: web.Request) -> web.Response:
        return web.Response(
            body=found(request).data,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([_summary(m) for m in sink.messages()], dumps=_dumps)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/messages.json", listing)
    app.router.add_get(r"/messages/{n:\d+}", detail)
    app.router.add_get(r"/messages/{n:\d+}/raw", raw)
    return app


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def serve_sink(host: str, smtp_port: int, web_port: int, maildir: Path | None) -> None:
    """Run the SMTP sink and its web view until cancelled."""
    sink = SmtpSink(host, smtp_port, maildir)
    await asyncio.to_thread(sink.start)
    runner = web.AppRunner(sink_web_app(sink), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, web_port).start()
        log.info("SMTP sink on %s:%d; its mail at http://%s:%d/", host, sink.port, host, web_port)
        if maildir is not None:
            log.info("SMTP sink writes each message to %s as <n>.eml", maildir)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(sink.stop)
