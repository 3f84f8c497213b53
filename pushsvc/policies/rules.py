"""Rules a policy's text must keep before it is published: an SMS of it takes at most
PUSHSVC_SMS_MAX_PARTS parts in every locale. The SMS channel says how long its text would be;
the limit, and which field to shorten, are the policy's business."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import get_args

from pushsvc.channels.base import Channel
from pushsvc.channels.sms import SmsChannel
from pushsvc.core.errors import FieldError, ValidationFailed
from pushsvc.core.models import Locale, PolicyIn
from pushsvc.core.policies import provisional_message
from pushsvc.core.rendering import RenderError
from pushsvc.core.sms_text import SmsText, max_units
from pushsvc.settings import Settings
from pushsvc.store.short_links import LENGTH as SHORT_CODE_LENGTH


def check_sms_parts(channels: Mapping[str, Channel], settings: Settings, policy: PolicyIn, department: str) -> None:
    """At publish: raise ValidationFailed (naming `summary`, or `title` when even an empty summary
    would not fit) if a policy sent by SMS would take more than PUSHSVC_SMS_MAX_PARTS parts in
    any locale. The short link is not issued yet: a placeholder of its length stands in."""
    if SmsChannel.name not in policy.channels:
        return
    sms = channels[SmsChannel.name]
    assert isinstance(sms, SmsChannel)
    limit = settings.sms_max_parts
    placeholder = f"{settings.public_url}/s/{'x' * SHORT_CODE_LENGTH}"
    message = provisional_message(policy, department, settings.public_url, placeholder)
    worst: tuple[str, SmsText] | None = None
    try:
        for locale in get_args(Locale):
            text = sms.measure(message, locale)
            if text.parts > limit and (worst is None or text.chars > worst[1].chars):
                worst = (locale, text)
        if worst is None:
            return
        locale, text = worst
        bare = sms.measure(replace(message, summary=""), locale)
    except RenderError as exc:
        raise ValidationFailed([FieldError("channels", f"the SMS template cannot be rendered: {exc}")]) from None
    field = "title" if bare.parts > limit else "summary"
    over = text.chars - max_units(limit)
    raise ValidationFailed([FieldError(
        field,
        f"too long for SMS: the {locale} text would be {text.chars} characters in {text.parts} parts "
        f"(signature, short link and opt-out wording included); at most {limit} parts are allowed, "
        f"so shorten it by {over} characters",
    )])
