"""What came back to a message's return path: a delivery status notification (RFC 3464), an
auto-reply (RFC 3834, and the older habits of vacation programs), or something else; and the VERP
return path itself (`bounces+<token>@<domain>`) that says which message it was about.

Pure parsing with the `email` package. flufl.bounce (GNU Mailman's detectors) was weighed: it
guesses failing addresses out of many non-standard bounce formats but gives neither the DSN's
Status code (which the ledger keeps and which tells hard from soft) nor any help with
auto-replies; and our VERP token already says which message bounced, so its guessing buys nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Literal

# -- the return path (VERP) ------------------------------------------------------------------------

BOUNCE_LOCAL = "bounces"
# Which record a token names: a deliveries row (policies, notices, digests), a case notification,
# or a subscriber (a message with no ledger row: a confirmation or manage link).
Ledger = Literal["d", "c", "s"]
_LEDGERS: frozenset[str] = frozenset({"d", "c", "s"})
_MAC_HEX = 16  # 64 bits: a forged bounce must guess it; keeps the local part well under 64 octets
_KEY_LABEL = b"pushsvc/verp/v1"
# Lower-case only: some mail systems fold the case of local parts.
_TOKEN = re.compile(r"([dcs])([0-9a-f]{1,16})-([0-9a-f]{16})")


def _mac(secret: str, ledger: str, record_id: int) -> str:
    key = hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, f"{ledger}{record_id}".encode("ascii"), hashlib.sha256).hexdigest()[:_MAC_HEX]


def verp_token(secret: str, ledger: Ledger, record_id: int) -> str:
    return f"{ledger}{record_id:x}-{_mac(secret, ledger, record_id)}"


def return_path(secret: str, domain: str, ledger: Ledger, record_id: int) -> str:
    """The envelope sender of one message: `bounces+<token>@domain`."""
    return f"{BOUNCE_LOCAL}+{verp_token(secret, ledger, record_id)}@{domain}"


def read_return_path(secret: str, domain: str, address: str) -> tuple[Ledger, int] | None:
    """(ledger, record id) of a genuine return path of ours at `domain`, else None."""
    local, at, host = address.strip().strip("<>").rpartition("@")
    prefix, plus, token = local.partition("+")
    if not at or host.lower() != domain.lower() or prefix.lower() != BOUNCE_LOCAL or not plus:
        return None
    match = _TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    ledger, record_id = match.group(1), int(match.group(2), 16)
    if ledger not in _LEDGERS or not hmac.compare_digest(match.group(3), _mac(secret, ledger, record_id)):
        return None
    return ledger, record_id  # type: ignore[return-value]  # checked against _LEDGERS


def ledger_of(kind: str, delivery_id: int, subscriber_id: int) -> tuple[Ledger, int] | None:
    """The record a message of `kind` to a recipient is kept in; None for one with nothing to
    record (a case alert to a department)."""
    if kind == "case_update":
        return "c", delivery_id
    if kind in ("confirmation", "manage_link"):
        return ("s", subscriber_id) if subscriber_id else None
    if kind == "case_alert":
        return None
    return "d", delivery_id


# -- what came back --------------------------------------------------------------------------------

Verdict = Literal["hard", "soft", "delivered", "complaint", "auto_reply", "other"]


@dataclass(frozen=True)
class Bounce:
    """`hard`: a permanent failure (Action failed, Status 5.x.x); `soft`: delayed or a 4.x.x, not
    final; `delivered`: a success notice (relayed, expanded, delivered); `complaint`: a mailbox
    provider's feedback report (RFC 5965) that the recipient marked the message as spam; `auto_reply`: someone's
    robot answering (not a bounce); `other`: none of these (a person writing back, a bounce
    format we can't read). `status` is the DSN's Status ("5.1.1"); `recipient` the address it is
    about, lower-cased, when it says."""

    verdict: Verdict
    status: str | None = None
    recipient: str | None = None


_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
_VACATION_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|antwort)|auto:|out of (the )?office|vacation|away from"
    r"|自动回复|自動回覆|自動回復|休假|不在办公室)",
    re.IGNORECASE,
)
_ROBOT_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Vacation")


def parse(raw: bytes) -> Bounce:
    """What `raw` (a whole message as received) tells of the message it answers."""
    msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    # Reports first: they carry Auto-Submitted themselves (RFC 3834).
    if _report_type(msg) == "feedback-report":
        return Bounce("complaint")
    fields = _delivery_status(msg)
    if fields is not None:
        return _judge(fields)
    if _is_auto_reply(msg):
        return Bounce("auto_reply")
    return Bounce("other")


def _delivery_status(msg: Message) -> list[Message] | None:
    """The per-recipient field groups of a multipart/report; report-type=delivery-status, or None."""
    if _report_type(msg) != "delivery-status":
        return None
    for part in msg.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            groups = part.get_payload()
            if isinstance(groups, list) and groups:
                return [g for g in groups[1:] if isinstance(g, Message)]  # the first is per-message
            return []
    return None


def _report_type(msg: Message) -> str | None:
    if msg.get_content_type() != "multipart/report":
        return None
    report_type = msg.get_param("report-type", header="content-type")
    return report_type.lower() if isinstance(report_type, str) else None


def _judge(groups: list[Message]) -> Bounce:
    """The gravest recipient's verdict: hard over soft over delivered (a DSN about one recipient
    is the rule, as we send one recipient per message)."""
    found: list[Bounce] = []
    for group in groups:
        action = (group.get("Action") or "").strip().lower()
        status_match = _STATUS.search(group.get("Status") or "")
        status = status_match.group(0) if status_match else None
        recipient = _address(group.get("Final-Recipient") or group.get("Original-Recipient"))
        if action == "failed" and status and status.startswith("5"):
            found.append(Bounce("hard", status, recipient))
        elif action in ("failed", "delayed"):
            found.append(Bounce("soft", status, recipient))
        elif action in ("delivered", "relayed", "expanded"):
            found.append(Bounce("delivered", status, recipient))
    for verdict in ("hard", "soft", "delivered"):
        for bounce in found:
            if bounce.verdict == verdict:
                return bounce
    return Bounce("other")


def _address(field: str | None) -> str | None:
    """`rfc822; someone@example.com` -> the address, lower-cased."""
    if not field:
        return None
    _, _, address = field.partition(";")
    address = (address or field).strip().strip("<>").lower()
    return address if "@" in address else None


def _is_auto_reply(msg: Message) -> bool:
    submitted = (msg.get("Auto-Submitted") or "no").strip().lower()
    if not submitted.startswith("no"):
        return True
    if any(msg.get(name) is not None for name in _AUTOREPLY_HEADERS):
        return True
    if (msg.get("Precedence") or "").strip().lower() in _ROBOT_PRECEDENCE:
        return True
    return bool(_VACATION_SUBJECT.match(_subject(msg)))


def _subject(msg: Message) -> str:
    raw = msg.get("Subject")
    if raw is None:
        return ""
    try:
        return str(policy.default.header_factory("subject", str(raw)))
    except Exception:  # a malformed encoded word: read what is there
        return str(raw)
