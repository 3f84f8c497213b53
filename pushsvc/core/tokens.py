"""Signed, URL-safe tokens for public links (unsubscribe, confirm, manage, case pages).

A token is `<body>.<mac>`: `body` is base64url JSON `[payload]` or `[payload, expires_epoch]`, `mac`
a truncated HMAC-SHA256 over the purpose and the body. Binding the purpose into the MAC means a
token minted for one kind of link is worthless as another. Nothing is stored server-side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

_MAC_BYTES = 16  # 128 bits: ample against forgery, keeps links short
_KEY_LABEL = b"pushsvc/tokens/v1"  # derive our own key so secret_key can serve other uses too
UNSUBSCRIBE = "unsub"


class BadToken(Exception):
    """`invalid`: forged, damaged or meant for another purpose; `expired`: genuine but too old."""

    def __init__(self, reason: Literal["invalid", "expired"]) -> None:
        super().__init__(f"token {reason}")
        self.reason: Literal["invalid", "expired"] = reason


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs and verifies tokens with one secret. `clock` (epoch seconds) is replaceable for tests."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock

    def _mac(self, purpose: str, body: str) -> bytes:
        # The NUL separates purpose from body so ("ab", "c…") and ("a", "bc…") can't collide.
        msg = purpose.encode("utf-8") + b"\x00" + body.encode("ascii")
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, purpose: str, payload: dict[str, Any], ttl: timedelta | None = None) -> str:
        """A token carrying `payload` (JSON-serialisable) for `purpose`; without `ttl` it never expires."""
        envelope: list[Any] = [payload]
        if ttl is not None:
            envelope.append(math.ceil(self._clock() + ttl.total_seconds()))
        body = _b64encode(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return f"{body}.{_b64encode(self._mac(purpose, body))}"

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload of a genuine, unexpired token for `purpose`; otherwise raises BadToken."""
        body, sep, mac_text = token.partition(".")
        if not sep or not body.isascii() or not mac_text.isascii():
            raise BadToken("invalid")
        try:
            mac = _b64decode(mac_text)
        except (binascii.Error, ValueError):
            raise BadToken("invalid") from None
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            raise BadToken("invalid")
        # Past the MAC the body is ours, but a shape check keeps an old format from surprising us.
        try:
            envelope = json.loads(_b64decode(body))
        except (binascii.Error, ValueError):
            raise BadToken("invalid") from None
        if not isinstance(envelope, list) or not 1 <= len(envelope) <= 2 or not isinstance(envelope[0], dict):
            raise BadToken("invalid")
        if len(envelope) == 2 and self._clock() > envelope[1]:
            raise BadToken("expired")
        return envelope[0]


def unsubscribe_token(signer: TokenSigner, subscriber_id: int, channel: str) -> str:
    """The token in `/u/{token}` links and List-Unsubscribe headers. It never expires: an old
    message's unsubscribe link must keep working (RFC 8058 asks for that too)."""
    return signer.sign(UNSUBSCRIBE, {"s": subscriber_id, "c": channel})


def read_unsubscribe_token(signer: TokenSigner, token: str) -> tuple[int, str]:
    """(subscriber_id, channel) from an unsubscribe token; raises BadToken."""
    payload = signer.verify(UNSUBSCRIBE, token)
    subscriber_id, channel = payload.get("s"), payload.get("c")
    if type(subscriber_id) is not int or not isinstance(channel, str):
        raise BadToken("invalid")
    return subscriber_id, channel
