"""E-mail over SMTP: render once per policy × locale, personalise per recipient by substitution,
send pre-built bytes over a pool of long-lived connections.

Building each message with the `email` package costs more than sending it (library-notes.md), so
a message is laid out once as bytes with marker strings where the recipient's name and unsubscribe
URL go; per recipient we only replace the markers, base64 the two text parts and prepend the
per-recipient headers. All headers are ASCII (RFC 2047 words, ASCII addresses), bodies base64.

The HTML shows the policy's QR code inline: multipart/alternative [text/plain, multipart/related
[text/html, image/png]], the image named by its Content-ID (`cid:` in the HTML), so it shows without
loading remote images. The PNG is made and base64-encoded once per short link and sits in the
layout's fixed tail: it adds bytes to each message, not work.

The envelope sender is a return path of its own per message (VERP, `pushsvc.core.dsn`):
`bounces+<token>@<PUSHSVC_BOUNCE_DOMAIN>`, the token a signed name of the message's ledger row (or
of the subscriber, for a message with no row), so that a bounce says which message it is about.

Outcome rules (never an exception for one recipient):
- 2xx: `sent`, provider_ref = the Message-ID.
- `retry` (the reason kept as error): a 4xx reply; a dropped connection or a timeout, before or
  during DATA; a server that can't be reached, greeted or logged in to, or that refuses our sender
  (then the rest of the batch is deferred at once rather than each recipient waiting out a timeout). A 421 or a
  transport error drops the connection (reopened on next use); after other 4xx replies
  aiosmtplib has already sent RSET, so the session is kept.
  A session lost after the message's end was written but before the server's reply is the one
  ambiguous case (RFC 1047): SMTP has no way to ask whether the server took it, so, as mail
  servers do, it is tried again. The window is the server's reply time, far shorter than the
  outages that lose sessions; in the fault bench an outage that drops open sessions then loses
  nothing and doubles nothing (recording `unknown` instead left those messages lost for good:
  nothing in SMTP settles them).
- `held` until the next slot (not an attempt): over PUSHSVC_SMTP_PER_SECOND, shared by every
  worker, with no slot free in the first half of the job's time.
- `untried` (not an attempt): the send's deadline (the job's send budget) passed before the
  message's turn; checked before each message, so a slow relay cannot keep a job past its time.
- `failed`: a 5xx reply to the recipient or the message, keeping the server's reply
  ("550 5.1.1 mailbox unavailable"); no address ("no e-mail address"); an address that is
  syntactically unusable ("invalid e-mail address", without echoing it: logs and the ledger
  carry no contacts).
"""

from __future__ import annotations

import asyncio
import binascii
import html
import logging
import re
import secrets
import time
from collections import OrderedDict
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any, ClassVar, get_args

import aiosmtplib

from pushsvc.channels.base import Channel, Report, no_report, send_deadline
from pushsvc.core.clock import now
from pushsvc.core.dsn import ledger_of, return_path
from pushsvc.core.identifiers import ascii_email
from pushsvc.core.messages import HasContacts, Message, Outcome, OutcomeStatus, Recipient
from pushsvc.core.models import Locale
from pushsvc.core.qr import qr_png
from pushsvc.core.rendering import DEFAULT_LOCALE, Renderer
from pushsvc.core.tokens import TokenSigner, unsubscribe_token
from pushsvc.i18n import words
from pushsvc.ratelimit import ProviderPace
from pushsvc.settings import Settings

log = logging.getLogger(__name__)

_CACHE_SIZE = 32  # policy × version × locale renderings kept; a deliver job touches a handful
_IDLE_PROBE_SECONDS = 30.0  # a pooled session idle longer than this gets a NOOP before reuse
_ERROR_MAX = 500
_B64_LINE = 76  # RFC 2045 line length for base64 bodies
_ENCODED_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars -> a 72-char encoded word (RFC 2047: <= 75)

# atext and space: a display name made only of these needs neither quoting nor encoding ("=" and
# "?" left out so it can't look like an encoded word). Other printable ASCII gets quoted.
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9 !#$%&'*+/^_`{|}~-]{1,900}")
_PLAIN_MAX = 900


