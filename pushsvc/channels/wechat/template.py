"""Official Account template messages to a person's openid: fields, limits, and what a reply means.

The fields a template has belong to the template approved for the account
(PUSHSVC_WECHAT_TEMPLATE_ID), so they are listed in our template files, one `name: value` a
line (`templates/wechat/<kind>.<locale>.fields.txt`). Values are cut to the platform's 20
characters.
"""

from __future__ import annotations

import re
from typing import Any

from pushsvc.channels.wechat.http import Reply
from pushsvc.core.messages import Outcome
from pushsvc.core.rendering import RenderError

FIELD_MAX_CHARS = 20
ELLIPSIS = "…"

# The access token was refused (invalid, not the latest, expired): refresh it and send again.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# The account's daily template message quota is spent ("reach max api daily quota limit"): nothing
# more goes out before local midnight (the channel holds the messages until then).
QUOTA_ERRCODE = 45009
# The recipient can't be reached this way, now or later.
PERMANENT_ERRCODES = {
    40003: "invalid openid",
    43004: "the user does not follow the official account",
    43101: "the user refused messages from the official account",
}

_FIELD_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_]{0,31})\s*:\s?(.*)")


class FieldsError(RenderError):
    """A fields template produced a line that is not `name: value`."""


def cut_chars(value: str, limit: int = FIELD_MAX_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - len(ELLIPSIS)] + ELLIPSIS


def parse_fields(text: str) -> dict[str, dict[str, str]]:
    """The template message `data` from a rendered fields template. The context it was rendered
    with must hold single-line strings only, so no supplied text can add a line of its own."""
    data: dict[str, dict[str, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _FIELD_LINE.fullmatch(line.strip())
        if match is None:
            raise FieldsError(f"line {number} is not 'name: value'")
        data[match[1]] = {"value": cut_chars(match[2].strip())}
    if not data:
        raise FieldsError("no fields")
    return data


def template_body(template_id: str, url: str, data: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Everything but `touser`, which is added per recipient."""
    return {"template_id": template_id, "url": url, "data": data}


def template_outcome(delivery_id: int, reply: Reply) -> Outcome:
    """0 sent (provider_ref: msgid); the recipient's permanent refusals failed; the rest retried
    (system busy -1, a minute's quota 45011, unknown codes: the ledger bounds the attempts). The
    day's quota (QUOTA_ERRCODE) is the channel's to hold."""
    if reply.errcode == 0:
        return Outcome(delivery_id, "sent", provider_ref=str(reply.data.get("msgid", "")) or None)
    if reply.errcode in PERMANENT_ERRCODES:
        return Outcome(delivery_id, "failed", f"{reply.errcode} {PERMANENT_ERRCODES[reply.errcode]}")
    return Outcome(delivery_id, "retry", reply.reason)
