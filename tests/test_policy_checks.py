"""Publish-time and notice-time checks render drafts: a draft is never answered from the render
cache with another draft's rendering (unit tests, no I/O)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pushsvc.channels import build_channels
from pushsvc.core.errors import ValidationFailed
from pushsvc.core.models import PolicyIn
from pushsvc.core.policies import provisional_message
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner
from pushsvc.policies.validation import check_notice
from pushsvc.settings import Settings
from tests.test_api_foundation import POLICY


def services() -> SimpleNamespace:
    settings = Settings(admin_token="a" * 32, secret_key="s" * 40, sms_sign_name="广州政务公开", _env_file=None)  # type: ignore[call-arg]
    renderer = Renderer(settings.templates_dir)
    return SimpleNamespace(settings=settings, channels=build_channels(settings, renderer, TokenSigner("s" * 40)))


def test_drafts_differ_in_version_when_their_content_does() -> None:
    data = PolicyIn.model_validate({**POLICY, "channels": ["sms"]})
    one = provisional_message(data, "市人社局", "https://x.test", "https://x.test/s/abcdefgh")
    same = provisional_message(data, "市人社局", "https://x.test", "https://x.test/s/abcdefgh")
    other = provisional_message(data.model_copy(update={"title": "另一项政策"}), "市人社局", "https://x.test",
                                "https://x.test/s/abcdefgh")
    assert one.key == other.key == "policy:0"  # no id yet: the key alone cannot tell drafts apart
    assert one.version == same.version != other.version


def test_a_revision_notice_too_long_for_sms_is_refused_after_a_short_one_passed() -> None:
    svc = services()
    short = PolicyIn.model_validate({**POLICY, "channels": ["sms"], "title": "稳岗扩岗措施"})
    long = short.model_copy(update={"title": "关于支持中小微企业稳岗扩岗的若干措施" * 12})
    told = {"changes": ({"field": "title"},)}
    check_notice(svc, short, "市人社局", "title", kind="revised", **told)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed) as refused:
        check_notice(svc, long, "市人社局", "title", kind="revised", **told)  # type: ignore[arg-type]
    assert refused.value.errors[0].field == "title"
