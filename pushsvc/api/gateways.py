"""Callbacks from the SMS gateway: delivery receipts and replies from phones.

Both are signed by the gateway like our requests to it (`pushsvc.channels.sms`: HMAC-SHA256 over
timestamp, nonce and body with PUSHSVC_SMS_SECRET); anything else is 401. Both are idempotent: a
receipt only moves a delivery out of `sent`, and a reply only removes a channel that is still on.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from pushsvc.channels.sms import SmsChannel, signature_valid
from pushsvc.core.clock import now
from pushsvc.core.identifiers import normalise_phone
from pushsvc.http.problems import Problem
from pushsvc.http.routing import (
    endpoint,
    json_response,
    parse_model,
    read_body,
    services,
)
from pushsvc.metrics import record_receipts
from pushsvc.store.schema import case_notifications, deliveries, subscribers
from pushsvc.store.subscribers import remove_channel

STOP_WORDS = frozenset({"R", "TD"})  # 退订 replies mainland gateways recognise
REPLY_SOURCE = "sms:reply"
_MAX_ITEMS = 10_000
_LOOKUP_CHUNK = 900  # under SQLite's bound-parameter limit


class SmsReceipt(BaseModel):
    message_id: str = Field(min_length=1, max_length=100)
    phone_number: str | None = Field(default=None, max_length=20)
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


def is_stop_reply(content: str) -> bool:
    """`R` or `TD`, any case, spaces trimmed; full-width letters (Ｒ) count too."""
    return unicodedata.normalize("NFKC", content).strip().upper() in STOP_WORDS


# Where a message id may be: a policy's messages (a digest's id is shared by all its rows), then cases'.
_LEDGERS = (deliveries, case_notifications)


async def _rows_by_ref(conn: AsyncConnection, ledger: sa.Table, refs: list[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for start in range(0, len(refs), _LOOKUP_CHUNK):
        rows = await conn.execute(
            sa.select(ledger.c.provider_ref, ledger.c.id).where(
                ledger.c.provider_ref.in_(refs[start : start + _LOOKUP_CHUNK]), ledger.c.channel == SmsChannel.name
            )
        )
        for ref, row_id in rows:
            found.setdefault(ref, []).append(row_id)
    return found


async def apply_receipts(conn: AsyncConnection, receipts: list[SmsReceipt], at: datetime) -> list[str]:
    """Rows are found by message id first, then one UPDATE per ledger and outcome runs for the
    whole batch by primary key. (Filtering on provider_ref and status in one statement lets SQLite
    pick the status index and scan every `sent` row per receipt.) Only `sent` rows move, so a
    receipt repeated, or arriving after another, changes nothing. Returns the message ids not
    found: a receipt can beat the worker's write of the outcome that holds its id."""
    unknown = sorted({r.message_id for r in receipts})
    for ledger in _LEDGERS:
        ids = await _rows_by_ref(conn, ledger, unknown)
        unknown = [ref for ref in unknown if ref not in ids]
        for delivered in (True, False):
            rows = [
                {"did": row_id, "when": r.reported_at or at,
                 "why": None if delivered else f"not delivered: {r.error_code or 'unknown'}"}
                for r in receipts
                if r.delivered is delivered
                for row_id in ids.get(r.message_id, ())
            ]
            if not rows:
                continue
            values: dict[str, Any] = {"status": "delivered" if delivered else "failed", "updated_at": at}
            if delivered:
                values["delivered_at"] = sa.bindparam("when")
            else:
                values["error"] = sa.bindparam("why")
            await conn.execute(
                sa.update(ledger).where(ledger.c.id == sa.bindparam("did"), ledger.c.status == "sent").values(**values),
                rows,
            )
    return unknown


@endpoint("POST", "/v1/receipts/sms", summary="Delivery receipts from the SMS gateway (signed by it)",
          tag="gateways", body=SmsReceipts, response=ReceiptsOut, errors=(400, 401, 413, 422))
async def sms_receipts(request: web.Request) -> web.Response:
    svc = services(request)
    batch = parse_model(SmsReceipts, await _signed_json(request))
    unknown: list[str] = []
    if batch.receipts:
        async with svc.db.write() as conn:
            unknown = await apply_receipts(conn, batch.receipts, now())
        missing = set(unknown)
        known = [r.delivered for r in batch.receipts if r.message_id not in missing]
        await record_receipts(svc.redis, SmsChannel.name, known, unknown=len(batch.receipts) - len(known))
    return json_response(ReceiptsOut(received=len(batch.receipts), unknown=unknown))


@endpoint("POST", "/v1/inbound/sms", summary="Replies from phones via the SMS gateway: R or TD stops SMS to that number",
          tag="gateways", body=SmsReplies, response=RepliesOut, errors=(400, 401, 413, 422))
async def sms_inbound(request: web.Request) -> web.Response:
    svc = services(request)
    batch = parse_model(SmsReplies, await _signed_json(request))
    phones: set[str] = set()
    for reply in batch.messages:
        if is_stop_reply(reply.content):
            try:
                phones.add(normalise_phone(reply.phone_number))
            except ValueError:
                continue  # not a number we could have sent to
    opted_out = 0
    if phones:
        async with svc.db.write() as conn:
            found = await conn.execute(
                sa.select(subscribers.c.id).where(subscribers.c.phone.in_(sorted(phones)), subscribers.c.status != "erased")
            )
            for sid in found.scalars().all():
                opted_out += await remove_channel(conn, sid, SmsChannel.name, REPLY_SOURCE)
    return json_response(RepliesOut(received=len(batch.messages), opted_out=opted_out))
