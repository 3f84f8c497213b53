"""The bounce receiver (`pushsvc bounces`): an SMTP server for the return paths' domain.

Mail servers send what they can't deliver, and robots their auto-replies, to a message's envelope
sender, which is a VERP address of ours (`bounces+<token>@<PUSHSVC_BOUNCE_DOMAIN>`). Point the
domain's MX at this server (or relay it there). It accepts mail only for genuine return paths (any
other recipient is refused at RCPT, so it is nobody's open mailbox), reads each message
(`pushsvc.delivery.bounces`) and answers 250 once its effect is written, or 451 when the database
can't be reached, so the sending server tries again later (applying a bounce twice changes
nothing). An SMTP server rather than a mailbox read over IMAP: nothing to poll, no mailbox to
empty, and a failure to record is the sender's to retry.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from pushsvc.channels.email import bounce_domain
from pushsvc.core.dsn import read_return_path
from pushsvc.delivery.bounces import apply_bounce
from pushsvc.settings import Settings
from pushsvc.store.db import Database

log = logging.getLogger(__name__)

# DSNs carry the original message (or its headers); a bounce larger than this is not one of ours.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_NOT_OURS = "550 5.1.1 no such return path"
_TRY_LATER = "451 4.3.0 cannot record this now, try again later"


class BounceHandler:
    """aiosmtpd's hooks: refuse recipients that are not our return paths, apply what comes."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._domain = bounce_domain(settings)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if read_return_path(self._settings.secret_key, self._domain, address) is None:
            return _NOT_OURS
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            for address in envelope.rcpt_tos:
                await apply_bounce(self._db, self._settings, address, raw)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("bounce receiver: could not record a bounce (%s); the sender will retry", type(exc).__name__)
            return _TRY_LATER
        return "250 OK"


async def start_bounce_server(settings: Settings, db: Database, host: str, port: int) -> asyncio.Server:
    """The receiver listening on host:port (port 0: any free one) in the running loop."""
    handler = BounceHandler(settings, db)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname=bounce_domain(settings), data_size_limit=MAX_MESSAGE_BYTES,
                     ident="pushsvc bounces"),
        host=host, port=port,
    )


async def serve_bounces(settings: Settings, host: str, port: int) -> None:
    """Run the receiver until cancelled."""
    # aiosmtpd logs every command at INFO; the outcome of each bounce is what an operator needs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    db = Database(settings.database_url)
    server = await start_bounce_server(settings, db, host, port)
    log.info("bounce receiver on %s:%d for bounces+…@%s", host, port, bounce_domain(settings))
    try:
        async with server:
            await server.serve_forever()
    finally:
        await db.close()
