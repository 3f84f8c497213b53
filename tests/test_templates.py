"""Every message kind's templates, in every channel and locale: rendered with exactly the variables
templates/README.md documents, strict about missing ones, escaping department text in HTML, falling
back to zh-CN, SMS within its parts, and no template file that belongs to no kind. Pure: no servers."""

from __future__ import annotations

import re
import shutil
from dataclasses import fields
from datetime import date, datetime
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest

from pushsvc.channels.email import EmailChannel
from pushsvc.channels.sms import SmsChannel
from pushsvc.channels.wechat.channel import WechatChannel
from pushsvc.channels.wechat.template import parse_fields
from pushsvc.core.links import NO_SHORT_LINKS
from pushsvc.core.messages import PolicyMessage
from pushsvc.core.models import Locale
from pushsvc.core.quiet_hours import LOCAL_ZONE
from pushsvc.core.rendering import DEFAULT_LOCALE, Renderer, RenderError
from pushsvc.core.sms_text import SmsText, assemble
from pushsvc.core.tokens import TokenSigner
from pushsvc.settings import REPO_ROOT, Settings
from pushsvc.store.short_links import LENGTH as SHORT_CODE_LENGTH

TEMPLATES = REPO_ROOT / "templates"
LOCALES: tuple[str, ...] = get_args(Locale)
PARTS = {
    "email": ("subject.txt", "txt", "html"),
    "sms": ("txt",),
    "wechat": ("md", "more.md", "news.txt", "fields.txt"),
}
# These have every part in every channel and locale. The case kinds belong to the case-progress work.
COMPLETE_KINDS = ("policy", "policy_revised", "policy_repealed", "policy_lapsed", "digest", "confirmation")
KNOWN_KINDS = (*COMPLETE_KINDS, "case_update", "case_alert", "manage_link", "answer")  # manage_link, answer: e-mail and SMS
SUBJECT_LACKS = {"recipient_name", "unsubscribe_url"}  # the subject is the same for every recipient
WECHAT_FIELDS = {"thing1", "thing2", "thing3", "time4"}  # the one approved template's fields

PUBLIC = "https://push.example.gov.cn"
SHORT = f"{PUBLIC}/s/{'A' * SHORT_CODE_LENGTH}"
# Department text that must stay inert: never markup in HTML, never template source.
HOSTILE = "<script>alert(1)</script>{{ 7*7 }}"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

renderer = Renderer(TEMPLATES)


# -- what README.md documents ---------------------------------------------------------------------

_SECTION = re.compile(r"^### (\w+)\s*$", re.M)
_BULLET = re.compile(r"^- (.+?):", re.M)


@cache
def documented() -> dict[str, frozenset[str]]:
    """`### name` section → the backticked names on its `- …:` bullets, plus every variable of a
    kind it names in "Every variable of `other`"."""
    text = (TEMPLATES / "README.md").read_text(encoding="utf-8")
    chunks = _SECTION.split(text)[1:]
    sections = dict(zip(chunks[::2], chunks[1::2]))
    found: dict[str, frozenset[str]] = {}

    def names(section: str) -> frozenset[str]:
        if section not in found:
            body = sections[section]
            own = {name for head in _BULLET.findall(body) for name in re.findall(r"`(\w+)`", head)}
            for other in re.findall(r"Every variable of `(\w+)`", body):
                own |= names(other)
            found[section] = frozenset(own)
        return found[section]

    return {section: names(section) for section in sections}


# -- sample contexts: a full one (every optional value given) and a sparse one per kind ------------


def _policy(**values: Any) -> dict[str, Any]:
    message = PolicyMessage(
        policy_id=12, kind="policy", version="1",
        title=f"关于支持中小微企业稳岗扩岗的若干措施{HOSTILE}",
        summary=f"对吸纳就业的中小微企业给予一次性扩岗补助。\n申领时间：2026年12月起。{HOSTILE}",
        department=f"市人力资源和社会保障局{HOSTILE}", domain="employment-entrepreneurship",
        doc_number="穗人社规字〔2026〕3号", page_url=f"{PUBLIC}/p/12", short_url=SHORT,
        source_url="https://example.gov.cn/policy/123", interpretation_url="https://example.gov.cn/jd/123",
        produced_on=date(2026, 11, 20), effective_on=date(2026, 12, 1), expires_on=date(2028, 11, 30),
    )
    return {**vars(message), **values}


_BARE = dict(doc_number=None, source_url=None, interpretation_url=None, produced_on=None, effective_on=None,
             expires_on=None)


