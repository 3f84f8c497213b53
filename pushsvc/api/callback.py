"""A department's delivery-status callback: where its system is told of every status change of its
messages (pushsvc.delivery.callbacks posts them). Set, read (never the token) and removed by the
department's own keys."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from pushsvc.core.clock import now
from pushsvc.core.errors import FieldError
from pushsvc.core.models import Strict
from pushsvc.core.sealing import seal
from pushsvc.delivery.callbacks import TOKEN_PURPOSE, url_problem
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem, invalid
from pushsvc.http.routing import endpoint, json_body, json_response, parse_model, services
from pushsvc.store import audit
from pushsvc.store.callbacks import delete_callback, get_callback, put_callback


class CallbackIn(Strict):
    url: str = Field(min_length=1, max_length=1000, description="https:// URL of a public host that takes the posts")
    # Sent back in a header: printable ASCII only.
    bearer_token: str = Field(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$",
                              description="sent as 'Authorization: Bearer <token>' and the key of "
                                          "X-Pushsvc-Signature; never shown again")


class CallbackOut(BaseModel):
    url: str
    updated_at: datetime
    backlog: int = Field(description="status changes waiting to be taken by the receiver")
    oldest_waiting_at: datetime | None = Field(description="when the oldest of them happened")
    last_error: str | None = Field(description="why the last post was not taken (a status, a timeout), if one was not")
    last_error_at: datetime | None
    next_attempt_at: datetime | None = Field(description="after a failure, when the receiver is tried again")


def _department(request: web.Request) -> int:
    department_id = caller(request).department_id
    assert department_id is not None, "auth='department'"
    return department_id


async def _view(request: web.Request, department_id: int) -> CallbackOut:
    async with services(request).db.read() as conn:
        row = await get_callback(conn, department_id)
    if row is None:
        raise Problem(404, "no callback is set: PUT /v1/callback sets one")
    return CallbackOut(**{k: row[k] for k in CallbackOut.model_fields})


@endpoint("PUT", "/v1/callback", summary="Set where the department's delivery-status changes are posted",
          tag="callbacks", auth="department", body=CallbackIn, response=CallbackOut, errors=(400, 401, 403, 422))
async def set_callback(request: web.Request) -> web.Response:
    data = parse_model(CallbackIn, await json_body(request))
    svc = services(request)
    problem = await url_problem(data.url, svc.settings.callback_allow_private)
    if problem is not None:
        raise invalid([FieldError("url", problem)])
    department_id = _department(request)
    async with svc.db.write() as conn:
        await put_callback(conn, department_id, data.url, seal(svc.settings.secret_key, TOKEN_PURPOSE,
                                                                data.bearer_token), now())
        await audit.record(conn, caller(request).actor, "callback.set", None, url=data.url)
    return json_response(await _view(request, department_id))


@endpoint("GET", "/v1/callback", summary="The department's callback: its URL (never the token), backlog and last error",
          tag="callbacks", auth="department", response=CallbackOut, errors=(401, 403, 404))
async def show_callback(request: web.Request) -> web.Response:
    return json_response(await _view(request, _department(request)))


@endpoint("DELETE", "/v1/callback", summary="Stop posting status changes (what waits is dropped)",
          tag="callbacks", auth="department", status=204, errors=(401, 403, 404))
async def remove_callback(request: web.Request) -> web.Response:
    async with services(request).db.write() as conn:
        if not await delete_callback(conn, _department(request)):
            raise Problem(404, "no callback is set")
        await audit.record(conn, caller(request).actor, "callback.delete", None)
    return web.Response(status=204)