def envelope_address(raw: str) -> str | None:
    """The ASCII address for the SMTP envelope and To header (IDN domains in punycode), or None
    if it can't be sent to. Plain dot-atom local parts only: no quoted strings, no SMTPUTF8."""
    try:
        return ascii_email(raw)
    except ValueError:
        return None


def bounce_domain(settings: Settings) -> str:
    """Where bounces come back (the return paths' domain): PUSHSVC_BOUNCE_DOMAIN, else SMTP_FROM's."""
    return settings.bounce_domain or parseaddr(settings.smtp_from)[1].rpartition("@")[2]


def _check_configured_address(setting: str, address: str) -> None:
    # Our own addresses may be local ones (pushsvc@localhost); they only have to fit ASCII headers.
    local, at, domain = address.rpartition("@")
    if not (at and local and domain and address.isascii() and address.isprintable()) or any(
        ch.isspace() or ch in '<>,"' for ch in address
    ):
        raise ValueError(f"{setting} must be a plain ASCII e-mail address")


def encode_text(text: str) -> str:
    """Unstructured header text (Subject): itself if plain printable ASCII, else RFC 2047 words."""
    text = " ".join(text.split())  # also drops CR/LF: nothing supplied can start a new header
    if _is_plain_ascii(text):
        return text
    return _encoded_words(text)


