"""The e-mail channel against a real local SMTP server (aiosmtpd), asserting on the bytes it receives."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from email.header import decode_header, make_header
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from pushsvc.channels import CHANNELS, build_channels
from pushsvc.channels import email as email_channel
from pushsvc.channels.email import EmailChannel, envelope_address
from pushsvc.core.messages import PolicyMessage, Recipient
from pushsvc.core.qr import qr_png
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner, read_unsubscribe_token
from pushsvc.settings import REPO_ROOT, Settings
from tests.test_qr import decode

PUBLIC = "https://push.example.gov.cn"
TITLE = "关于支持中小微企业稳岗扩岗的若干措施"
DEPARTMENT = "广州市人力资源和社会保障局"
LONG_NAME = "广州市某某某某某某科技股份有限公司第一分公司"

MESSAGE = PolicyMessage(
    policy_id=7,
    kind="policy",
    version="v1",
    title=TITLE,
    summary="对吸纳就业的中小微企业给予补贴。{{ 7*7 }} 原样显示。",
    department=DEPARTMENT,
    domain="employment-entrepreneurship",
    doc_number="穗人社规字〔2026〕3号",
    page_url=f"{PUBLIC}/p/7",
    short_url=f"{PUBLIC}/s/abcdefg",
    source_url="https://example.gov.cn/policy/123",
    interpretation_url=None,
    produced_on=date(2026, 11, 20),
    effective_on=date(2026, 12, 1),
    expires_on=None,
)


def recipient(n: int, email_addr: str | None, name: str | None = "广州某某科技有限公司", locale: str = "zh-CN") -> Recipient:
    return Recipient(delivery_id=1000 + n, subscriber_id=n, name=name, locale=locale, email=email_addr)


@dataclass
class Sink:
    """An aiosmtpd handler that records what arrives; it runs in the controller's thread."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)
    tempfail_rcpt: int = 0  # reply 451 to this many RCPTs first
    reject: set[str] = field(default_factory=set)  # reply 550 to these
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            if self.tempfail_rcpt > 0:
                self.tempfail_rcpt -= 1
                return "451 4.7.1 greylisted, try again later"
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            self.peers.add(session.peer)
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server(sink: Sink, port: int) -> Iterator[Controller]:
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller
    if controller._thread is not None:  # a test may have stopped it already
        controller.stop()


def make_settings(port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        admin_token="a" * 16,
        secret_key="k" * 32,
        public_url=PUBLIC,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="广州市政务公开 <push@example.gov.cn>",
        smtp_connections=4,
        smtp_timeout=5.0,
        unsubscribe_mailto="unsubscribe@example.gov.cn",
    )
    values.update(extra)
    return Settings(**values)


class CountingRenderer(Renderer):
    def __init__(self) -> None:
        super().__init__(REPO_ROOT / "templates")
        self.calls = 0

    def render(self, kind: str, channel: str, part: str, locale: str, context: dict[str, Any]) -> str:
        self.calls += 1
        return super().render(kind, channel, part, locale, context)


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner("k" * 32)


@pytest.fixture
def renderer() -> CountingRenderer:
    return CountingRenderer()


@pytest.fixture
async def channel(port: int, renderer: CountingRenderer, signer: TokenSigner) -> AsyncIterator[EmailChannel]:
    ch = EmailChannel(make_settings(port), renderer, signer)
    await ch.start()
    yield ch
    await ch.close()


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def inline_qr(msg: email.message.EmailMessage) -> tuple[str, bytes]:
    """(the Content-ID the HTML shows, that part's image bytes), checking the MIME structure:
    multipart/alternative [text/plain, multipart/related [text/html, image/png]]."""
    assert msg.get_content_type() == "multipart/alternative"
    text_part, related = msg.get_payload()  # type: ignore[misc]
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related" and related.get_param("type") == "text/html"
    html_part, image = related.get_payload()
    assert html_part.get_content_type() == "text/html" and image.get_content_type() == "image/png"
    [cid] = re.findall(r'<img src="cid:([^"]+)"', html_part.get_content())
    assert image["Content-ID"] == f"<{cid}>" and image.get_content_disposition() == "inline"
    return cid, image.get_content()


