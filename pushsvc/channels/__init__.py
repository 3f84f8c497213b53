"""The channels the service can push through.

Adding a channel: write its module (a `Channel` subclass constructed as `cls(settings, renderer,
signer)`) and add one line to CHANNELS.
"""

from __future__ import annotations

from collections.abc import Mapping

from pushsvc.channels.base import Channel
from pushsvc.channels.email import EmailChannel
from pushsvc.channels.sms import SmsChannel
from pushsvc.channels.wechat import WechatChannel
from pushsvc.core.rendering import Renderer
from pushsvc.core.subscribers import ChannelContacts
from pushsvc.core.tokens import TokenSigner
from pushsvc.settings import Settings

CHANNELS: Mapping[str, type[Channel]] = {
    EmailChannel.name: EmailChannel,
    SmsChannel.name: SmsChannel,
    WechatChannel.name: WechatChannel,
}

# The contact each channel addresses, for subscriber validation ("sms needs a phone number").
CHANNEL_CONTACTS: ChannelContacts = {name: cls.address for name, cls in CHANNELS.items()}


def build_channels(settings: Settings, renderer: Renderer, signer: TokenSigner) -> dict[str, Channel]:
    """One instance of every channel, keyed by name; the caller `start()`s and `close()`s them."""
    return {name: cls(settings, renderer, signer) for name, cls in CHANNELS.items()}  # type: ignore[call-arg]