def _listed(n: int, **values: Any) -> list[dict[str, Any]]:
    return [{"title": f"第{i}项政策：关于进一步优化营商环境的若干措施{HOSTILE}", "department": f"市发展改革委{HOSTILE}",
             "doc_number": f"穗发改规〔2026〕{i}号", "page_url": f"{PUBLIC}/p/{i}",
             "short_url": f"{PUBLIC}/s/{str(i) * SHORT_CODE_LENGTH}", **values} for i in range(1, n + 1)]


def _digest(**values: Any) -> dict[str, Any]:
    return {"kind": "digest", "version": "1", "title": "每周政策摘要", "period": "weekly",
            "period_start": date(2026, 11, 23), "period_end": date(2026, 11, 29), "policies": _listed(12),
            "digest_url": f"{PUBLIC}/d/abc", "short_url": SHORT, "short_links": NO_SHORT_LINKS, **values}


CONFIRMATION = {
    "kind": "confirmation", "version": "1", "title": "请确认订阅", "confirm_url": f"{PUBLIC}/confirm/tok.en",
    "expires_at": datetime(2026, 12, 2, 18, 30, tzinfo=LOCAL_ZONE), "short_url": SHORT, "code": "042917",
    "valid_minutes": 10,
}

FULL: dict[str, dict[str, Any]] = {
    "policy": _policy(),
    "policy_revised": _policy(kind="policy_revised", version="2", changes=[
        {"field": "effective_on", "before": date(2026, 12, 1), "after": date(2027, 1, 1)},
        {"field": "summary"},
        {"field": "subsidy_rate", "label": f"补贴标准{HOSTILE}", "before": "50%", "after": f"60%{HOSTILE}"},
        {"field": "interpretation_url", "before": None, "after": "https://example.gov.cn/jd/124"},
    ]),
    "policy_repealed": _policy(kind="policy_repealed", reason=f"已被《关于稳就业的新措施》取代{HOSTILE}",
                               repealed_on=date(2027, 6, 30)),
    "policy_lapsed": _policy(kind="policy_lapsed"),
    "digest": _digest(),
    "confirmation": CONFIRMATION,
}
SPARSE: dict[str, dict[str, Any]] = {
    "policy": _policy(**_BARE),
    "policy_revised": _policy(kind="policy_revised", **_BARE, changes=[{"field": "title"},
                                                                       {"field": "notes", "after": "新增说明"}]),
    "policy_repealed": _policy(kind="policy_repealed", **_BARE, reason="", repealed_on=date(2027, 6, 30)),
    "policy_lapsed": _policy(kind="policy_lapsed", **{**_BARE, "expires_on": date(2028, 11, 30)}),
    "digest": _digest(period="daily", period_start=date(2026, 12, 1), period_end=date(2026, 12, 1),
                      policies=_listed(1, doc_number=None)),
    "confirmation": CONFIRMATION,
}
CHANNEL_VALUES: dict[str, dict[str, Any]] = {
    "email": {"recipient_name": f"广州某某科技有限公司{HOSTILE}", "unsubscribe_url": f"{PUBLIC}/u/tok",
              "qr_image": "cid:qr.policy.12@example.gov.cn"},
    "wechat": {"qr_url": f"{PUBLIC}/p/12/qr.png"},
    "sms": {},
}


def _calm(value: Any) -> Any:
    """`value` without the hostile text: lengths as real department text has them."""
    if isinstance(value, str):
        return value.replace(HOSTILE, "")
    if isinstance(value, dict):
        return {k: _calm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_calm(v) for v in value]
    return value


