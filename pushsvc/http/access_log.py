"""The access log, with the secrets some public URLs carry (signed tokens) masked and the request id."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from pushsvc.logs import mask_token_paths


def masked_path(path: str) -> str:
    """The path with its bearer secret, if it carries one (/u, /c, /confirm, /manage, /s, /d), as `***`."""
    return mask_token_paths(path)


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            masked_path(request.path),
            response.status,
            time * 1000,
            # Written after the request's log context has ended: it names its request itself.
            extra={"request_id": response.headers.get("X-Request-Id")},
        )