async def test_message_headers_and_bodies(server: Controller, sink: Sink, channel: EmailChannel, signer: TokenSigner) -> None:
    people = [
        recipient(1, "boss@example.com"),
        recipient(2, "Mixed.Case@Example.COM", name="<b>Bold</b> & Co", locale="en"),
        recipient(3, "anon@example.com", name=None, locale="zh-HK"),
        recipient(4, "someone@例子.中国", name='A "quoted" English company name that needs no encoding, Ltd.'),
        recipient(5, "long@example.com", name=LONG_NAME),
    ]
    outcomes = await channel.send(MESSAGE, people)
    assert sorted((o.delivery_id, o.status) for o in outcomes) == [(1001 + i, "sent") for i in range(5)]
    assert len(sink.messages) == 5
    by_rcpt = {rcpts[0]: (mail_from, raw) for mail_from, rcpts, raw in sink.messages}
    assert set(by_rcpt) == {"boss@example.com", "Mixed.Case@example.com", "anon@example.com", "someone@xn--fsqu00a.xn--fiqs8s",
                            "long@example.com"}
    # Each message's own return path (VERP), so that a bounce names the delivery it is about.
    assert all(re.fullmatch(r"bounces\+d[0-9a-f]+-[0-9a-f]{16}@example\.gov\.cn", mail_from)
               for mail_from, _ in by_rcpt.values())
    assert len({mail_from for mail_from, _ in by_rcpt.values()}) == 5

    ids = set()
    for n, (rcpt, (_, raw)) in enumerate(sorted(by_rcpt.items())):
        raw.decode("ascii")  # every byte on the wire is ASCII: encoded words and base64
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        msg = parse(raw)
        assert msg["Subject"] == f"【{DEPARTMENT}】{TITLE}" or msg["Subject"] == f"{TITLE} ({DEPARTMENT})"
        assert msg["From"].addresses[0].display_name == "广州市政务公开"
        assert msg["From"].addresses[0].addr_spec == "push@example.gov.cn"
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["Date"].datetime is not None
        assert msg.get_content_type() == "multipart/alternative"
        inline_qr(msg)
        ids.add(msg["Message-ID"])

        unsub = msg["List-Unsubscribe"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url_token = re.search(rf"<{re.escape(PUBLIC)}/u/([A-Za-z0-9_.-]+)>", unsub).group(1)
        mail_token = re.search(r"<mailto:unsubscribe@example\.gov\.cn\?subject=unsubscribe-([A-Za-z0-9_.-]+)>", unsub).group(1)
        assert url_token == mail_token
        subscriber_id, ch = read_unsubscribe_token(signer, url_token)
        assert ch == "email"
        person = next(p for p in people if p.subscriber_id == subscriber_id)
        assert envelope_address(person.email or "") == rcpt

        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        for body in (text, html):
            assert TITLE in body
            assert MESSAGE.page_url in body
            assert MESSAGE.source_url in body
            assert f"{PUBLIC}/u/{url_token}" in body
            assert "{{ 7*7 }}" in body  # department text is data, never template source
            assert "PUSHSVC" not in body  # no marker left behind
        if person.name == "<b>Bold</b> & Co":
            assert msg["To"].addresses[0].display_name == "<b>Bold</b> & Co"
            assert "Dear <b>Bold</b> & Co," in text
            assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in html and "<b>Bold" not in html
            assert msg["Subject"] == f"{TITLE} ({DEPARTMENT})"
        elif person.name is None:
            assert msg["To"].addresses[0].display_name == ""
            assert "訂閱用戶，您好" in text and "訂閱用戶，您好" in html
            assert "文號" in text  # zh-HK template
        elif person.name == LONG_NAME:
            # Several encoded words: CPython's address parser puts a space between them (its own
            # generator writes the same), so decode the raw header the RFC 2047 way instead.
            raw_to = email.message_from_bytes(raw)["To"]
            assert raw_to.count("=?utf-8?b?") > 1
            assert str(make_header(decode_header(raw_to))) == f"{LONG_NAME} <long@example.com>"
            assert f"{LONG_NAME}，您好" in text
        else:
            assert msg["To"].addresses[0].display_name == person.name
            assert f"{person.name}，您好" in text
            assert msg["Subject"] == f"【{DEPARTMENT}】{TITLE}"
    assert len(ids) == 5
    assert ids == {o.provider_ref for o in outcomes}


async def test_html_shows_the_qr_inline_made_once(server: Controller, sink: Sink, channel: EmailChannel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    monkeypatch.setattr(email_channel, "qr_png", lambda url: made.append(url) or qr_png(url))
    email_channel._qr_body.cache_clear()
    locales = ("zh-CN", "zh-HK", "en")
    outcomes = await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com", locale=locales[i % 3]) for i in range(12)])
    assert {o.status for o in outcomes} == {"sent"} and len(sink.messages) == 12
    assert made == [MESSAGE.short_url]  # one PNG per policy, whatever the locales and recipients
    images = {inline_qr(parse(raw))[1] for _, _, raw in sink.messages}
    assert len(images) == 1
    assert decode(images.pop()) == [(MESSAGE.short_url, "M")]


def test_preview_is_the_message_with_placeholders(port: int, renderer: CountingRenderer, signer: TokenSigner) -> None:
    channel = EmailChannel(make_settings(port), renderer, signer)  # never started: previewing does no I/O
    preview = channel.preview(MESSAGE, "en")
    assert preview["subject"] == f"{TITLE} ({DEPARTMENT})"
    assert "Dear {recipient_name}," in preview["text"] and "{unsubscribe_url}" in preview["text"]
    assert "Dear {recipient_name}," in preview["html"] and 'href="{unsubscribe_url}"' in preview["html"]
    assert "PUSHSVC" not in preview["text"] + preview["html"]
    [image] = preview["inline_images"]
    assert image["content_type"] == "image/png"
    assert f'src="cid:{image["content_id"]}"' in preview["html"]
    assert decode(base64.b64decode(image["data"])) == [(MESSAGE.short_url, "M")]

    # Exactly what a recipient gets once their values are filled in.
    person = recipient(1, "boss@example.com", name="ACME Ltd", locale="en")
    msg = parse(channel.compose(MESSAGE, person, "boss@example.com", "Tue, 01 Dec 2026 00:00:00 +0000")[1])
    unsub = msg["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    fill = {"{recipient_name}": "ACME Ltd", "{unsubscribe_url}": unsub}
    assert msg["Subject"] == preview["subject"]
    for part, kind in (("text", "plain"), ("html", "html")):
        expected = preview[part]
        for placeholder, value in fill.items():
            expected = expected.replace(placeholder, value)
        assert msg.get_body((kind,)).get_content() == expected  # type: ignore[union-attr]  # CRLF both: the wire form
    cid, png = inline_qr(msg)
    assert cid == image["content_id"] and png == base64.b64decode(image["data"])


async def test_renders_once_per_policy_version_and_locale(server: Controller, channel: EmailChannel, renderer: CountingRenderer) -> None:
    await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(10)])
    assert renderer.calls == 3  # subject, text, html
    await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com", locale="en") for i in range(3)])
    await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(3)])
    assert renderer.calls == 6
    await channel.send(MESSAGE.__class__(**{**vars(MESSAGE), "version": "v2"}), [recipient(1, "u1@example.com")])
    assert renderer.calls == 9


