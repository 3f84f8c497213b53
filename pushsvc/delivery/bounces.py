"""What comes back saying a contact is gone, applied to the ledgers and the suppression list.

- An e-mail to a message's return path (`pushsvc bounces` receives it): a DSN's hard failure
  (Action failed, Status 5.x.x) moves the message's rows from `sent` or `delivered` to `failed`
  with the status as error, and suppresses the address; a spam complaint (an RFC 5965 feedback
  report) suppresses it; a delay, a 4.x.x, a success notice or an auto-reply changes nothing. The
  same DSN twice changes things once.
- A provider's answer at send time: WeChat's 43101 (the user refused the account's messages), a
  number the SMS gateway calls illegal, an SMTP 5.1.x (no such mailbox or domain).
- An SMS delivery receipt saying the number is empty or invalid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels.email import bounce_domain
from pushsvc.core.clock import now
from pushsvc.core.dsn import parse, read_return_path
from pushsvc.core.identifiers import ascii_email, mask_email, normalise_phone
from pushsvc.core.messages import Outcome, Recipient
from pushsvc.core.verification import ContactKeys
from pushsvc.services import Services
from pushsvc.settings import Settings
from pushsvc.store.callbacks import receipt_events
from pushsvc.store.db import Database
from pushsvc.store.receipts import Receipt
from pushsvc.store.suppressions import ContactKind, Reason, add, bounced_address, fail_bounced

log = logging.getLogger(__name__)

# Codes meaning the number does not exist or can't take messages: the providers' answers at send
# time (Aliyun's and ours isv.MOBILE_NUMBER_ILLEGAL, Tencent's IncorrectPhoneNumber) and the
# operators' receipt codes for an empty (空号) or unknown number, as Aliyun's SmsReport err_code and
# Tencent's report_status errmsg carry them through.
INVALID_NUMBER_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "InvalidParameterValue.IncorrectPhoneNumber", "MN:0001", "MK:0001", "EMPTY",
    "UNKNOWN", "空号",
})
WECHAT_REFUSED = "43101"
# SMTP enhanced status codes of a mailbox or domain that does not exist (RFC 3463, RFC 7505).
_NO_MAILBOX = ("5.1.1", "5.1.2", "5.1.10")


async def apply_bounce(db: Database, settings: Settings, return_path: str, raw: bytes) -> None:
    """A message that came to `return_path` (one of ours, or it is ignored), applied."""
    found = read_return_path(settings.secret_key, bounce_domain(settings), return_path)
    if found is None:
        return
    ledger, record_id = found
    bounce = parse(raw)
    if bounce.verdict == "complaint":  # delivered, and unwanted: nothing more to that address
        async with db.write() as conn:
            address = await bounced_address(conn, ledger, record_id)
            if address:
                await add(conn, ContactKeys(settings.secret_key), "email", [address], "complaint", "abuse", now())
        return
    if bounce.verdict != "hard":
        log.info("bounce receiver: %s for %s%d, nothing changes", bounce.verdict, ledger, record_id)
        return
    at = now()
    async with db.write() as conn:
        address = await bounced_address(conn, ledger, record_id)
        failed = await fail_bounced(conn, ledger, record_id, f"bounced: {bounce.status}", at)
        if failed is not None:  # integrations hear of it as of a receipt saying failed
            await receipt_events(conn, "email", [failed], at)
        # The DSN names the address it is about: if the record's address changed since, the new
        # one did not bounce.
        if address and (bounce.recipient is None or _same_address(address, bounce.recipient)):
            await add(conn, ContactKeys(settings.secret_key), "email", [address], "hard_bounce", bounce.status, at)
            log.info("bounce receiver: %s bounced (%s)", mask_email(address), bounce.status)


def _same_address(held: str, reported: str) -> bool:
    try:
        return ascii_email(held).lower() == reported.lower()
    except ValueError:
        return False


# -- answers at send time ----------------------------------------------------------------------------


def _refusal(channel: str, error: str | None) -> tuple[ContactKind, Reason, str] | None:
    """(kind of contact, reason, the code kept as detail) of a provider's refusal for good, else None."""
    words = (error or "").split(" ")
    code = words[0].rstrip(":")
    if channel == "wechat" and code == WECHAT_REFUSED:
        return "wechat", "wechat_refused", code
    if channel == "sms" and code in INVALID_NUMBER_CODES:
        return "phone", "invalid_number", code
    if channel == "email" and len(words) > 1 and words[1] in _NO_MAILBOX:  # "550 5.1.1 <...>: ..."
        return "email", "hard_bounce", words[1]
    return None


def _contact(kind: ContactKind, recipient: Recipient) -> str | None:
    return {"email": recipient.email, "phone": recipient.phone, "wechat": recipient.wechat_openid}[kind]


async def suppress_refused(svc: Services, channel: str, recipients: Sequence[Recipient],
                           outcomes: Iterable[Outcome]) -> None:
    """Suppress the contacts of a round's recipients whose provider refused them for good."""
    by_id = {r.delivery_id: r for r in recipients}
    found: dict[tuple[ContactKind, Reason, str], set[str]] = {}
    for outcome in outcomes:
        recipient = by_id.get(outcome.delivery_id)
        refusal = _refusal(channel, outcome.error) if outcome.status == "failed" and recipient else None
        contact = _contact(refusal[0], recipient) if refusal and recipient else None
        if refusal and contact:
            found.setdefault(refusal, set()).add(contact)
    if not found:
        return
    at, keys = now(), ContactKeys(svc.settings.secret_key)
    try:
        async with svc.db.write() as conn:
            for (kind, reason, detail), contacts in found.items():
                await add(conn, keys, kind, contacts, reason, detail, at)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        # The round's outcomes matter more; the next refusal suppresses them.
        log.warning("%s: suppressing %d refused contacts failed (%s)", channel, sum(map(len, found.values())),
                    type(exc).__name__)


async def suppress_invalid_numbers(conn: AsyncConnection, secret: str, channel: str, receipts: Sequence[Receipt],
                                   unknown: Iterable[str]) -> None:
    """Within the receipts' transaction: numbers of our messages that a receipt calls empty or invalid."""
    if channel != "sms":
        return
    ours_not = set(unknown)
    numbers: dict[str, set[str]] = {}
    for r in receipts:
        if r.delivered or r.message_id in ours_not or r.error_code not in INVALID_NUMBER_CODES or not r.phone_number:
            continue
        try:
            numbers.setdefault(r.error_code, set()).add(normalise_phone(r.phone_number))
        except ValueError:
            continue
    for code, phones in numbers.items():
        await add(conn, ContactKeys(secret), "phone", phones, "invalid_number", code, now())
