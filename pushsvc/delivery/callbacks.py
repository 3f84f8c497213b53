"""Delivery-status callbacks posted: the status changes the store's ledger writers put in the outbox
(pushsvc.store.callbacks) go to each department's receiver from the `callbacks` cron, apart from
sending.

A department's events go out in order: one poster at a time holds its receiver's lease (a killed
worker's lease runs out after a job's time), reads the oldest waiting events (up to BATCH), posts
them as one JSON array signed with the bearer token (core.signatures), and marks them posted only
after a 2xx. Anything else (a status, a timeout, a refused connection) leaves them at the head of
the backlog and the receiver is tried again after a backoff; events still waiting after
RETRY_WINDOW are given up. A receiver may get a batch twice (a worker killed after the post, before
the mark): events carry their `id` so that it can tell.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from pushsvc.core.clock import now
from pushsvc.core.retry import backoff_seconds
from pushsvc.core.sealing import Unsealable, unseal
from pushsvc.core.signatures import HEADER, signature
from pushsvc.services import Services
from pushsvc.settings import Settings
from pushsvc.store import audit
from pushsvc.store.callbacks import (
    due_departments,
    give_up_before,
    head_of_backlog,
    mark_posted,
    mark_refused,
    purge_posted,
    release_lease,
    take_lease,
)

log = logging.getLogger(__name__)

BATCH = 500  # events per post
RETRY_WINDOW = timedelta(hours=24)
KEEP_POSTED = timedelta(days=7)  # posted events are deleted after this
_RESOLVE_SECONDS = 5.0  # a name that takes longer to resolve is taken as not resolving
TOKEN_PURPOSE = "callback-token"  # what sealed bearer tokens are sealed for (core.sealing)
# -- where callbacks may go ---------------------------------------------------------------------


def _public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


async def url_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` may not receive callbacks, or None: https only, to a host whose every address is
    public, unless PUSHSVC_CALLBACK_ALLOW_PRIVATE (then http and any address too)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in (("http", "https") if allow_private else ("https",)):
        return "must be an https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry a user name or password (the bearer token authenticates)"
    if allow_private:
        return None
    try:
        async with asyncio.timeout(_RESOLVE_SECONDS):
            addresses = await _addresses(parts.hostname, port or 443)
    except (OSError, TimeoutError, UnicodeError):  # UnicodeError: a name IDNA cannot encode
        return f"its host '{parts.hostname}' does not resolve"
    if not all(_public(a) for a in addresses):
        return "must lead to a public address (PUSHSVC_CALLBACK_ALLOW_PRIVATE=true allows others)"
    return None


async def _addresses(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PublicOnly(AbstractResolver):
    """Resolves as usual, refusing a name that leads to a private address when connecting: a name
    checked at PUT may point elsewhere by the time it is posted to."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not all(_public(r["host"]) for r in found):
            raise OSError(f"{host} leads to a private address")
        return found

    async def close(self) -> None:
        await self._inner.close()


# -- the poster ------------------------------------------------------------------------------------


async def run_callbacks(svc: Services) -> int:
    """Post every due department's backlog, each in order, all at once; how many events were taken."""
    s = svc.settings
    async with svc.db.read() as conn:
        due = await due_departments(conn, now())
    posted = 0
    if due:
        stop = asyncio.get_running_loop().time() + s.send_budget_seconds
        connector = aiohttp.TCPConnector(resolver=None if s.callback_allow_private else _PublicOnly())
        async with aiohttp.ClientSession(connector=connector) as session:
            posted = sum(await asyncio.gather(*(_drain(svc, session, d, stop) for d in due)))
    async with svc.db.write() as conn:
        await purge_posted(conn, now() - KEEP_POSTED)
    return posted


async def _drain(svc: Services, session: aiohttp.ClientSession, department_id: int, stop: float) -> int:
    """Post the department's backlog, BATCH events at a time, until it is empty, a post fails or
    the job's budget is spent."""
    s, at = svc.settings, now()
    async with svc.db.write() as conn:
        receiver = await take_lease(conn, department_id, at, at + timedelta(seconds=s.job_timeout_seconds + 10))
        if receiver is not None:
            gone = await give_up_before(conn, department_id, at - RETRY_WINDOW, at)
            if gone:
                log.warning("department %s: %d callback events given up after %s", department_id, gone, RETRY_WINDOW)
    if receiver is None:
        return 0  # another poster has it
    posted = 0
    try:
        while asyncio.get_running_loop().time() < stop:
            async with svc.db.read() as conn:
                events = await head_of_backlog(conn, department_id, BATCH)
            if not events:
                break
            error = await _post(s, session, receiver, events)
            ids = [e["id"] for e in events]
            at = now()
            async with svc.db.write() as conn:
                if error is None:
                    await mark_posted(conn, ids, at)
                    # The department learnt how its messages to these people went, as a listing of
                    # a policy's deliveries would tell it.
                    told = [sid for e in events if (sid := e["payload"]["subscriber_id"]) is not None]
                    if told:
                        await audit.record(conn, f"department:{department_id}:callback", "deliveries.callback",
                                           told)
                else:
                    wait = backoff_seconds(events[0]["attempts"] + 1, s.retry_base_seconds, s.retry_max_seconds)
                    await mark_refused(conn, department_id, ids, error, at + timedelta(seconds=wait), at)
            if error is not None:
                log.info("department %s: callback refused (%s); %d events wait", department_id, error, len(events))
                break
            posted += len(events)
    finally:
        await asyncio.shield(_release(svc, department_id))
    return posted


async def _release(svc: Services, department_id: int) -> None:
    async with svc.db.write() as conn:
        await release_lease(conn, department_id)


async def _post(s: Settings, session: aiohttp.ClientSession, receiver: dict[str, Any],
                events: list[dict[str, Any]]) -> str | None:
    """Post one batch; None when the receiver took it (2xx), else why not."""
    try:
        token = unseal(s.secret_key, TOKEN_PURPOSE, receiver["bearer_token"])
    except Unsealable:
        return "the bearer token cannot be read (the secret key changed?): PUT the callback again"
    problem = await url_problem(receiver["url"], s.callback_allow_private)
    if problem is not None:
        return f"the URL {problem}"
    body = json.dumps([{"id": e["id"], **e["payload"]} for e in events], ensure_ascii=False,
                      separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
               HEADER: signature(token, body, int(time.time())), "User-Agent": "pushsvc-callbacks"}
    timeout = aiohttp.ClientTimeout(total=min(s.callback_timeout_seconds, s.send_budget_seconds))
    try:
        async with session.post(receiver["url"], data=body, headers=headers, timeout=timeout,
                                allow_redirects=False) as resp:
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except TimeoutError:
        return f"no answer within {timeout.total:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