async def test_batch_spreads_over_pool(server: Controller, sink: Sink, channel: EmailChannel) -> None:
    outcomes = await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(40)])
    assert {o.status for o in outcomes} == {"sent"} and len(outcomes) == 40
    assert len(sink.messages) == 40
    assert 1 < len(sink.peers) <= 4  # several connections, never more than the pool


async def test_missing_and_invalid_addresses_fail(server: Controller, sink: Sink, channel: EmailChannel) -> None:
    outcomes = await channel.send(
        MESSAGE,
        [recipient(1, None), recipient(2, ""), recipient(3, "not-an-address"), recipient(4, "a b@example.com"),
         recipient(5, "x@example.com\r\nBcc: evil@example.com"), recipient(6, "ok@example.com")],
    )
    got = {o.delivery_id: (o.status, o.error) for o in outcomes}
    assert got[1001] == got[1002] == ("failed", "no e-mail address")
    assert got[1003] == got[1004] == got[1005] == ("failed", "invalid e-mail address")
    assert got[1006] == ("sent", None)
    assert [rcpts for _, rcpts, _ in sink.messages] == [["ok@example.com"]]


async def test_temporary_refusal_is_retry(server: Controller, sink: Sink, channel: EmailChannel) -> None:
    sink.tempfail_rcpt = 1
    [first] = await channel.send(MESSAGE, [recipient(1, "grey@example.com")])
    assert first.status == "retry"
    assert first.error is not None and first.error.startswith("451") and "greylisted" in first.error
    [second] = await channel.send(MESSAGE, [recipient(1, "grey@example.com")])
    assert second.status == "sent"