def context(kind: str, channel: str, part: str, sample: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the channel renders `part` with (see the channels' modules)."""
    values = {**sample[kind], **CHANNEL_VALUES[channel]}
    if channel == "email" and part == "subject.txt":
        return {k: v for k, v in values.items() if k not in SUBJECT_LACKS}
    if channel == "wechat" and part == "fields.txt":  # one field a line: top-level text is made single-line
        return {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in values.items()}
    return values


# -- the documentation and the samples agree -------------------------------------------------------


def test_readme_documents_every_kind_and_channel() -> None:
    assert set(KNOWN_KINDS) | set(PARTS) <= set(documented())


def test_policy_variables_are_the_message_fields() -> None:
    assert documented()["policy"] == {f.name for f in fields(PolicyMessage)}


@pytest.mark.parametrize("kind", COMPLETE_KINDS)
def test_samples_hold_exactly_the_documented_variables(kind: str) -> None:
    assert set(FULL[kind]) == set(SPARSE[kind]) == documented()[kind]
    for channel, values in CHANNEL_VALUES.items():
        assert set(values) == documented()[channel]


# -- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", PARTS)
@pytest.mark.parametrize("kind", COMPLETE_KINDS)
def test_every_kind_renders_in_every_channel_and_locale(kind: str, channel: str, locale: str) -> None:
    for sample in (FULL, SPARSE):
        for part in PARTS[channel]:
            assert (TEMPLATES / channel / f"{kind}.{locale}.{part}").is_file()  # its own, not the fallback
            out = renderer.render(kind, channel, part, locale, context(kind, channel, part, sample))
            assert out.strip(), (kind, channel, part, locale)
            assert "None" not in out, out  # an absent value is left out, not printed
            if part == "html":
                assert "<script>" not in out and (ESCAPED in out), out
            else:
                assert "&lt;" not in out and "&amp;" not in out, out  # text parts are not escaped
            if (channel, part) in (("email", "txt"), ("wechat", "md")) and kind != "confirmation":
                assert "{{ 7*7 }}" in out  # supplied text is data, never evaluated
            if part == "fields.txt":
                assert set(parse_fields(out)) == WECHAT_FIELDS


@pytest.mark.parametrize("channel", PARTS)
@pytest.mark.parametrize("kind", COMPLETE_KINDS)
def test_a_missing_variable_fails_never_blanks(kind: str, channel: str) -> None:
    """Without any one variable, a part either fails naming it or didn't use it: never a silent gap."""
    failed = set()
    for locale in LOCALES:
        for part in PARTS[channel]:
            values = context(kind, channel, part, FULL)
            whole = renderer.render(kind, channel, part, locale, values)
            for name in values:
                try:
                    out = renderer.render(kind, channel, part, locale, {k: v for k, v in values.items() if k != name})
                except RenderError as exc:
                    assert f"'{name}' is undefined" in str(exc)
                    failed.add(name)
                else:
                    assert out == whole, (name, part, locale)
    # The kind's own subject matter is among what a missing variable fails.
    assert {"policy": {"title"}, "policy_revised": {"changes"}, "policy_repealed": {"repealed_on"},
            "policy_lapsed": {"expires_on"}, "digest": {"policies"}, "confirmation": {"expires_at", "code"},
            }[kind] & failed


def test_revision_changes_are_labelled_per_locale() -> None:
    values = context("policy_revised", "email", "txt", FULL)
    zh = renderer.render("policy_revised", "email", "txt", "zh-CN", values)
    assert "- 施行日期：2026年12月1日 → 2027年1月1日\n" in zh
    assert "- 摘要\n" in zh and f"- 补贴标准{HOSTILE}：50% → 60%{HOSTILE}\n" in zh
    assert "- 政策解读：— → https://example.gov.cn/jd/124\n" in zh
    en = renderer.render("policy_revised", "email", "html", "en", context("policy_revised", "email", "html", FULL))
    assert "<li>date in force: 1 December 2026 → 1 January 2027</li>" in en
    sms = renderer.render("policy_revised", "sms", "txt", "zh-HK", FULL["policy_revised"])
    # A given label is shown as given; SMS names at most three changes.
    assert f"修訂了施行日期、摘要、补贴标准{HOSTILE}等。" in sms


def test_digest_sms_lists_three_and_counts_the_rest() -> None:
    text = renderer.render("digest", "sms", "txt", "zh-CN", FULL["digest"])
    assert "1.《第1项政策" in text and "3.《第3项政策" in text and "第4项" not in text and "另有9项" in text
    assert "2026年11月23日至2026年11月29日" in text and "/s/" not in text  # the channel adds the one link
    en = renderer.render("digest", "sms", "txt", "en", SPARSE["digest"])
    assert "1 December 2026" in en and "more" not in en


@pytest.mark.parametrize("locale", LOCALES)
def test_sms_texts_fit_their_parts(locale: str) -> None:
    sign_name = Settings.model_fields["sms_sign_name"].default
    opt_out = Settings.model_fields["sms_opt_out"].default
    max_parts = Settings.model_fields["sms_max_parts"].default

    def sms(kind: str, values: dict[str, Any]) -> SmsText:
        content = renderer.render(kind, "sms", "txt", locale, _calm(values))
        return SmsText.of(assemble(sign_name, content, SHORT, opt_out))

    for code in ("000000", "999999"):
        text = sms("confirmation", {**CONFIRMATION, "code": code})
        assert text.parts <= 2 and code in text.text, text
    # However long the titles, a digest stays within the default maximum.
    long_titles = _listed(40, title="关于" + "进一步" * 100 + "的通知")
    assert sms("digest", _digest(policies=long_titles)).parts <= max_parts
    for kind in ("policy_revised", "policy_repealed", "policy_lapsed"):
        assert sms(kind, FULL[kind]).parts <= max_parts, kind


# -- fallback --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", COMPLETE_KINDS)
def test_an_unknown_locale_gets_zh_cn(kind: str) -> None:
    for channel, parts in PARTS.items():
        for part in parts:
            values = context(kind, channel, part, FULL)
            assert renderer.render(kind, channel, part, "fr", values) == renderer.render(
                kind, channel, part, DEFAULT_LOCALE, values)


def test_a_missing_locale_file_falls_back_to_zh_cn(tmp_path: Path) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    for kind in COMPLETE_KINDS:
        for locale in ("zh-HK", "en"):
            for path in copy.glob(f"*/{kind}.{locale}.*"):
                path.unlink()
    thin = Renderer(copy)
    for kind in COMPLETE_KINDS:
        for channel, parts in PARTS.items():
            for part in parts:
                values = context(kind, channel, part, FULL)
                expected = renderer.render(kind, channel, part, DEFAULT_LOCALE, values)
                assert thin.render(kind, channel, part, "zh-HK", values) == expected
                assert thin.render(kind, channel, part, "en", values) == expected


# -- the files -------------------------------------------------------------------------------------

_NAME = re.compile(r"(?P<kind>[a-z_]+)\.(?P<locale>[A-Za-z-]+)\.(?P<part>.+)")


@pytest.mark.parametrize("channel", PARTS)
def test_no_stray_template_files(channel: str) -> None:
    stray = []
    for path in sorted((TEMPLATES / channel).iterdir()):
        if path.name.startswith("_") and path.is_file():
            continue  # shared markup, imported by the kinds' files
        match = _NAME.fullmatch(path.name)
        if not (path.is_file() and match and match["kind"] in KNOWN_KINDS and match["locale"] in LOCALES
                and match["part"] in PARTS[channel]):
            stray.append(path.name)
    assert stray == [], f"not <kind>.<locale>.<part> of a known kind, locale and {channel} part"


def test_shared_partials_are_used() -> None:
    sources = "".join(p.read_text(encoding="utf-8") for c in PARTS for p in (TEMPLATES / c).iterdir())
    for path in [*(TEMPLATES / "common").iterdir(), *(TEMPLATES / "email").glob("_*")]:
        assert f'"{path.parent.name}/{path.name}"' in sources, f"{path} is imported by no template"


# -- through the channels themselves ---------------------------------------------------------------


def _settings(**values: Any) -> Settings:
    return Settings(admin_token="a" * 16, secret_key="k" * 32, public_url=PUBLIC,  # type: ignore[call-arg]
                    smtp_from="广州市政务公开 <push@example.gov.cn>", _env_file=None, **values)


def _message(kind: str) -> SimpleNamespace:
    """A message as the channels see one: its fields (the same on every channel), a key, the QR of
    its page and its one link (Message.link_for, Message.fields_for)."""
    fields = FULL[kind]
    return SimpleNamespace(**fields, key=f"{kind}:1", qr_url=f"{PUBLIC}/p/1/qr.png", to_subscriber=True,
                           link_for=lambda via: fields["short_url"], fields_for=lambda via: dict(fields))


@pytest.mark.parametrize("kind", COMPLETE_KINDS)
def test_the_channels_render_every_kind(kind: str) -> None:
    signer, settings = TokenSigner("k" * 32), _settings()
    email = EmailChannel(settings, renderer, signer)
    sms = SmsChannel(settings, renderer, signer)
    robots = {style: WechatChannel(_settings(wechat_robot_message=style), renderer, signer)
              for style in ("markdown", "news")}
    for locale in LOCALES:
        mail = email.preview(_message(kind), locale)
        assert mail["subject"] and "{recipient_name}" in mail["text"]
        assert f'src="cid:{mail["inline_images"][0]["content_id"]}"' in mail["html"]
        text = sms.preview(_message(kind), locale)
        assert text["text"].startswith("【") and text["text"].endswith(f"{SHORT} {settings.sms_opt_out}")
        for style, channel in robots.items():
            shown = channel.preview(_message(kind), locale)
            assert set(shown["template"]["data"]) == WECHAT_FIELDS and shown["template"]["url"] == SHORT
            assert shown["webhook"]["msgtype"] == style
