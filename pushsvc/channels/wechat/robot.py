"""WeCom group robots: the message bodies, their size limits, and what a reply means.

A robot is addressed by its webhook URL, whose `key` query parameter identifies it; the
platform takes at most 20 messages a minute per key (paced by the channel, see ratelimit.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from pushsvc.channels.wechat.http import Reply
from pushsvc.core.messages import Outcome

MARKDOWN_MAX_BYTES = 4096
FOOTER_ROOM = 320  # bytes kept for a footer line: its words and a /u/<token> link
NEWS_TITLE_MAX_BYTES = 128
NEWS_DESCRIPTION_MAX_BYTES = 512
ELLIPSIS = "…"

RATE_LIMITED = 45009
INVALID_KEY = 93000


def robot_key(url: str) -> str | None:
    keys = parse_qs(urlsplit(url).query).get("key", [])
    return keys[0] if keys and keys[0] else None


def cut_bytes(text: str, limit: int, tail: str = ELLIPSIS) -> str:
    """`text` if it fits in `limit` UTF-8 bytes, else its longest head that fits with `tail`
    appended, cut between characters."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(tail.encode("utf-8"))
    if room < 0:
        raise ValueError("the tail alone is longer than the limit")
    # errors="ignore" drops a character the cut went through the middle of.
    return raw[:room].decode("utf-8", errors="ignore") + tail


def markdown_body(content: str, more: str, footer: str = "") -> dict[str, Any]:
    """A markdown message of at most 4,096 bytes: cut when longer, ending with `more` (the link
    to the page) so that a cut message still leads to the whole text. A `footer` (a subscriber's
    own unsubscribe line) follows, cut or not; the room kept for it is fixed, so that a message is
    cut at the same place whatever its footer's length and a preview shows the cut that is sent."""
    room = max(FOOTER_ROOM, len(footer.encode("utf-8"))) if footer else 0
    return {"msgtype": "markdown", "markdown": {"content": cut_bytes(content, MARKDOWN_MAX_BYTES - room, more) + footer}}


def news_body(title: str, description: str, url: str, picurl: str) -> dict[str, Any]:
    article = {
        "title": cut_bytes(title, NEWS_TITLE_MAX_BYTES),
        "description": cut_bytes(description, NEWS_DESCRIPTION_MAX_BYTES),
        "url": url,
        "picurl": picurl,
    }
    return {"msgtype": "news", "news": {"articles": [article]}}


def robot_outcome(delivery_id: int, reply: Reply) -> Outcome:
    """0 sent; 93000 (the key is invalid) failed for good; anything else, 45009 (too many
    messages) included, is retried: unknown codes are bounded by the ledger's attempts."""
    if reply.errcode == 0:
        return Outcome(delivery_id, "sent")
    if reply.errcode == INVALID_KEY:
        return Outcome(delivery_id, "failed", reply.reason)
    return Outcome(delivery_id, "retry", reply.reason)
