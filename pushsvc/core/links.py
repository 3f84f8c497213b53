"""The public addresses a policy's messages carry: its page and its short links, each naming the
channel whose reader follows it (`?via=`), so that a visit counts under that channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Who followed a link: a message's channel, or a QR code (printed, or the image in an e-mail).
Via = Literal["email", "sms", "wechat", "qr"]  # policies/reading.py's VIA
# The readers who follow a short link, each by a code of its own: an SMS has no room for `?via=`.
# E-mail carries the page's own address.
SHORT_VIAS: tuple[Via, ...] = ("sms", "wechat", "qr")

_POLICY_TARGET = re.compile(r"/p/(\d{1,18})(?:\?via=([a-z]+))?")


def policy_path(policy_id: int) -> str:
    return f"/p/{policy_id}"


def via_path(policy_id: int, via: Via) -> str:
    """The target of the policy's short link for `via`'s readers."""
    return f"{policy_path(policy_id)}?via={via}"


def policy_targets(policy_id: int) -> tuple[str, ...]:
    """Every target a policy's short links stand for: its page, then its page per short-link reader."""
    return (policy_path(policy_id), *(via_path(policy_id, v) for v in SHORT_VIAS))


def policy_target(target: str) -> tuple[int, str | None] | None:
    """(policy id, the `via` it names or None) of a short link's target; None: not a policy's page."""
    found = _POLICY_TARGET.fullmatch(target)
    return (int(found[1]), found[2]) if found else None


def page_url(public_url: str, policy_id: int) -> str:
    return public_url + policy_path(policy_id)


def tagged(url: str, via: str) -> str:
    """`url` (a page's, without a query) as followed from `via`."""
    return f"{url}?via={via}"


def short_url(public_url: str, code: str) -> str:
    """/s/{code}: what SMS, WeChat and QR codes carry."""
    return f"{public_url}/s/{code}"


@dataclass(frozen=True)
class ShortLinks:
    """A policy's short link per short-link reader; "" where none was issued (a policy published
    before they were: its readers get the plain short link, counted as `link`)."""

    sms: str = ""
    wechat: str = ""
    qr: str = ""

    def get(self, via: Via) -> str:
        return getattr(self, via, "") if via in SHORT_VIAS else ""


NO_SHORT_LINKS = ShortLinks()