def encode_phrase(text: str) -> str:
    """A display name: itself if only atext, a quoted string if other printable ASCII, else RFC 2047 words."""
    text = " ".join(text.split())
    if _ATEXT_PHRASE.fullmatch(text):
        return text
    if _is_plain_ascii(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _encoded_words(text)


def _is_plain_ascii(text: str) -> bool:
    # "=?" could be mistaken for the start of an encoded word; the length keeps lines under 998.
    return text.isascii() and text.isprintable() and "=?" not in text and len(text) <= _PLAIN_MAX


def _encoded_words(text: str) -> str:
    """B-encoded UTF-8 words split between characters (never inside one), folded one per line."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        raw = char.encode("utf-8")
        if len(chunk) + len(raw) > _ENCODED_WORD_BYTES:
            words.append(_encoded_word(chunk))
            chunk.clear()
        chunk += raw
    if chunk:
        words.append(_encoded_word(chunk))
    return "\r\n ".join(words)


def _encoded_word(raw: bytes | bytearray) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(raw, newline=False).decode('ascii')}?="


def _base64_lines(raw: bytes) -> bytes:
    encoded = binascii.b2a_base64(raw, newline=False)
    return b"".join(encoded[i : i + _B64_LINE] + b"\r\n" for i in range(0, len(encoded), _B64_LINE))


def _base64_body(text: str) -> bytes:
    return _base64_lines(text.encode("utf-8"))


@lru_cache(maxsize=_CACHE_SIZE)
def _qr_body(short_url: str) -> bytes:
    """The QR of a policy's short link as a base64 MIME body: once per policy, for every locale."""
    return _base64_lines(qr_png(short_url))


class _Layout:
    """One policy × locale, rendered with markers and laid out as bytes, ready to personalise."""

    __slots__ = ("subject", "head", "text", "html", "part_text", "part_html", "tail", "anonymous", "qr_cid",
                 "qr_body")

    def __init__(self, subject: str, text: str, html_body: str, from_header: str, locale: str, qr_cid: str,
                 qr_body: bytes, unsubscribable: bool) -> None:
        # Two unrelated boundaries: neither may begin the other's delimiter line. "=_" can't occur in base64.
        boundary, related = (f"=_pushsvc_{secrets.token_hex(12)}" for _ in range(2))
        self.subject = " ".join(subject.split())  # as the Subject header carries it
        self.qr_cid = qr_cid
        self.qr_body = qr_body
        self.head = (
            f"From: {from_header}\r\n"
            f"Subject: {encode_text(subject)}\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
            + ("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if unsubscribable else "")
        ).encode("ascii")
        self.part_text = (
            f'\r\n--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode("ascii")
        self.part_html = (
            f'--{boundary}\r\nContent-Type: multipart/related; boundary="{related}"; type="text/html"\r\n\r\n'
            f'--{related}\r\nContent-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode("ascii")
        self.tail = b"".join((
            f"--{related}\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
            f'Content-ID: <{qr_cid}>\r\nContent-Disposition: inline; filename="qr.png"\r\n\r\n'.encode("ascii"),
            qr_body,
            f"--{related}--\r\n--{boundary}--\r\n".encode("ascii"),
        ))
        # Bodies are canonical text: CRLF line ends before encoding (RFC 2046).
        self.text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        self.html = html_body.replace("\r\n", "\n").replace("\n", "\r\n")
        # The greeting for a subscriber without a name (the templates fall back to zh-CN, so does it).
        self.anonymous = words(locale if locale in get_args(Locale) else DEFAULT_LOCALE).gettext("subscriber")


class EmailChannel(Channel):
    """The e-mail channel.

    `EmailChannel(settings, renderer, signer)`: SMTP host, port, TLS, login and pool size come from
    `settings.smtp_*`; links from `settings.public_url` and `settings.unsubscribe_mailto`; the
    renderer reads `templates/email/<kind>.<locale>.{subject.txt,txt,html}`; the signer mints the
    unsubscribe tokens. Call `start()` before `send()` and `close()` at shutdown; connections open
    lazily on first use and are reopened after they drop.
    """

    name: ClassVar[str] = "email"

    def __init__(self, settings: Settings, renderer: Renderer, signer: TokenSigner) -> None:
        if settings.smtp_tls and settings.smtp_starttls:
            raise ValueError("PUSHSVC_SMTP_TLS and PUSHSVC_SMTP_STARTTLS are exclusive: pick one")
        self._settings = settings
        self._renderer = renderer
        self._signer = signer
        display, sender = parseaddr(settings.smtp_from)
        _check_configured_address("PUSHSVC_SMTP_FROM", sender)
        if settings.unsubscribe_mailto:
            _check_configured_address("PUSHSVC_UNSUBSCRIBE_MAILTO", settings.unsubscribe_mailto)
        if not settings.public_url.isascii():  # it goes into ASCII headers; use the punycode form
            raise ValueError("PUSHSVC_PUBLIC_URL must be ASCII")
        self._sender = sender
        self._from_header = f"{encode_phrase(display)} <{self._sender}>" if display else self._sender
        self._msgid_domain = sender.rpartition("@")[2]
        self._bounce_domain = bounce_domain(settings)
        # Unguessable per process, so no department text can contain (and hijack) a marker.
        nonce = secrets.token_hex(8)
        self._name_marker = f"PUSHSVCNAME{nonce}"
        self._unsub_marker = f"PUSHSVCUNSUB{nonce}"
        self._layouts: OrderedDict[tuple[int, str, str], _Layout] = OrderedDict()
        self._pool: asyncio.Queue[_Connection] | None = None
        self._pace = ProviderPace(settings.redis_url, "smtp", settings.smtp_per_second)

    @staticmethod
    def address(contacts: HasContacts) -> str | None:
        return contacts.email or None

    def preview(self, message: Message, locale: str) -> dict[str, Any]:
        layout = self._layout(message, locale)
        shown = {self._name_marker: "{recipient_name}", self._unsub_marker: "{unsubscribe_url}"}
        text, html_body = layout.text, layout.html
        for marker, placeholder in shown.items():
            text, html_body = text.replace(marker, placeholder), html_body.replace(marker, placeholder)
        image = {"content_id": layout.qr_cid, "content_type": "image/png", "filename": "qr.png",
                 "data": layout.qr_body.replace(b"\r\n", b"").decode("ascii")}
        return {"subject": layout.subject, "text": text, "html": html_body, "inline_images": [image]}

    async def start(self) -> None:
        if self._pool is None:
            self._pool = asyncio.Queue()
            for _ in range(self._settings.smtp_connections):
                self._pool.put_nowait(_Connection(self._settings))
            await self._pace.start()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Taking every connection back waits for in-flight messages to finish first.
        connections = [await pool.get() for _ in range(self._settings.smtp_connections)]
        await asyncio.gather(*(c.quit() for c in connections))
        await self._pace.close()

    # -- composing -----------------------------------------------------------------------------

    def _layout(self, message: Message, locale: str) -> _Layout:
        key = (message.key, message.version, locale)
        layout = self._layouts.get(key)
        if layout is not None:
            self._layouts.move_to_end(key)
            return layout
        qr_cid = f"qr.{message.key.replace(':', '.')}.{secrets.token_hex(6)}@{self._msgid_domain}"
        context = message.fields_for("email") | {"qr_image": f"cid:{qr_cid}"}
        # The subject is the same for everyone: rendered without recipient values, so a template
        # that tried to use them fails loudly instead of leaking a marker.
        subject = self._renderer.render(message.kind, self.name, "subject.txt", locale, context)
        context.update(recipient_name=self._name_marker, unsubscribe_url=self._unsub_marker)
        layout = _Layout(
            subject,
            self._renderer.render(message.kind, self.name, "txt", locale, context),
            self._renderer.render(message.kind, self.name, "html", locale, context),
            self._from_header,
            locale,
            qr_cid,
            _qr_body(message.link_for("qr")),
            message.to_subscriber,
        )
        self._layouts[key] = layout
        if len(self._layouts) > _CACHE_SIZE:
            self._layouts.popitem(last=False)
        return layout

    def compose(self, message: Message, recipient: Recipient, to: str, date: str) -> tuple[str, bytes]:
        """(Message-ID, the exact bytes to transmit) for one recipient at envelope address `to`
        (from `envelope_address`) with RFC 5322 `date`. Cheap after the first call per policy
        version × locale; raises RenderError if the templates can't be rendered."""
        layout = self._layout(message, recipient.locale)
        name = " ".join((recipient.name or "").split())
        message_id = f"<{message.key.replace(':', '.')}.d{recipient.delivery_id}.{secrets.token_hex(6)}@{self._msgid_domain}>"
        unsub_url, list_unsub = "", ""
        if message.to_subscriber:
            token = unsubscribe_token(self._signer, recipient.subscriber_id, self.name)
            unsub_url = f"{self._settings.public_url}/u/{token}"
            list_unsub = f"List-Unsubscribe: <{unsub_url}>"
            if self._settings.unsubscribe_mailto:
                list_unsub += f",\r\n <mailto:{self._settings.unsubscribe_mailto}?subject=unsubscribe-{token}>"
            list_unsub += "\r\n"
        to_header = f"{encode_phrase(name)} <{to}>" if name else to
        shown_name = name or layout.anonymous
        text = layout.text.replace(self._name_marker, shown_name).replace(self._unsub_marker, unsub_url)
        html_body = layout.html.replace(self._name_marker, html.escape(shown_name)).replace(
            self._unsub_marker, html.escape(unsub_url)
        )
        headers = f"To: {to_header}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n{list_unsub}"
        data = b"".join(
            (
                layout.head,
                headers.encode("ascii"),
                layout.part_text,
                _base64_body(text),
                layout.part_html,
                _base64_body(html_body),
                layout.tail,
            )
        )
        return message_id, data

    # -- sending -------------------------------------------------------------------------------

    async def send(self, message: Message, recipients: list[Recipient], deadline: float | None = None,
                   report: Report = no_report) -> list[Outcome]:
        pool = self._pool
        if pool is None:
            raise RuntimeError("EmailChannel.send() called before start()")
        # Render every locale first: a template error stops the batch before anything is sent.
        for locale in {r.locale for r in recipients}:
            self._layout(message, locale)
        date = format_datetime(now())
        outcomes: list[Outcome] = []
        pending = iter(recipients)
        # Once the server can't be reached, the rest of the batch is deferred at once instead of
        # each recipient waiting out its own connect timeout.
        unreachable: list[str] = []
        # No message starts, and no slot of the shared pace is waited for, after the deadline.
        until = send_deadline(self._settings) if deadline is None else deadline

        async def lane() -> None:
            for recipient in pending:  # lanes share one iterator: each takes the next recipient
                outcome = await self._deliver(pool, message, recipient, date, unreachable, until)
                report(outcome)
                outcomes.append(outcome)

        await asyncio.gather(*(lane() for _ in range(min(len(recipients), self._settings.smtp_connections))))
        return outcomes

    def _return_path(self, message: Message, recipient: Recipient) -> str:
        """The envelope sender: a VERP address naming this message's record (`pushsvc bounces`
        reads it back), or From's address for a message with no record (a case alert)."""
        record = ledger_of(message.kind, recipient.delivery_id, recipient.subscriber_id)
        if record is None:
            return self._sender
        return return_path(self._settings.secret_key, self._bounce_domain, *record)

    async def _deliver(
        self,
        pool: asyncio.Queue[_Connection],
        message: Message,
        recipient: Recipient,
        date: str,
        unreachable: list[str],
        deadline: float,
    ) -> Outcome:
        address = self.address(recipient)
        if address is None:
            return Outcome(recipient.delivery_id, "failed", "no e-mail address")
        to = envelope_address(address)
        if to is None:
            return Outcome(recipient.delivery_id, "failed", "invalid e-mail address")
        if unreachable:
            return Outcome(recipient.delivery_id, "retry", unreachable[0])
        message_id, data = self.compose(message, recipient, to, date)
        connection = await pool.get()
        try:
            if asyncio.get_running_loop().time() >= deadline:
                return Outcome(recipient.delivery_id, "untried", "the job's send budget ran out")
            # The slot is taken with a connection ready to send: a slot must pass neither waiting for a
            # connection nor opening one (the provider counts messages as they arrive).
            await connection.ready()
            later = await self._pace.turn(deadline - asyncio.get_running_loop().time())
            if later is not None:
                return Outcome(recipient.delivery_id, "held", "SMTP rate limit reached", not_before=later)
            status, reply = await connection.send(self._return_path(message, recipient), to, data)
        except _Unreachable as exc:
            unreachable.append(str(exc)[:_ERROR_MAX])
            return Outcome(recipient.delivery_id, "retry", unreachable[0])
        except asyncio.CancelledError:
            connection.drop()  # cut off mid-command (the send step's cutoff): the session is unusable
            raise
        finally:
            pool.put_nowait(connection)
        if status == "sent":
            return Outcome(recipient.delivery_id, "sent", provider_ref=message_id)
        return Outcome(recipient.delivery_id, status, reply[:_ERROR_MAX])


class _Unreachable(Exception):
    """Connecting, TLS or logging in failed: the server is the problem, not any recipient."""


class _Connection:
    """One pooled SMTP session: opened on first use, reopened after it drops. One message at a time."""

    def __init__(self, settings: Settings) -> None:
        self._smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,  # explicit: never an opportunistic upgrade we didn't ask for
            timeout=settings.smtp_timeout,
        )
        self._last_used = 0.0

    async def ready(self) -> aiosmtplib.SMTP:
        smtp = self._smtp
        if smtp.is_connected and time.monotonic() - self._last_used > _IDLE_PROBE_SECONDS:
            # Servers close idle sessions; find out now rather than by failing a message.
            try:
                await smtp.noop()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
        if not smtp.is_connected:
            try:
                await smtp.connect()
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise _Unreachable(str(exc) or type(exc).__name__) from exc
        self._last_used = time.monotonic()  # known alive just now: no probe before the send that follows
        return smtp

    async def send(self, sender: str, to: str, data: bytes) -> tuple[OutcomeStatus, str]:
        """("sent", reply) when accepted, else ("retry" | "failed", reason); raises _Unreachable."""
        smtp = await self.ready()
        try:
            _, reply = await smtp.sendmail(sender, [to], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            return _by_code(refusal.code, refusal.message)
        except (aiosmtplib.SMTPHeloError, aiosmtplib.SMTPSenderRefused) as exc:
            # Our greeting or our sender address was refused: not this recipient's fault.
            self._smtp.close()
            return "retry", f"{exc.code} {exc.message}"
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing this session
                self._smtp.close()
            return _by_code(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:  # disconnects, timeouts
            self._smtp.close()
            return "retry", str(exc) or type(exc).__name__
        except Exception as exc:  # one recipient must never sink the batch
            log.exception("unexpected error sending e-mail")
            self._smtp.close()
            return "retry", f"{type(exc).__name__}: {exc}"
        self._last_used = time.monotonic()
        return "sent", reply

    def drop(self) -> None:
        """Close the session without a word to the server (reopened on next use)."""
        self._smtp.close()

    async def quit(self) -> None:
        if not self._smtp.is_connected:
            return
        try:
            await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._smtp.close()


def _by_code(code: int, reply: str) -> tuple[OutcomeStatus, str]:
    return ("failed" if 500 <= code < 600 else "retry"), f"{code} {reply}"
