"""SMS text: part counting at 70/67 with the signature included, assembly, the publish-time
check, and the request signature (unit tests, no I/O)."""

from __future__ import annotations

import time

import pytest

from pushsvc.channels.base import Channel
from pushsvc.channels.sms import SmsChannel, signature_valid, signed_headers
from pushsvc.core.errors import ValidationFailed
from pushsvc.core.models import PolicyIn
from pushsvc.core.rendering import Renderer
from pushsvc.core.sms_text import SmsText, assemble, length_units, max_units, one_line, parts_for
from pushsvc.core.tokens import TokenSigner
from pushsvc.policies.rules import check_sms_parts
from pushsvc.settings import Settings
from tests.test_api_foundation import POLICY

SIGN = "广州政务公开"  # 6 characters; 【】 make it 8


@pytest.mark.parametrize(
    ("units", "parts"),
    [(0, 0), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (268, 4), (269, 5)],
)
def test_parts_at_70_and_67(units: int, parts: int) -> None:
    assert parts_for(units) == parts


def test_the_signature_counts() -> None:
    body = "政" * 62
    assert SmsText.of(body).parts == 1
    text = assemble(SIGN, body, "", "")
    assert text == f"【{SIGN}】{body}" and SmsText.of(text).chars == 70 and SmsText.of(text).parts == 1
    longer = assemble(SIGN, body + "策", "", "")
    assert SmsText.of(longer).chars == 71 and SmsText.of(longer).parts == 2


def test_units_are_utf16_and_ascii_counts_one() -> None:
    assert length_units("abc") == 3 and length_units("政策") == 2
    assert length_units("👍") == 2  # outside the BMP: a surrogate pair on the handset


def test_max_units() -> None:
    assert [max_units(p) for p in (1, 2, 4)] == [70, 134, 268]
    for p in (1, 2, 3, 4):
        assert parts_for(max_units(p)) == p and parts_for(max_units(p) + 1) == p + 1


def test_assembly_order_and_one_line() -> None:
    text = assemble(SIGN, "市人社局：\n《稳岗》  补贴 详见", "https://x.cn/s/AbCdEfG", "拒收请回复R")
    assert text == "【广州政务公开】市人社局： 《稳岗》 补贴 详见 https://x.cn/s/AbCdEfG 拒收请回复R"
    assert one_line("  a\r\n\tb  ") == "a b"


@pytest.fixture
def sms_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PUSHSVC_ADMIN_TOKEN", "x" * 20)
    monkeypatch.setenv("PUSHSVC_SECRET_KEY", "y" * 40)
    monkeypatch.setenv("PUSHSVC_PUBLIC_URL", "https://push.example.gov.cn")
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _channels(settings: Settings) -> dict[str, Channel]:
    """The SMS channel, unstarted: the check only asks it how long a text is."""
    return {SmsChannel.name: SmsChannel(settings, Renderer(settings.templates_dir), TokenSigner(settings.secret_key))}


def _policy(**changes: object) -> PolicyIn:
    return PolicyIn.model_validate({**POLICY, "channels": ["email", "sms"], **changes})


def test_publish_check_names_summary_or_title(sms_settings: Settings) -> None:
    channels = _channels(sms_settings)
    check_sms_parts(channels, sms_settings, _policy(), "市人社局")  # fits
    check_sms_parts(channels, sms_settings, _policy(summary="长" * 1000, channels=["email"]), "市人社局")  # no SMS
    with pytest.raises(ValidationFailed) as too_long:
        check_sms_parts(channels, sms_settings, _policy(summary="长" * 300), "市人社局")
    [error] = too_long.value.errors
    assert error.field == "summary" and "parts" in error.message
    with pytest.raises(ValidationFailed) as title:
        check_sms_parts(channels, sms_settings, _policy(title="题" * 290), "市人社局")
    assert title.value.errors[0].field == "title"


def test_publish_check_at_the_boundary(sms_settings: Settings) -> None:
    """The longest summary that fits 4 parts passes; one character more is refused."""
    channels = _channels(sms_settings)
    lo, hi = 1, 400
    while lo < hi:  # the largest summary length accepted in every locale
        mid = (lo + hi + 1) // 2
        try:
            check_sms_parts(channels, sms_settings, _policy(summary="长" * mid), "市人社局")
            lo = mid
        except ValidationFailed:
            hi = mid - 1
    with pytest.raises(ValidationFailed) as exc:
        check_sms_parts(channels, sms_settings, _policy(summary="长" * (lo + 1)), "市人社局")
    assert "269 characters in 5 parts" in exc.value.errors[0].message


def test_signature_round_trip() -> None:
    body = b'{"a":1}'
    headers = signed_headers("s3cret", body)
    assert signature_valid("s3cret", headers, body)
    assert not signature_valid("other", headers, body)
    assert not signature_valid("s3cret", headers, body + b" ")
    assert not signature_valid("", headers, body)
    assert not signature_valid("s3cret", {}, body)
    assert not signature_valid("s3cret", headers, body, now=time.time() + 3600)
