"""Tencent Cloud SMS (API version 2021-01-11), spoken as the official SDK speaks it: a JSON POST
to / with the action in X-TC-Action, signed TC3-HMAC-SHA256 over content-type and host (`signing`).

- `SendSms`: up to 200 numbers (E.164), `SmsSdkAppId`, `SignName`, `TemplateId`,
  `TemplateParamSet` (the template's {1} {2} {3}: content, link, opt-out wording) and
  `SessionContext` = our id of the request. The answer has a `SendStatusSet` entry per number
  (`Code` "Ok" and its `SerialNo`, or the number's error), or one `Error` for the request.
- Status reports come to our callback URL as a JSON array (`report_status`, up to 100 a push)
  naming each message by `sid` (the SerialNo the ledger keeps); replies as one object (or an array).
- What became of a request whose answer never came: `PullSmsSendStatusByPhoneNumber` per number,
  matched on SessionContext. Tencent lists a message there once its status report exists, so a
  number not listed yet is not "not taken": it stays unknown until the list or a report says.
  (`PullSmsSendStatus`, the account-wide pull, hands each report out once to whoever pulls first
  and is only filled when no callback is set: not a way to ask about one request.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date, datetime, timedelta
from datetime import time as day_time
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import BaseModel, TypeAdapter

from pushsvc.channels.sms.providers.base import (
    Batch,
    NoReply,
    ReceiptIn,
    Refused,
    ReplyIn,
    SmsProvider,
    Unreachable,
    Verdict,
    national_number,
    reason,
)
from pushsvc.channels.sms.providers.signing import tc3_authorization, tc3_signature

log = logging.getLogger(__name__)

VERSION = "2021-01-11"
SERVICE = "sms"
SEND, PULL_BY_NUMBER = "SendSms", "PullSmsSendStatusByPhoneNumber"
MAX_NUMBERS = 200
OK = "Ok"
JSON = "application/json"
_CHINA = ZoneInfo("Asia/Shanghai")
_QUERY_CONCURRENCY = 8

# A number's own errors that no retry changes.
PERMANENT_NUMBER = frozenset({
    "InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist", "FailedOperation.ContainSensitiveWord",
    "UnsupportedOperation.ChineseMainlandTemplateToGlobalPhone",
})
# A number's daily limit at Tencent (set in its console, 10 by default): it sends again after midnight.
DAILY_NUMBER_LIMIT = "LimitExceeded.PhoneNumberDailyLimit"
# Our request is wrong for this account (sign name, template, parameters).
CONFIG_PREFIXES = ("FailedOperation.TemplateIncorrectOrUnapproved", "FailedOperation.SignatureIncorrectOrUnapproved",
                   "FailedOperation.MissingTemplateToModify", "InvalidParameter", "MissingParameter",
                   "UnsupportedOperation", "LimitExceeded.PhoneNumberCountLimit", "FailedOperation.JsonParseFail")


def _china_time(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA)
    except ValueError:
        return None


def e164(number: str) -> str:
    return number if number.startswith("+") else f"+86{number}"


class StatusReport(BaseModel):
    mobile: str
    report_status: str
    sid: str
    nationcode: str | None = None
    errmsg: str | None = None
    description: str | None = None
    user_receive_time: str | None = None


class Reply(BaseModel):
    mobile: str
    text: str
    nationcode: str | None = None
    sign: str | None = None
    time: int | None = None
    extend: str | None = None


_REPORTS = TypeAdapter(list[StatusReport])
_REPLIES = TypeAdapter(list[Reply] | Reply)


class TencentSms(SmsProvider):
    name = "tencent"
    max_numbers = MAX_NUMBERS
    can_report = True
    callback_answer: ClassVar[dict[str, Any]] = {"result": 0, "errmsg": "OK"}

    def missing(self) -> str | None:
        s = self.settings
        for setting, value in (("SECRET_ID", s.sms_tencent_secret_id), ("SECRET_KEY", s.sms_tencent_secret_key),
                               ("SDK_APP_ID", s.sms_tencent_sdk_app_id), ("TEMPLATE_ID", s.sms_tencent_template_id)):
            if not value:
                return f"PUSHSVC_SMS_TENCENT_{setting}"
        return None

    def signed_request(self, action: str, params: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers) of one signed call."""
        s = self.settings
        base = s.sms_tencent_url.rstrip("/")
        host = urlsplit(base).netloc
        body = json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(time.time())
        signature = tc3_signature("POST", "/", "", JSON, host, body, timestamp, SERVICE, s.sms_tencent_secret_key)
        headers = {
            "Authorization": tc3_authorization(s.sms_tencent_secret_id, timestamp, SERVICE, signature),
            "Content-Type": JSON,
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": VERSION,
            "X-TC-Region": s.sms_tencent_region,
        }
        return f"{base}/", body, headers

    async def _call(self, session: aiohttp.ClientSession, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """The `Response` object; Refused on an `Error`."""
        url, body, headers = self.signed_request(action, params)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{type(exc).__name__} {exc}".strip()) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NoReply(f"{type(exc).__name__} {exc}".strip()) from None
        try:
            reply = json.loads(raw)["Response"]
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except (ValueError, KeyError, TypeError):
            raise Refused(f"HTTP {status}", "unreadable reply", failover=True) from None
        error = reply.get("Error")
        if isinstance(error, dict):
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            # Credentials, throttling, no credit, server errors: the account's, so another may send.
            raise Refused(code, message, failover=True, permanent=code.startswith(CONFIG_PREFIXES))
        if status != 200:
            raise Refused(f"HTTP {status}", failover=True)
        return reply

    async def send_batch(self, session: aiohttp.ClientSession, batch: Batch) -> dict[str, Verdict]:
        s = self.settings
        reply = await self._call(session, SEND, {
            "PhoneNumberSet": [e164(n) for n in batch.numbers],
            "SmsSdkAppId": s.sms_tencent_sdk_app_id,
            "SignName": s.sms_tencent_sign_name or s.sms_sign_name,
            "TemplateId": s.sms_tencent_template_id,
            "TemplateParamSet": [batch.content, batch.url, batch.opt_out],
            "SessionContext": batch.out_id,
        })
        verdicts: dict[str, Verdict] = {}
        for item in reply.get("SendStatusSet") or []:
            if not isinstance(item, dict):
                continue
            number, code = national_number(str(item.get("PhoneNumber", ""))), str(item.get("Code", ""))
            if code == OK and item.get("SerialNo"):
                verdicts[number] = Verdict("sent", ref=str(item["SerialNo"])[:100])
            else:
                status: Literal["failed", "retry", "held"] = (
                    "failed" if code in PERMANENT_NUMBER else "held" if code == DAILY_NUMBER_LIMIT else "retry")
                verdicts[number] = Verdict(status, error=reason(code, str(item.get("Message", ""))))
        return verdicts

    async def _pulled(self, session: aiohttp.ClientSession,
                      lookups: list[tuple[str, date]]) -> dict[tuple[str, date], list[dict[str, Any]]] | None:
        """PullSmsSendStatusByPhoneNumber for each (number, day sent), over that day and the next:
        the status reports Tencent lists; None when a lookup failed."""
        turns = asyncio.Semaphore(_QUERY_CONCURRENCY)

        async def one(number: str, day: date) -> list[dict[str, Any]] | None:
            begin = datetime.combine(day, day_time(), _CHINA)
            async with turns:
                try:
                    reply = await self._call(session, PULL_BY_NUMBER, {
                        "BeginTime": int(begin.timestamp()), "EndTime": int((begin + timedelta(days=2)).timestamp()),
                        "Offset": 0, "Limit": 100, "PhoneNumber": e164(number),
                        "SmsSdkAppId": self.settings.sms_tencent_sdk_app_id})
                except (Unreachable, NoReply, Refused) as exc:
                    log.warning("Tencent %s failed: %s", PULL_BY_NUMBER, exc)
                    return None
            return [r for r in reply.get("PullSmsSendStatusSet") or [] if isinstance(r, dict)]

        keys = list(dict.fromkeys(lookups))
        answers = await asyncio.gather(*(one(*k) for k in keys))
        return None if any(a is None for a in answers) else dict(zip(keys, answers))

    async def query(self, session: aiohttp.ClientSession, out_id: str, numbers: list[str],
                    sent_on: date) -> dict[str, Verdict] | None:
        found = await self._pulled(session, [(n, sent_on) for n in numbers])
        if found is None:
            return None
        verdicts: dict[str, Verdict] = {}
        for n in numbers:
            row = next((r for r in found[(n, sent_on)] if r.get("SessionContext") == out_id), None)
            if row is None:
                verdicts[n] = Verdict("unknown")  # no report yet: not a sign that it was not taken
            elif row.get("ReportStatus") == "FAIL":
                verdicts[n] = Verdict("failed", error=f"not delivered: {row.get('Description') or 'unknown'}")
            else:
                verdicts[n] = Verdict("sent", ref=str(row.get("SerialNo", ""))[:100] or None)
        return verdicts

    async def reports(self, session: aiohttp.ClientSession,
                      asked: list[tuple[str, str, date]]) -> list[ReceiptIn] | None:
        found = await self._pulled(session, [(n, day) for _, n, day in asked])
        if found is None:
            return None
        out: list[ReceiptIn] = []
        for ref, n, day in asked:
            row = next((r for r in found[(n, day)] if r.get("SerialNo") == ref), None)
            if row is not None:
                ok = row.get("ReportStatus") == "SUCCESS"
                out.append(ReceiptIn(ref, ok, None if ok else str(row.get("Description") or "unknown"),
                                     _china_time(row.get("UserReceiveTime")), None, n))
        return out

    def receipts(self, body: bytes) -> list[ReceiptIn]:
        out = []
        for r in _REPORTS.validate_json(body):
            delivered = r.report_status == "SUCCESS"
            out.append(ReceiptIn(r.sid, delivered, None if delivered else (r.errmsg or "unknown"),
                                 _china_time(r.user_receive_time), None, national_number(r.mobile)))
        return out

    def replies(self, body: bytes) -> list[ReplyIn]:
        parsed = _REPLIES.validate_json(body)
        return [ReplyIn(national_number(r.mobile), r.text) for r in (parsed if isinstance(parsed, list) else [parsed])]
