"""Aliyun SMS (dysmsapi, API version 2017-05-25), spoken as the official SDK speaks it: RPC style,
parameters in the query and a form body, signed ACS3-HMAC-SHA256 (`signing`).

- `SendBatchSms`: up to 100 numbers, per-number sign names and template parameters
  (`PhoneNumberJson`, `SignNameJson`, `TemplateParamJson`), `TemplateCode`, and `OutId` = our id of
  the request. The answer is one `BizId` for the whole batch, or one error `Code` for it.
- Receipts (`SmsReport` push) and replies (`SmsUp` push) come to our callback URLs as JSON arrays;
  a batch shares its `biz_id` and our `out_id`, so a message is its request and its number: the
  ledger keeps "<out_id>.<keyed mark of the number>" (no number in the ledger), which both the push
  and `QuerySendDetails` (it answers OutId, not BizId) name.
- Error codes: an illegal number or a number's frequency limit refuses the whole batch, which is
  then sent a number at a time so that one number does not hold back the rest (a number's daily
  limit, `isv.DAY_LIMIT_CONTROL` or `isv.BUSINESS_LIMIT_CONTROL` "触发天级流控", holds it until
  local midnight; its minute and hour limits are retried); no credit, a
  throttled account, a server error or our credentials refused fail over to the next provider;
  an unapproved sign name or template fails over too, and fails for good when no provider is left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit
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
    number_mark,
    reason,
)
from pushsvc.channels.sms.providers.signing import acs3_authorization, sha256_hex

log = logging.getLogger(__name__)

VERSION = "2017-05-25"
SEND_BATCH, QUERY_DETAILS = "SendBatchSms", "QuerySendDetails"
MAX_NUMBERS = 100
OK = "OK"
FORM = "application/x-www-form-urlencoded"
_CHINA = ZoneInfo("Asia/Shanghai")  # the times in Aliyun's pushes and queries
_QUERY_CONCURRENCY = 8

# Codes that name a number: the batch goes again a number at a time.
ILLEGAL_NUMBER = "isv.MOBILE_NUMBER_ILLEGAL"
RATE_LIMITED = "isv.BUSINESS_LIMIT_CONTROL"  # a number's per-minute/hour/day limit
DAY_LIMITED = "isv.DAY_LIMIT_CONTROL"
PER_NUMBER: dict[str, Literal["failed", "retry", "held"]] = {ILLEGAL_NUMBER: "failed", RATE_LIMITED: "retry",
                                                            DAY_LIMITED: "held"}
# How RATE_LIMITED's message names the day's limit ("触发天级流控Permits:10"), not the minute's or hour's.
_DAY_LEVEL = ("天级", "day")
# The account can send nothing now: another provider may.
QUOTA = frozenset({"isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", "isv.ACCOUNT_ABNORMAL", "isv.ACCOUNT_NOT_EXISTS"})
# Our request is wrong for this account (sign name, template, parameters): no retry here helps.
CONFIG = frozenset({"isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
                    "isv.INVALID_PARAMETERS", "isv.INVALID_JSON_PARAM", "isv.PARAM_LENGTH_LIMIT",
                    "isv.BLACK_KEY_CONTROL_LIMIT", "isv.MOBILE_COUNT_OVER_LIMIT", "isv.SMS_SIGN_ILLEGAL"})


def acs3_headers(host: str, action: str, body: bytes) -> dict[str, str]:
    """The headers an ACS3 request signs, as the SDK sets them (its user-agent aside)."""
    return {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": VERSION,
        "x-acs-date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": secrets.token_hex(16),
        "x-acs-content-sha256": sha256_hex(body),
        "content-type": FORM,
        "accept": "application/json",
    }


def number_status(code: str, message: str) -> Literal["failed", "retry", "held"]:
    """What a per-number code makes of the number: a frequency limit is the day's (held until
    midnight) when its message says so, else the minute's or hour's (retried)."""
    if code == RATE_LIMITED and any(word in message.lower() for word in _DAY_LEVEL):
        return "held"
    return PER_NUMBER[code]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _china_time(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA)
    except ValueError:
        return None


class SmsReport(BaseModel):
    phone_number: str
    success: bool
    biz_id: str | None = None
    out_id: str | None = None
    err_code: str | None = None
    err_msg: str | None = None
    report_time: str | None = None
    send_time: str | None = None


class SmsUp(BaseModel):
    phone_number: str
    content: str
    send_time: str | None = None
    sign_name: str | None = None
    dest_code: str | None = None
    sequence_id: int | None = None


_REPORTS = TypeAdapter(list[SmsReport])
_UPS = TypeAdapter(list[SmsUp])


class AliyunSms(SmsProvider):
    name = "aliyun"
    max_numbers = MAX_NUMBERS
    can_report = True
    callback_answer: ClassVar[dict[str, Any]] = {"code": 0, "msg": "成功"}

    def missing(self) -> str | None:
        s = self.settings
        for setting, value in (("ACCESS_KEY_ID", s.sms_aliyun_access_key_id),
                               ("ACCESS_KEY_SECRET", s.sms_aliyun_access_key_secret),
                               ("TEMPLATE_CODE", s.sms_aliyun_template_code)):
            if not value:
                return f"PUSHSVC_SMS_ALIYUN_{setting}"
        return None

    def message_ref(self, out_id: str, number: str) -> str:
        return f"{out_id}.{number_mark(self.mark_key, number)}"

    def signed_request(self, action: str, query: dict[str, str], form: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers) of one signed call."""
        s = self.settings
        base = s.sms_aliyun_url.rstrip("/")
        body = urlencode(sorted(form.items())).encode()
        headers = acs3_headers(urlsplit(base).netloc, action, body)
        headers["Authorization"] = acs3_authorization("POST", "/", query, headers, headers["x-acs-content-sha256"],
                                                      s.sms_aliyun_access_key_id, s.sms_aliyun_access_key_secret)
        url = f"{base}/?" + "&".join(f"{k}={quote(v, safe='~')}" for k, v in sorted(query.items()))
        return url, body, headers

    async def _call(self, session: aiohttp.ClientSession, action: str, query: dict[str, str],
                    form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        url, body, headers = self.signed_request(action, query, form)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{type(exc).__name__} {exc}".strip()) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NoReply(f"{type(exc).__name__} {exc}".strip()) from None
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        return status, reply if isinstance(reply, dict) else {"Code": f"HTTP {status}", "Message": "unreadable reply"}

    async def send_batch(self, session: aiohttp.ClientSession, batch: Batch) -> dict[str, Verdict]:
        s = self.settings
        n = len(batch.numbers)
        params = {"content": batch.content, "url": batch.url, "opt_out": batch.opt_out}
        status, reply = await self._call(session, SEND_BATCH,
                                         {"OutId": batch.out_id, "TemplateCode": s.sms_aliyun_template_code},
                                         {"PhoneNumberJson": _json(batch.numbers),
                                          "SignNameJson": _json([s.sms_aliyun_sign_name or s.sms_sign_name] * n),
                                          "TemplateParamJson": _json([params] * n)})
        code, message = str(reply.get("Code", f"HTTP {status}")), str(reply.get("Message", ""))
        if status == 200 and code == OK:
            return {number: Verdict("sent", ref=self.message_ref(batch.out_id, number)) for number in batch.numbers}
        if code in PER_NUMBER:
            if n == 1:
                return {batch.numbers[0]: Verdict(number_status(code, message), error=reason(code, message))}
            raise Refused(code, message, per_number=True)
        if code in CONFIG:
            raise Refused(code, message, failover=True, permanent=True)
        # Quota, throttling, server errors, our credentials refused, anything unforeseen.
        raise Refused(code, message, failover=True)

    async def _details(self, session: aiohttp.ClientSession,
                       lookups: list[tuple[str, date]]) -> dict[tuple[str, date], list[dict[str, Any]]] | None:
        """QuerySendDetails for each (number, day sent): the messages Aliyun lists; None when a
        lookup failed."""
        turns = asyncio.Semaphore(_QUERY_CONCURRENCY)

        async def one(number: str, day: date) -> list[dict[str, Any]] | None:
            async with turns:
                try:
                    status, reply = await self._call(session, QUERY_DETAILS, {
                        "PhoneNumber": number, "SendDate": day.strftime("%Y%m%d"), "PageSize": "50",
                        "CurrentPage": "1"}, {})
                except (Unreachable, NoReply) as exc:
                    log.warning("Aliyun QuerySendDetails failed: %s", exc)
                    return None
            if status != 200 or reply.get("Code") != OK:
                log.warning("Aliyun QuerySendDetails refused: %s", reply.get("Code"))
                return None
            details = (reply.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            return [d for d in details if isinstance(d, dict)]

        keys = list(dict.fromkeys(lookups))
        answers = await asyncio.gather(*(one(*k) for k in keys))
        return None if any(a is None for a in answers) else dict(zip(keys, answers))

    async def query(self, session: aiohttp.ClientSession, out_id: str, numbers: list[str],
                    sent_on: date) -> dict[str, Verdict] | None:
        found = await self._details(session, [(n, sent_on) for n in numbers])
        if found is None:
            return None
        verdicts: dict[str, Verdict] = {}
        for n in numbers:  # Aliyun lists a message once it takes it: a number not listed was not taken
            row = next((d for d in found[(n, sent_on)] if d.get("OutId") == out_id), None)
            if row is not None:
                verdicts[n] = (Verdict("failed", error=f"not delivered: {row.get('ErrCode') or 'unknown'}")
                               if row.get("SendStatus") == 2 else Verdict("sent", ref=self.message_ref(out_id, n)))
        return verdicts

    async def reports(self, session: aiohttp.ClientSession,
                      asked: list[tuple[str, str, date]]) -> list[ReceiptIn] | None:
        found = await self._details(session, [(n, day) for _, n, day in asked])
        if found is None:
            return None
        out: list[ReceiptIn] = []
        for ref, n, day in asked:
            out_id = ref.rpartition(".")[0]
            row = next((d for d in found[(n, day)] if d.get("OutId") == out_id and d.get("SendStatus") in (2, 3)), None)
            if row is not None:  # 1: still waiting for the operator's report
                ok = row["SendStatus"] == 3
                out.append(ReceiptIn(ref, ok, None if ok else str(row.get("ErrCode") or "unknown"),
                                     _china_time(row.get("ReceiveDate")), None, n))
        return out

    def receipts(self, body: bytes) -> list[ReceiptIn]:
        return [
            ReceiptIn(
                message_id=self.message_ref(r.out_id or "", national_number(r.phone_number)),
                delivered=r.success,
                error_code=None if r.success else (r.err_code or "unknown"),
                reported_at=_china_time(r.report_time),
                out_id=self.unknown_request(r.out_id) if r.out_id else None,
                phone_number=national_number(r.phone_number),
            )
            for r in _REPORTS.validate_json(body)
        ]

    def replies(self, body: bytes) -> list[ReplyIn]:
        return [ReplyIn(national_number(u.phone_number), u.content) for u in _UPS.validate_json(body)]
