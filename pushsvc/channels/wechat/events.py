"""The XML the platform posts to our server URL, and the passive replies we answer with.

A message is one `<xml>` element of flat children (`ToUserName`, `FromUserName`, `CreateTime`,
`MsgType`, `Event`, `EventKey`, `MsgID`, `Status`, `Encrypt`, ...). Only that shape is read: a
document with a DOCTYPE (entities, external references) is refused before it is parsed.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from pushsvc.channels.wechat.crypto import MessageCrypto, signature

SCENE_PREFIX = "qrscene_"  # a `subscribe` event's EventKey for a follow through a parametric QR code


class BadXml(Exception):
    """Not a message of the platform's shape."""


def fields(xml: bytes | str) -> dict[str, str]:
    """The message's fields by tag, text stripped."""
    raw = xml.encode("utf-8") if isinstance(xml, str) else xml
    if b"<!" in raw.replace(b"<![CDATA[", b""):
        raise BadXml("declarations are not accepted")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise BadXml(f"not well-formed XML ({exc})") from None
    if root.tag != "xml":
        raise BadXml("the root element is not <xml>")
    return {child.tag: (child.text or "").strip() for child in root}


@dataclass(frozen=True)
class Event:
    """One event, as much of it as we act on. `event` is lower-cased (the platform writes both
    `subscribe` and `SCAN`)."""

    account: str  # ToUserName: the account's original id (gh_…), the sender of our reply
    openid: str  # FromUserName: the follower
    event: str
    event_key: str = ""
    msg_id: str = ""  # TEMPLATESENDJOBFINISH: the msgid our template send got back
    status: str = ""  # success | failed:user block | failed: system failed

    @property
    def scene(self) -> str | None:
        """The parametric QR code's scene a `subscribe` or `SCAN` event came through, if any."""
        if self.event == "subscribe" and self.event_key.startswith(SCENE_PREFIX):
            return self.event_key.removeprefix(SCENE_PREFIX) or None
        if self.event == "scan":
            return self.event_key or None
        return None


def event_of(message: dict[str, str]) -> Event | None:
    """The event in a message's fields; None for other messages (text a follower typed, ...)."""
    if message.get("MsgType") != "event":
        return None
    return Event(
        account=message.get("ToUserName", ""),
        openid=message.get("FromUserName", ""),
        event=message.get("Event", "").lower(),
        event_key=message.get("EventKey", ""),
        msg_id=message.get("MsgID", "") or message.get("MsgId", ""),
        status=message.get("Status", ""),
    )


def _cdata(text: str) -> str:
    # "]]>" can't sit inside one CDATA section: end it there and start another.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_openid: str, account: str, content: str, at: int | None = None) -> str:
    """A passive reply: a text message to the follower whose event we are answering."""
    return (f"<xml><ToUserName>{_cdata(to_openid)}</ToUserName><FromUserName>{_cdata(account)}</FromUserName>"
            f"<CreateTime>{int(time.time()) if at is None else at}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
            f"<Content>{_cdata(content)}</Content></xml>")


def encrypted(crypto: MessageCrypto, token: str, message: str, timestamp: str, nonce: str) -> str:
    """`message` as safe mode carries it: encrypted, signed with msg_signature."""
    encrypt = crypto.encrypt(message)
    return (f"<xml><Encrypt>{_cdata(encrypt)}</Encrypt>"
            f"<MsgSignature>{_cdata(signature(token, timestamp, nonce, encrypt))}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>")
