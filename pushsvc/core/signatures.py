"""The `X-Pushsvc-Signature` of a callback post: `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
"<unix seconds>.<body>", keyed by the department's bearer token. A receiver recomputes it from the
body it got and refuses a post whose time is too far from its own clock (a replay); the README
shows how."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Pushsvc-Signature"


def signature(token: str, body: bytes, at: int) -> str:
    """The header's value for `body` posted at `at` (unix seconds)."""
    mac = hmac.new(token.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"

