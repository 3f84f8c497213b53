"""Log lines: JSON (one object a line) or text, every line with phone numbers, e-mail addresses and
the tokens of token-bearing paths masked, and the request id carried from an HTTP request into the jobs it starts.

Masking is applied to the finished line (message, exception and stack), not at the call sites:
whatever a library or a future log call puts in a line, no contact leaves the process unmasked.
The request id lives in a context variable: the API sets it per request, the enqueue helpers
(`job_kwargs`) pass it to arq as a job keyword argument, and `traced` job functions set it again
in the worker, so the jobs a job enqueues carry it too.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from pushsvc.core.identifiers import mask_email, mask_phone

LogFormat = Literal["json", "text"]
T = TypeVar("T")

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)

# A caller's X-Request-Id is kept only if it is a plain token: it is copied into every log line.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Mainland mobile numbers as people and gateways write them: +86 138 0013 8000, 008613800138000,
# 13800138000, 138-0013-8000; not inside a longer run of digits (ids, timestamps).
_PHONE = re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?!\d)")
# Broader than what the service accepts (any letters, IDN domains): anything shaped like an address
# is hidden. Only "/", "=", "?" and "&" are left out of the local part, so a URL keeps its path and
# query keys: "/v1/x?to=a@b.cn" masks as "/v1/x?to=a***@b.cn".
_EMAIL = re.compile(r"[\w.!#$%'*+^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_SEPARATORS = re.compile(r"[ -]")
# Paths whose segment after the prefix is a bearer secret (signed tokens, short and digest codes):
# whoever reads a log must not be able to open the page. Masked wherever a line quotes one.
_TOKEN_PATH = re.compile(r"(/(?:u|c|confirm|manage|s|d)/)[^/?#\s\"'<>]+")


def _masked_phone(match: re.Match[str]) -> str:
    digits = _SEPARATORS.sub("", match.group())
    national = digits[-11:]
    return mask_phone("+86" + national if len(digits) > 11 else national)


def mask_contacts(text: str) -> str:
    """Every phone number and e-mail address in `text`, masked as identifiers.py masks them."""
    return _PHONE.sub(_masked_phone, _EMAIL.sub(lambda m: mask_email(m.group()), text))


def mask_token_paths(text: str) -> str:
    """Every token-bearing path in `text` with its token as `***`: "/manage/eyJ…/data.json" → "/manage/***/data.json"."""
    return _TOKEN_PATH.sub(r"\1***", text)


def mask_line(text: str) -> str:
    """What every log line goes through: contacts and token-bearing paths masked."""
    return mask_token_paths(mask_contacts(text))


def accepted_request_id(header: str | None) -> str:
    """The caller's id if it is a usable token, else a new one."""
    if header and _USABLE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@contextmanager
def log_context(request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    tokens = (REQUEST_ID.set(request_id), JOB_ID.set(job_id))
    try:
        yield
    finally:
        JOB_ID.reset(tokens[1])
        REQUEST_ID.reset(tokens[0])


def job_kwargs() -> dict[str, str]:
    """Keyword arguments for `enqueue_job`: the current request id, so the job logs under it."""
    request_id = REQUEST_ID.get()
    return {"request_id": request_id} if request_id else {}


def traced(job: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """An arq job function whose log lines carry its job id and the request id it was enqueued with."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, request_id: str | None = None, **kwargs: Any) -> T:
        with log_context(request_id=request_id, job_id=ctx.get("job_id")):
            return await job(ctx, *args, **kwargs)

    return run


def _ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    # A record may name its request itself (the access log is written after the request's context ends).
    return getattr(record, "request_id", None) or REQUEST_ID.get(), JOB_ID.get()


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "request_id", "job_id"?, "exception"?} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id, job_id = _ids(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_line(record.getMessage()),
            "request_id": request_id,
        }
        if job_id:
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = mask_line(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = mask_line(self.formatStack(record.stack_info))
        # ensure_ascii=False: Chinese text (and arq's arrows) stay readable in the log.
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger [request job]: message` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(i for i in _ids(record) if i)
        record.ids = f" [{ids}]" if ids else ""
        return mask_line(super().format(record))


def configure_logging(fmt: LogFormat, level: int = logging.INFO) -> None:
    """One handler on the root logger, to stderr, in `fmt`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
