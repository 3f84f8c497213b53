"""WeChat: WeCom group robot webhooks and Official Account template messages, one channel.

- `channel`: WechatChannel, which contact is used, pacing and time budget, outcomes.
- `robot`: robot message bodies (markdown within 4,096 bytes, news cards) and replies.
- `template`: template message fields (20 characters) and replies.
- `token`: the access token shared by all workers through Redis.
- `http`: one JSON call to an endpoint.
- `account`: the Official Account's calls for a person or a department: web authorisation, QR codes.
- `events`, `crypto`: what the platform posts to our server URL, its signatures and safe-mode encryption.
"""

from pushsvc.channels.wechat.channel import WechatChannel

__all__ = ["WechatChannel"]
