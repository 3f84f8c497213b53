"""The words people read on the pages and in a few message fields, from one gettext catalogue per
locale: `pushsvc/locale/<zh_CN|zh_HK|en>/LC_MESSAGES/pushsvc.po`, extracted by Babel from the
Python sources and the web templates (`babel.cfg`; `pushsvc/locale/pushsvc.pot` is the template).

msgids are the English source text, the usual gettext choice: code and templates read as they will
show, a translator sees the sentence rather than a key, and `en` translates to itself (its `.po`
still lists every message, so a missing one fails the same test in every locale).

Every msgid is a %-format string with named fields (`%(minutes)s`) and is formatted even without
fields, in Python (`Words`) as in the templates (Jinja's newstyle gettext): a literal percent sign
is written `%%` everywhere. The `.po` files are compiled in memory when a locale is first used, so
there is no `.mo` to build or to forget. A leaf: it imports nothing of pushsvc."""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "pushsvc"
LOCALE_DIR = Path(__file__).parent / "locale"


def catalogue_path(locale: str) -> Path:
    """The `.po` of a locale as the service spells it (zh-CN)."""
    return LOCALE_DIR / locale.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> Translations:
    """The compiled catalogue of `locale` (KeyError for a locale without one)."""
    path = catalogue_path(locale)
    if not path.is_file():
        raise KeyError(f"no catalogue for locale {locale!r}")
    with path.open("rb") as po:
        catalogue = read_po(po, locale=locale.replace("-", "_"), domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalogue)  # fuzzy entries left out: a guess is not a translation
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


class Words:
    """One locale's words for Python code. Babel's extractor finds `.gettext(...)`,
    `.ngettext(...)` and `.pgettext(...)` calls by name, whatever they are called on, and
    `N_(...)` marks a msgid looked up later."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        self._translations = translations(locale)

    def gettext(self, msgid: str, **fields: object) -> str:
        return self._translations.gettext(msgid) % fields

    def ngettext(self, singular: str, plural: str, n: int, **fields: object) -> str:
        """`num` is the count, as in the templates' `{% pluralize %}`."""
        return self._translations.ngettext(singular, plural, n) % {"num": n, **fields}

    def pgettext(self, context: str, msgid: str, **fields: object) -> str:
        """For one English text that needs two translations (`context` tells them apart)."""
        return self._translations.pgettext(context, msgid) % fields


@cache
def words(locale: str) -> Words:
    return Words(locale)
