"""SMS text as a phone shows it, and how many billed parts it takes. Pure: no I/O.

A text is `【sign】content short-link opt-out`: the gateway prepends the signature, the approved
template carries the rest. Mainland gateways send anything with a character outside GSM 03.38
(and `【】` always is) as UCS-2: up to 70 units is one part, a longer text goes in parts of 67
(3 units of each part carry the concatenation header). Units are UTF-16 code units, so a
character outside the Basic Multilingual Plane (an emoji) counts twice, as on the handset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SINGLE_PART_UNITS = 70
MULTI_PART_UNITS = 67
SIGN_OPEN, SIGN_CLOSE = "【", "】"
_SPACES = re.compile(r"\s+")


def length_units(text: str) -> int:
    """UTF-16 code units: what the gateway counts."""
    return len(text.encode("utf-16-le")) // 2


def parts_for(units: int) -> int:
    """Billed parts for a text of `units` UTF-16 units (0 for an empty text)."""
    if units <= SINGLE_PART_UNITS:
        return 1 if units else 0
    return -(-units // MULTI_PART_UNITS)


def max_units(parts: int) -> int:
    """The longest text that still fits in `parts` parts."""
    return SINGLE_PART_UNITS if parts == 1 else parts * MULTI_PART_UNITS


def one_line(text: str) -> str:
    """Runs of whitespace (line breaks included) become one space: an SMS is one paragraph."""
    return _SPACES.sub(" ", text).strip()


def signature(sign_name: str) -> str:
    return f"{SIGN_OPEN}{sign_name}{SIGN_CLOSE}"


def assemble(sign_name: str, content: str, short_url: str, opt_out: str) -> str:
    """The whole text a phone receives. Must agree with the approved template the gateway fills
    in (`${content} ${url} ${opt_out}`) after the signature."""
    return signature(sign_name) + " ".join(p for p in (one_line(content), short_url, opt_out) if p)


@dataclass(frozen=True)
class SmsText:
    text: str
    chars: int  # UTF-16 units, the signature included
    parts: int

    @classmethod
    def of(cls, text: str) -> SmsText:
        units = length_units(text)
        return cls(text, units, parts_for(units))
