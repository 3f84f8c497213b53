"""The access log, with the secrets some public URLs carry (signed tokens) masked and the request id."""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# Paths whose last segment is a bearer secret: whoever reads the log must not be able to use it.
_TOKEN_PATH = re.compile(r"^(/(?:u|c|confirm|manage)/)[^/?]+")


def masked_path(path: str) -> str:
    return _TOKEN_PATH.sub(r"\1***", path)


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
