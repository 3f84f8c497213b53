"""Pushes from the cloud SMS providers (Aliyun, Tencent Cloud): delivery receipts and replies from
phones, each in its provider's own format, answered as the provider expects.

    POST /v1/callbacks/sms/{provider}/{token}/report    Aliyun SmsReport, Tencent report_status
    POST /v1/callbacks/sms/{provider}/{token}/reply     Aliyun SmsUp, Tencent reply

Neither cloud signs its pushes, so the URL carries a secret (PUSHSVC_SMS_CALLBACK_TOKEN; unset,
every push is refused): a wrong token or provider is 404, as for any unknown URL. Both are
idempotent: a receipt only moves a delivery out of `sent` (a push repeated changes nothing), a
reply only removes a channel that is still on. A receipt for a message not written yet (the push
beat the worker's write) is answered as a failure, so the provider pushes the batch again later.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from pushsvc.channels.sms import SmsChannel, provider_named
from pushsvc.channels.sms.providers.base import SmsProvider
from pushsvc.delivery import receipts
from pushsvc.http.problems import Problem
from pushsvc.http.routing import endpoint, json_response, read_body, services
from pushsvc.subscriptions import replies

CLOUDS = ("aliyun", "tencent")
_NOT_YET = {"aliyun": {"code": 1, "msg": "some messages are not known yet: push again later"},
            "tencent": {"result": 1, "errmsg": "some messages are not known yet: push again later"}}


def _provider(request: web.Request) -> SmsProvider:
    settings = services(request).settings
    name, token = request.match_info["provider"], request.match_info["token"]
    expected = settings.sms_callback_token
    if name not in CLOUDS or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(404, "no such callback")
    return provider_named(settings, name)


async def _body(request: web.Request) -> bytes:
    return await read_body(request, services(request).settings.max_body_bytes)


@endpoint("POST", "/v1/callbacks/sms/{provider}/{token}/report", summary="Delivery receipts pushed by Aliyun "
          "(SmsReport) or Tencent Cloud (report_status)", tag="gateways", errors=(404, 413, 422))
async def cloud_sms_report(request: web.Request) -> web.Response:
    provider = _provider(request)
    try:
        batch = provider.receipts(await _body(request))
    except ValueError as exc:
        raise Problem(422, f"not a {provider.name} status report push: {str(exc)[:300]}") from None
    unknown = await receipts.record(services(request), SmsChannel.name, batch, provider.name)
    return json_response(_NOT_YET[provider.name] if unknown else provider.callback_answer)


@endpoint("POST", "/v1/callbacks/sms/{provider}/{token}/reply", summary="Replies from phones pushed by Aliyun "
          "(SmsUp) or Tencent Cloud: R or TD stops SMS to that number", tag="gateways", errors=(404, 413, 422))
async def cloud_sms_reply(request: web.Request) -> web.Response:
    provider = _provider(request)
    try:
        batch = provider.replies(await _body(request))
    except ValueError as exc:
        raise Problem(422, f"not a {provider.name} reply push: {str(exc)[:300]}") from None
    await replies.opt_out(services(request), SmsChannel.name, ((r.phone_number, r.content) for r in batch))
    return json_response(provider.callback_answer)