async def test_permanent_refusal_is_failed(server: Controller, sink: Sink, channel: EmailChannel) -> None:
    sink.reject = {"gone@example.com"}
    outcomes = await channel.send(MESSAGE, [recipient(1, "gone@example.com"), recipient(2, "here@example.com")])
    got = {o.delivery_id: o for o in outcomes}
    assert got[1001].status == "failed"
    assert got[1001].error == "550 5.1.1 mailbox unavailable"
    assert got[1002].status == "sent"


async def test_server_gone_is_retry_and_reconnects(server: Controller, sink: Sink, channel: EmailChannel, port: int) -> None:
    [ok] = await channel.send(MESSAGE, [recipient(1, "a@example.com")])
    assert ok.status == "sent"
    server.stop()
    outcomes = await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(6)])
    assert {o.status for o in outcomes} == {"retry"}
    assert all(o.error for o in outcomes)
    again = Controller(sink, hostname="127.0.0.1", port=port)
    again.start()
    try:
        outcomes = await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(6)])
        assert {o.status for o in outcomes} == {"sent"}
    finally:
        again.stop()


async def test_nothing_listening_is_retry(renderer: CountingRenderer, signer: TokenSigner) -> None:
    channel = EmailChannel(make_settings(free_port()), renderer, signer)
    await channel.start()
    try:
        [outcome] = await channel.send(MESSAGE, [recipient(1, "a@example.com")])
    finally:
        await channel.close()
    assert outcome.status == "retry" and outcome.error


async def test_silent_server_is_retry(renderer: CountingRenderer, signer: TokenSigner) -> None:
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)  # never greets
    port = server.sockets[0].getsockname()[1]
    channel = EmailChannel(make_settings(port, smtp_timeout=0.3), renderer, signer)
    await channel.start()
    started = time.perf_counter()
    try:
        outcomes = await channel.send(MESSAGE, [recipient(i, f"u{i}@example.com") for i in range(40)])
    finally:
        await channel.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    elapsed = time.perf_counter() - started
    assert {o.status for o in outcomes} == {"retry"} and len(outcomes) == 40
    assert all(o.error and "time" in o.error.lower() for o in outcomes)
    # The batch is deferred after the first timeouts, not 40 / 4 lanes x 0.3 s.
    assert elapsed < 2.0


def test_registry(port: int, renderer: CountingRenderer, signer: TokenSigner) -> None:
    assert CHANNELS["email"] is EmailChannel
    built = build_channels(make_settings(port), renderer, signer)
    assert isinstance(built["email"], EmailChannel)


def test_personalising_speed(port: int, renderer: CountingRenderer, signer: TokenSigner) -> None:
    channel = EmailChannel(make_settings(port), renderer, signer)
    people = [recipient(i, f"user{i}@example.com", name=f"企业{i}号") for i in range(10_000)]
    channel.compose(MESSAGE, people[0], "user0@example.com", "Tue, 01 Dec 2026 00:00:00 +0000")  # render once
    started = time.perf_counter()
    size = 0
    for person in people:
        _, data = channel.compose(MESSAGE, person, person.email or "", "Tue, 01 Dec 2026 00:00:00 +0000")
        size += len(data)
    elapsed = time.perf_counter() - started
    print(f"\npersonalised 10,000 e-mails in {elapsed:.3f}s ({10_000 / elapsed:,.0f}/s, {size / 10_000:,.0f} bytes each)")
