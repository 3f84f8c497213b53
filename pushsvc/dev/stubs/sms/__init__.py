"""Stand-ins for the clouds' SMS APIs (`pushsvc stub sms --provider aliyun|tencent`): each checks the
real signature with the key pair it is given, answers in the real formats, and pushes receipts and
replies to our callback URLs the real way. The generic gateway's stand-in is
`pushsvc.dev.stubs.sms_gateway`."""

from __future__ import annotations

import asyncio
import logging

from pushsvc.dev.stubs.sms.aliyun import AliyunSmsStub
from pushsvc.dev.stubs.sms.cloud import CloudSmsStub
from pushsvc.dev.stubs.sms.tencent import TencentSmsStub

log = logging.getLogger(__name__)

STUBS: dict[str, type[CloudSmsStub]] = {AliyunSmsStub.provider: AliyunSmsStub, TencentSmsStub.provider: TencentSmsStub}


async def serve_cloud_stub(provider: str, key_id: str, secret: str, host: str, port: int, report_url: str,
                           reply_url: str, receipt_delay: float, template_code: str) -> None:
    """Run a cloud's stand-in until cancelled (the `pushsvc stub sms --provider aliyun|tencent` command)."""
    stub = STUBS[provider](key_id, secret, report_url, reply_url, receipt_delay, template_code)
    url = await stub.start(host, port)
    log.info("%s SMS stand-in on %s (key id %s), receipts to %s, replies to %s", provider, url, key_id, report_url,
             reply_url)
    try:
        await asyncio.Event().wait()
    finally:
        await stub.stop()
