"""A stand-in for Tencent Cloud SMS (2021-01-11): `SendSms` and `PullSmsSendStatusByPhoneNumber`
as the official SDK calls them (a JSON POST, the action in X-TC-Action), each call's
TC3-HMAC-SHA256 signature checked with the SecretId/SecretKey pair it is given; status reports
pushed as `report_status` arrays of up to 100 and replies as one object, answered {"result": 0}
or pushed again. Errors come as Tencent sends them: HTTP 200 with Response.Error."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from pushsvc.channels.sms.providers.base import national_number
from pushsvc.channels.sms.providers.signing import parse_tc3, tc3_date, tc3_signature
from pushsvc.channels.sms.providers.tencent import MAX_NUMBERS, OK, PULL_BY_NUMBER, SEND, SERVICE, VERSION
from pushsvc.dev.stubs.sms.cloud import SIGNATURE_MAX_AGE, TIMEOUT_HANG, CloudSmsStub

_CHINA = ZoneInfo("Asia/Shanghai")


def _answer(response: dict[str, Any]) -> web.Response:
    # "application/json" exactly, as Tencent sends it (the SDK reads errors only under that type).
    body = json.dumps({"Response": {**response, "RequestId": secrets.token_hex(16)}}, ensure_ascii=False).encode()
    return web.Response(body=body, headers={"Content-Type": "application/json"})


def _error(code: str, message: str) -> web.Response:
    return _answer({"Error": {"Code": code, "Message": message}})


class TencentSmsStub(CloudSmsStub):
    provider = "tencent"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports: dict[str, list[dict[str, Any]]] = {}  # +86 number -> pulled status reports

    def _unsigned(self, request: web.Request, body: bytes) -> web.Response | None:
        parsed = parse_tc3(request.headers.get("Authorization", ""))
        if parsed is None:
            return _error("AuthFailure.InvalidAuthorization", "Authorization is missing or malformed")
        key_id, date, service, signed, given = parsed
        if key_id != self.key_id:
            return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found")
        stamp = request.headers.get("X-TC-Timestamp", "")
        if not (stamp.isascii() and stamp.isdigit()) or abs(time.time() - int(stamp)) > SIGNATURE_MAX_AGE:
            return _error("AuthFailure.SignatureExpire", "the signature expired")
        if signed != "content-type;host" or service != SERVICE or date != tc3_date(int(stamp)):
            return _error("AuthFailure.SignatureFailure", "the signature's scope is wrong")
        expected = tc3_signature(request.method, request.path, request.query_string,
                                 request.headers.get("Content-Type", ""), request.headers.get("Host", ""), body,
                                 int(stamp), service, self.secret)
        if not secrets.compare_digest(expected, given):
            return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return None

    async def api(self, request: web.Request) -> web.Response:
        body = await request.read()
        refusal = self._unsigned(request, body)
        if refusal is not None:
            return refusal
        if request.headers.get("X-TC-Version") != VERSION:
            return _error("InvalidParameter", "the version is not supported")
        try:
            params = json.loads(body)
            if not isinstance(params, dict):
                raise ValueError("not an object")
        except ValueError:
            return _error("FailedOperation.JsonParseFail", "the body is not JSON")
        action = request.headers.get("X-TC-Action")
        if action == SEND:
            return await self._send(params)
        if action == PULL_BY_NUMBER:
            return self._pull(params)
        return _error("InvalidAction", f"the action {action} is not found")

    async def _send(self, p: dict[str, Any]) -> web.Response:
        numbers, values = p.get("PhoneNumberSet"), p.get("TemplateParamSet")
        if not (isinstance(numbers, list) and numbers and p.get("SmsSdkAppId") and p.get("TemplateId")):
            return _error("MissingParameter", "PhoneNumberSet, SmsSdkAppId and TemplateId are required")
        if len(numbers) > MAX_NUMBERS:
            return _error("LimitExceeded.PhoneNumberCountLimit", f"at most {MAX_NUMBERS} numbers a request")
        if str(p["TemplateId"]) != self.template_code:
            return _error("FailedOperation.TemplateIncorrectOrUnapproved", "the template is not approved")
        sign = str(p.get("SignName", ""))
        if not 2 <= len(sign) <= 12:
            return _error("FailedOperation.SignatureIncorrectOrUnapproved", "the sign name is not approved")
        if not (isinstance(values, list) and len(values) == 3):
            return _error("InvalidParameterValue.TemplateParameterFormatError", "the template takes 3 parameters")
        fault = self.roll()
        if fault == "rate_limit":
            return _error("RequestLimitExceeded", "the request rate is over the limit")
        if fault == "server_error":
            return _error("InternalError.RequestTimeException", "the service had an internal error")
        if fault == "timeout":
            await asyncio.sleep(TIMEOUT_HANG)
            return _error("InternalError.Timeout", "timed out")
        session = str(p.get("SessionContext", ""))
        sent = datetime.now(UTC)
        results, statuses = [], []
        for raw in numbers:
            plus = str(raw)
            number = national_number(plus)
            fault_of_number = self.number_fault(number)
            if fault_of_number:
                code = ("InvalidParameterValue.IncorrectPhoneNumber" if fault_of_number == "invalid"
                        else "FailedOperation.PhoneNumberInBlacklist")
                statuses.append({"SerialNo": "", "PhoneNumber": plus, "Fee": 0, "SessionContext": session,
                                 "Code": code, "Message": code, "IsoCode": "CN"})
                results.append({"phone_number": number, "code": code})
                continue
            serial = f"2433:{self.next_id()}"
            statuses.append({"SerialNo": serial, "PhoneNumber": plus, "Fee": 1, "SessionContext": session,
                             "Code": OK, "Message": "send success", "IsoCode": "CN"})
            results.append({"phone_number": number, "code": OK, "message_id": serial})
            self.push_receipt({"mobile": number, "nationcode": "86", "sid": serial, "_ok": self.delivered(number),
                               "_session": session, "_plus": plus, "_sent": sent.timestamp()})
        self.record([national_number(str(n)) for n in numbers], sign, str(p["TemplateId"]),
                    dict(zip(("content", "url", "opt_out"), map(str, values))), session, results)
        await self.hang_if_accept_timeout()
        return _answer({"SendStatusSet": statuses})

    def _pull(self, p: dict[str, Any]) -> web.Response:
        if self.query_fails():
            return _error("InternalError.RequestTimeException", "the service had an internal error")
        begin, end = int(p.get("BeginTime", 0)), int(p.get("EndTime", 0) or time.time() + 1)
        rows = [r for r in self.reports.get(str(p.get("PhoneNumber", "")), []) if begin <= r["_at"] <= end]
        offset, limit = int(p.get("Offset", 0)), max(1, min(100, int(p.get("Limit", 100))))
        shown = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows[offset:offset + limit]]
        return _answer({"PullSmsSendStatusSet": shown})

    async def _push_receipts(self, receipts: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        pushed = []
        for r in receipts:
            ok, received = r["_ok"], now.astimezone(_CHINA).strftime("%Y-%m-%d %H:%M:%S")
            self.reports.setdefault(r["_plus"], []).append({
                "UserReceiveTime": received, "CountryCode": "86", "SubscriberNumber": r["mobile"],
                "PhoneNumber": r["_plus"], "SerialNo": r["sid"], "ReportStatus": "SUCCESS" if ok else "FAIL",
                "Description": "用户短信送达成功" if ok else "用户拒收", "SessionContext": r["_session"],
                "_at": int(r["_sent"])})
            pushed.append({"user_receive_time": received, "nationcode": "86", "mobile": r["mobile"],
                           "report_status": "SUCCESS" if ok else "FAIL", "errmsg": "DELIVRD" if ok else "MK:0001",
                           "description": "用户短信送达成功" if ok else "用户拒收", "sid": r["sid"]})
        await super()._push_receipts(pushed)

    def reply_payload(self, number: str, content: str) -> Any:
        return {"extend": "", "mobile": number, "nationcode": "86", "sign": "", "text": content,
                "time": int(time.time()), "sms_sdk_appid": ""}

    def answered(self, answer: Any) -> bool:
        return isinstance(answer, dict) and answer.get("result") == 0
