"""Marking a text as a message of the gettext catalogues (`pushsvc/locale`), for Babel's extractor
to find. The core does no I/O: it keeps msgids, and the page or message that shows one looks it up
in the reader's locale (`pushsvc.i18n`)."""

from __future__ import annotations


def N_(msgid: str) -> str:
    """`msgid` itself: marked for extraction, translated later where it is shown."""
    return msgid
