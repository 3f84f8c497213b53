"""RFC 9457 problem details: every error the service answers with has this shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from pushsvc.core.errors import Conflict, FieldError, Forbidden, NotFound, Refused

TITLES = {
    400: "Malformed request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str | None = None,
        errors: list[FieldError] | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title or TITLES.get(status, "Error"))
        self.status = status
        self.title = title or TITLES.get(status, "Error")
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> web.Response:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        body.update(self.extra)
        return web.Response(
            status=self.status,
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/problem+json",
            headers=self.headers,
        )


def invalid(errors: list[FieldError]) -> Problem:
    return Problem(422, "; ".join(f"{e.field}: {e.message}" for e in errors[:3]), errors)


REFUSAL_STATUS: dict[type[Refused], int] = {NotFound: 404, Conflict: 409, Forbidden: 403}


def refused(exc: Refused) -> Problem:
    """A feature's refusal as the problem its kind stands for."""
    return Problem(REFUSAL_STATUS[type(exc)], exc.detail, exc.errors, **exc.extra)
