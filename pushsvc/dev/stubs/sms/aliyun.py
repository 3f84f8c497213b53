"""A stand-in for Aliyun SMS (dysmsapi 2017-05-25): `SendBatchSms` and `QuerySendDetails` over the
RPC style the official SDK speaks (action in x-acs-action, parameters in the query and a form
body), each call's ACS3-HMAC-SHA256 signature checked with the AccessKey pair it is given; receipts
pushed as SmsReport arrays and replies as SmsUp arrays, answered {"code": 0} or pushed again."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from pushsvc.channels.sms.providers.aliyun import MAX_NUMBERS, OK, QUERY_DETAILS, SEND_BATCH, VERSION
from pushsvc.channels.sms.providers.signing import acs3_signature, parse_acs3, sha256_hex
from pushsvc.dev.stubs.sms.cloud import TIMEOUT_HANG, CloudSmsStub

_CHINA = ZoneInfo("Asia/Shanghai")
_DATE_SKEW = timedelta(minutes=15)  # how far x-acs-date may be from now, as Aliyun allows


def _china(at: datetime) -> str:
    return at.astimezone(_CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"RequestId": secrets.token_hex(16).upper(), "HostId": "dysmsapi.aliyuncs.com",
                              "Code": code, "Message": message}, status=status)


class AliyunSmsStub(CloudSmsStub):
    provider = "aliyun"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.details: dict[str, list[dict[str, Any]]] = {}  # number -> QuerySendDetails rows

    def _unsigned(self, request: web.Request, body: bytes) -> web.Response | None:
        parsed = parse_acs3(request.headers.get("Authorization", ""))
        if parsed is None:
            return _error(400, "IncompleteSignature", "the Authorization header is missing or malformed")
        key_id, names, given = parsed
        if key_id != self.key_id:
            return _error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        headers = request.headers
        try:
            at = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _error(400, "MissingTimestamp", "x-acs-date is missing or malformed")
        if abs(datetime.now(UTC) - at) > _DATE_SKEW:
            return _error(400, "InvalidTimeStamp.Expired", "the request's date is too far from now")
        if headers.get("x-acs-content-sha256") != sha256_hex(body):
            return _error(400, "ContentSHA256NotMatch", "x-acs-content-sha256 does not match the body")
        if not {"host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"} <= set(names):
            return _error(400, "IncompleteSignature", "host and the x-acs-* headers must be signed")
        signature, _ = acs3_signature(request.method, request.path, dict(request.query),
                                      {name: headers.get(name, "") for name in names},
                                      headers["x-acs-content-sha256"], self.secret)
        if not secrets.compare_digest(signature, given):
            return _error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        if not self.fresh_nonce(headers.get("x-acs-signature-nonce", "")):
            return _error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        return None

    async def api(self, request: web.Request) -> web.Response:
        body = await request.read()
        refusal = self._unsigned(request, body)
        if refusal is not None:
            return refusal
        if request.headers.get("x-acs-version") != VERSION:
            return _error(400, "InvalidVersion", "Specified parameter Version is not valid.")
        params = dict(request.query)
        if body:
            params |= dict(await request.post())  # type: ignore[arg-type]
        action = request.headers.get("x-acs-action")
        if action == SEND_BATCH:
            return await self._send_batch(params)
        if action == QUERY_DETAILS:
            return self._query(params)
        return _error(404, "InvalidAction.NotFound", f"Specified api is not found: {action}")

    async def _send_batch(self, params: dict[str, str]) -> web.Response:
        try:
            numbers = json.loads(params["PhoneNumberJson"])
            signs = json.loads(params["SignNameJson"])
            values = json.loads(params["TemplateParamJson"])
            code = params["TemplateCode"]
        except (KeyError, ValueError) as exc:
            return _error(200, "isv.INVALID_PARAMETERS", f"missing or malformed: {exc}")
        if not (isinstance(numbers, list) and isinstance(signs, list) and isinstance(values, list)
                and len(numbers) == len(signs) == len(values) and numbers):
            return _error(200, "isv.INVALID_PARAMETERS", "PhoneNumberJson, SignNameJson and TemplateParamJson differ")
        if len(numbers) > MAX_NUMBERS:
            return _error(200, "isv.MOBILE_COUNT_OVER_LIMIT", f"at most {MAX_NUMBERS} numbers")
        if code != self.template_code:
            return _error(200, "isv.SMS_TEMPLATE_ILLEGAL", "the template is not approved")
        if any(not isinstance(s, str) or not 2 <= len(s) <= 12 for s in signs):
            return _error(200, "isv.SMS_SIGNATURE_ILLEGAL", "the sign name is not approved")
        if any(not isinstance(v, dict) or {"content", "url", "opt_out"} - v.keys() for v in values):
            return _error(200, "isv.TEMPLATE_MISSING_PARAMETERS", "the template's parameters are missing")
        fault = self.roll()
        if fault == "rate_limit":
            return _error(400, "Throttling.User", "Request was denied due to user flow control.")
        if fault == "server_error":
            return _error(500, "InternalError", "The request processing has failed due to some unknown error.")
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_HANG)
            return _error(503, "ServiceUnavailable", "timed out")
        numbers = [str(n) for n in numbers]
        if any(self.number_fault(n) for n in numbers):  # one bad number refuses the batch, as Aliyun does
            self.stats["refused_requests"] += 1
            return _error(200, "isv.MOBILE_NUMBER_ILLEGAL", "illegal mobile number")
        biz_id = f"{secrets.randbelow(10**15):015d}^{secrets.randbelow(10**10):010d}"
        out_id = params.get("OutId", "")
        sent = datetime.now(UTC)
        for number, sign, value in zip(numbers, signs, values):
            ok = self.delivered(number)
            self.details.setdefault(number, []).append({
                "PhoneNum": number, "SendStatus": 1, "ErrCode": "", "TemplateCode": code, "OutId": out_id,
                "Content": f"【{sign}】{value['content']} {value['url']} {value['opt_out']}",
                "SendDate": _china(sent), "ReceiveDate": "", "_ok": ok})
            self.push_receipt({"phone_number": number, "send_time": _china(sent), "report_time": "",
                               "success": ok, "err_code": "DELIVERED" if ok else "MK:0001",
                               "err_msg": "用户接收成功" if ok else "用户拒收", "sms_size": "1",
                               "biz_id": biz_id, "out_id": out_id})
        self.record(numbers, signs[0], code, values[0], out_id,
                    [{"phone_number": n, "code": OK, "message_id": biz_id} for n in numbers])
        await self.hang_if_accept_timeout()
        return web.json_response({"RequestId": secrets.token_hex(16).upper(), "BizId": biz_id, "Code": OK,
                                  "Message": "OK"})

    def _query(self, params: dict[str, str]) -> web.Response:
        if self.query_fails():
            return _error(500, "InternalError", "The request processing has failed due to some unknown error.")
        number, day = params.get("PhoneNumber", ""), params.get("SendDate", "")
        if not number or len(day) != 8:
            return _error(200, "isv.INVALID_PARAMETERS", "PhoneNumber and SendDate are required")
        rows = [r for r in self.details.get(number, []) if r["SendDate"][:10].replace("-", "") == day]
        size = max(1, min(50, int(params.get("PageSize", "10") or 10)))
        page = max(1, int(params.get("CurrentPage", "1") or 1))
        shown = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows[(page - 1) * size:page * size]]
        return web.json_response({"RequestId": secrets.token_hex(16).upper(), "Code": OK, "Message": "OK",
                                  "TotalCount": len(rows), "SmsSendDetailDTOs": {"SmsSendDetailDTO": shown}})

    async def _push_receipts(self, receipts: list[dict[str, Any]]) -> None:
        reported = _china(datetime.now(UTC))
        for r in receipts:  # what the query shows once the receipt came
            for row in self.details.get(r["phone_number"], []):
                if row["OutId"] == r["out_id"] and row["SendStatus"] == 1:
                    row.update(SendStatus=3 if row["_ok"] else 2, ErrCode=r["err_code"], ReceiveDate=reported)
        await super()._push_receipts([{**r, "report_time": reported} for r in receipts])

    def reply_payload(self, number: str, content: str) -> Any:
        return [{"phone_number": number, "send_time": _china(datetime.now(UTC)), "content": content,
                 "sign_name": "", "dest_code": "", "sequence_id": secrets.randbelow(10**10)}]

    def answered(self, answer: Any) -> bool:
        return isinstance(answer, dict) and answer.get("code") == 0
