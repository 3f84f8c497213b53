"""One JSON call to a WeChat endpoint: `{"errcode": …, "errmsg": …, …}` back, or `Unavailable`.

Reasons never carry the URL: robot keys and access tokens travel in its query string.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

ERROR_MAX = 500  # characters of a reason kept in the ledger


class Unavailable(Exception):
    """No usable answer: the connection failed or timed out, an HTTP error status, or not JSON.
    Always temporary from the recipient's point of view."""


@dataclass(frozen=True)
class Reply:
    errcode: int
    errmsg: str
    data: dict[str, Any]

    @property
    def reason(self) -> str:
        return f"{self.errcode} {self.errmsg}"[:ERROR_MAX]


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Reply:
    # UTF-8 as is: the platform shows \\u escapes in some message types literally.
    data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
    try:
        # No redirects: an allow-listed host must not be able to bounce us to an internal address.
        async with session.request(method, url, params=params, data=data, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                raise Unavailable(f"HTTP {resp.status}")
            payload = await resp.json(content_type=None)
    except asyncio.TimeoutError:
        raise Unavailable("timed out") from None
    except aiohttp.ClientConnectionError as exc:
        raise Unavailable(f"connection failed ({type(exc).__name__})") from None
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: the body is not JSON
        raise Unavailable(f"bad reply ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise Unavailable("bad reply (not a JSON object)")
    errcode = payload.get("errcode", 0)  # the token endpoint leaves it out on success
    if not isinstance(errcode, int):
        raise Unavailable("bad reply (errcode is not a number)")
    return Reply(errcode, str(payload.get("errmsg", ""))[:ERROR_MAX], payload)
