"""Proving a contact belongs to the person at the page: SMS codes, the signed links of the
self-service pages (confirm a subscription, manage it), and keyed digests that let Redis keys and
tokens name a contact without carrying it. Pure: the caller stores and sends.

A code is 6 digits, valid `CODE_TTL`, good for `CODE_ATTEMPTS` tries; only its keyed hash is
stored. A confirmation link names the subscriber and the digest of the e-mail address it was sent
to, so it confirms nothing once the address has changed. A manage link names the subscriber and
which contact received it: the one contact the page may treat as proven.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Literal

from pushsvc.core.tokens import BadToken, TokenSigner

ContactKind = Literal["email", "phone"]
Via = Literal["email", "sms"]  # the channel a proof travels by
CONTACT_KINDS: tuple[ContactKind, ...] = ("email", "phone")
# The channel each provable contact opens; WeChat contacts cannot be proven by us, so a WeChat
# channel comes on with whichever contact the person proves.
CHANNEL_OF: dict[ContactKind, Via] = {"email": "email", "phone": "sms"}
UNPROVABLE_CHANNELS = frozenset({"wechat"})

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
CODE_ATTEMPTS = 5
CONFIRM_TTL = timedelta(hours=48)
MANAGE_TTL = timedelta(hours=1)

CONFIRM_PURPOSE = "confirm"
MANAGE_PURPOSE = "manage"
_KEY_LABEL = b"pushsvc/contacts/v1"


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normal_code(typed: str) -> str | None:
    """The code as typed with spaces and hyphens dropped (people copy '123 456'), or None."""
    code = "".join(ch for ch in typed if ch not in " -\u3000")
    return code if len(code) == CODE_DIGITS and code.isascii() and code.isdigit() else None


class ContactKeys:
    """Keyed digests of contacts: stable for one secret, useless to anyone without it."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()

    def digest(self, contact: str) -> str:
        return hmac.new(self._key, contact.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def code_hash(self, phone: str, code: str) -> str:
        # Bound to the number: a hash seen in Redis says nothing about another number's code.
        return hmac.new(self._key, f"code\x00{phone}\x00{code}".encode(), hashlib.sha256).hexdigest()


def confirm_token(signer: TokenSigner, keys: ContactKeys, subscriber_id: int, email: str) -> str:
    return signer.sign(CONFIRM_PURPOSE, {"s": subscriber_id, "h": keys.digest(email)}, ttl=CONFIRM_TTL)


def read_confirm_token(signer: TokenSigner, token: str) -> tuple[int, str]:
    """(subscriber id, digest of the e-mail address it was sent to); raises BadToken."""
    payload = signer.verify(CONFIRM_PURPOSE, token)
    sid, digest = payload.get("s"), payload.get("h")
    if type(sid) is not int or not isinstance(digest, str):
        raise BadToken("invalid")
    return sid, digest


def manage_token(signer: TokenSigner, keys: ContactKeys, subscriber_id: int, via: ContactKind, contact: str) -> str:
    """Names the contact it was sent to by digest: the page's proof is of that address or number,
    not of whatever the subscriber's e-mail or phone is when the page is saved."""
    return signer.sign(MANAGE_PURPOSE, {"s": subscriber_id, "v": via, "h": keys.digest(contact)}, ttl=MANAGE_TTL)


def read_manage_token(signer: TokenSigner, token: str) -> tuple[int, ContactKind, str]:
    """(subscriber id, the kind of contact the link was sent to, that contact's digest); raises BadToken."""
    payload = signer.verify(MANAGE_PURPOSE, token)
    sid, via, digest = payload.get("s"), payload.get("v"), payload.get("h")
    if type(sid) is not int or via not in CONTACT_KINDS or not isinstance(digest, str):
        raise BadToken("invalid")
    return sid, via, digest
