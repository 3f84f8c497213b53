"""Callbacks from the SMS gateway: delivery receipts and replies from phones.

Both are signed by the gateway like our requests to it (`pushsvc.channels.sms`: HMAC-SHA256 over
timestamp, nonce and body with PUSHSVC_SMS_SECRET); anything else is 401. Both are idempotent: a
receipt only moves a delivery out of `sent`, and a reply only removes a channel that is still on.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from pushsvc.channels.sms import SmsChannel, signature_valid
from pushsvc.delivery import receipts
from pushsvc.http.problems import Problem
from pushsvc.http.routing import endpoint, json_response, parse_model, read_body, services
from pushsvc.subscriptions import replies

_MAX_ITEMS = 10_000


class SmsReceipt(BaseModel):
    message_id: str = Field(min_length=1, max_length=100)
    phone_number: str | None = Field(default=None, max_length=20)
    out_id: str | None = Field(default=None, max_length=64,
                               description="our id of the request the message came in: settles rows left `unknown`")
    delivered: bool
    error_code: str | None = Field(default=None, max_length=60)
    reported_at: AwareDatetime | None = None


class SmsReceipts(BaseModel):
    receipts: list[SmsReceipt] = Field(max_length=_MAX_ITEMS)


class SmsReply(BaseModel):
    phone_number: str = Field(max_length=20)
    content: str = Field(max_length=1000)
    received_at: AwareDatetime | None = None


class SmsReplies(BaseModel):
    messages: list[SmsReply] = Field(max_length=_MAX_ITEMS)


class ReceiptsOut(BaseModel):
    received: int
    unknown: list[str] = Field(default_factory=list,
                               description="message ids not known (yet): the gateway should send them again later")


class RepliesOut(BaseModel):
    received: int
    opted_out: int


async def _signed_json(request: web.Request) -> Any:
    svc = services(request)
    raw = await read_body(request, svc.settings.max_body_bytes)
    if not signature_valid(svc.settings.sms_secret, request.headers, raw):
        raise Problem(401, "not signed by the SMS gateway (or the signature is stale or wrong)",
                      headers={"WWW-Authenticate": 'HMAC-SHA256 realm="sms-gateway"'})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from None


@endpoint("POST", "/v1/receipts/sms", summary="Delivery receipts from the SMS gateway (signed by it)",
          tag="gateways", body=SmsReceipts, response=ReceiptsOut, errors=(400, 401, 413, 422))
async def sms_receipts(request: web.Request) -> web.Response:
    batch = parse_model(SmsReceipts, await _signed_json(request))
    unknown = await receipts.record(services(request), SmsChannel.name, batch.receipts)
    return json_response(ReceiptsOut(received=len(batch.receipts), unknown=unknown))


@endpoint("POST", "/v1/inbound/sms", summary="Replies from phones via the SMS gateway: R or TD stops SMS to that number",
          tag="gateways", body=SmsReplies, response=RepliesOut, errors=(400, 401, 413, 422))
async def sms_inbound(request: web.Request) -> web.Response:
    batch = parse_model(SmsReplies, await _signed_json(request))
    opted_out = await replies.opt_out(services(request), SmsChannel.name,
                                      ((m.phone_number, m.content) for m in batch.messages))
    return json_response(RepliesOut(received=len(batch.messages), opted_out=opted_out))
