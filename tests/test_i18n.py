"""The words in the gettext catalogues: every message Babel extracts from the sources and the web
templates (babel.cfg) is in each locale's catalogue with a translation whose placeholders match,
the catalogues hold nothing the code no longer says, the .pot is current; and the pages come out
in each locale with that locale's words."""

from __future__ import annotations

from typing import get_args

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from pushsvc.core.models import Locale
from pushsvc.i18n import LOCALE_DIR, catalogue_path, words
from pushsvc.settings import REPO_ROOT
from tests.conftest import Api

LOCALES: tuple[str, ...] = get_args(Locale)
Key = tuple[str | None, str]  # (msgctxt, msgid)


def _key(message: Message) -> Key:
    msgid = message.id if isinstance(message.id, str) else message.id[0]
    return message.context, msgid


@pytest.fixture(scope="module")
def extracted() -> dict[Key, set[str]]:
    """What Babel finds in the sources and templates, with where."""
    with (REPO_ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[Key, set[str]] = {}
    for filename, _, msgid, _, context in extract_from_dir(str(REPO_ROOT), method_map, options_map):
        found.setdefault((context, msgid if isinstance(msgid, str) else msgid[0]), set()).add(filename)
    return found


def _catalogue(locale: str) -> Catalog:
    with catalogue_path(locale).open("rb") as po:
        return read_po(po, locale=locale.replace("-", "_"))


@pytest.mark.parametrize("locale", LOCALES)
def test_every_extracted_message_is_translated(locale: str, extracted: dict[Key, set[str]]) -> None:
    catalogue = _catalogue(locale)
    held = {_key(m): m for m in catalogue if m.id}
    missing = {key: sorted(where) for key, where in extracted.items() if key not in held}
    assert not missing, f"not in {catalogue_path(locale)}: {missing}"
    untranslated = [key for key, m in held.items()
                    if m.fuzzy or not all(m.string if isinstance(m.string, tuple) else (m.string,))]
    assert not untranslated, f"empty or fuzzy in {locale}: {untranslated}"
    stale = [key for key in held if key not in extracted]
    assert not stale, f"no longer in the code, still in {locale}: {stale}"
    # Babel's own checks: the %(name)s placeholders of each translation are the msgid's.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalogue.check()]
    assert not problems, problems


def test_the_catalogue_template_is_current(extracted: dict[Key, set[str]]) -> None:
    with (LOCALE_DIR / "pushsvc.pot").open("rb") as pot:
        template = {_key(m) for m in read_po(pot) if m.id}
    assert template == set(extracted), "run the pybabel extract of babel.cfg"


def test_english_translates_to_itself_and_plurals_count() -> None:
    en, hk = words("en"), words("zh-HK")
    assert en.gettext("Paused") == "Paused" and hk.gettext("Paused") == "已暫停"
    tries = ("That code is not right: %(num)s more try.", "That code is not right: %(num)s more tries.")
    assert en.ngettext(*tries, 1) == "That code is not right: 1 more try."
    assert en.ngettext(*tries, 3) == "That code is not right: 3 more tries."
    assert hk.ngettext(*tries, 3) == "驗證碼不正確，還可以再試 3 次。"
    # One English text, two translations told apart by their context.
    assert words("zh-CN").pgettext("admin", "E-mail") == "邮件" and words("zh-CN").gettext("E-mail") == "电子邮件"


# The subscribe and manage pages in each locale: headings, labels from the templates (i18n
# extension) and from Python (channel and frequency labels), the figures filled in from the code.
PAGE_WORDS = {
    "zh-CN": ["订阅政策推送", "您的身份（可多选）", "短信", "每日摘要", "开始时间", "姓名或单位名称（选填）"],
    "zh-HK": ["訂閱政策推送", "您的身份（可多選）", "短訊", "每日摘要", "開始時間", "姓名或單位名稱（選填）"],
    "en": ["Subscribe to policy updates", "Who you are (choose one or more)", "SMS", "A daily digest", "From",
           "Your name or your organisation's (optional)"],
}
MANAGE_WORDS = {
    "zh-CN": "我们会向邮箱发送管理链接（60 分钟内有效），或向手机发送验证码（10 分钟内有效）。",
    "zh-HK": "我們會向郵箱發送管理連結（60 分鐘內有效），或向手機發送驗證碼（10 分鐘內有效）。",
    "en": "We send a link to an e-mail address (valid for 60 minutes) or a code to a phone (valid for 10 minutes).",
}


@pytest.mark.parametrize("locale", LOCALES)
async def test_pages_render_in_each_locale(api: Api, locale: str) -> None:
    async with api.session.get(f"{api.base}/subscribe?lang={locale}") as resp:
        html = (await resp.text()).replace("&#39;", "'")
    assert resp.status == 200 and f'<html lang="{locale}">' in html
    assert all(w in html for w in PAGE_WORDS[locale]), [w for w in PAGE_WORDS[locale] if w not in html]
    others = [w for other in LOCALES if other != locale for w in PAGE_WORDS[other][:2]]
    assert not any(w in html for w in others)
    async with api.session.get(f"{api.base}/manage?lang={locale}") as resp:
        assert resp.status == 200 and MANAGE_WORDS[locale] in await resp.text()
