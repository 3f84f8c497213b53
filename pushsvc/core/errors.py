"""Validation errors that name the field they are about (rendered as problem+json by the API)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ValidationFailed(Exception):
    """Raised by the core when input is well-formed but invalid (HTTP 422)."""

    def __init__(self, errors: list[FieldError], title: str = "Invalid request") -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors
        self.title = title



class Refused(Exception):
    """A request the features turn down for a reason other than a field's value; the HTTP layer
    answers each kind with its status (pushsvc.http.problems)."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class NotFound(Refused):
    """Unknown, or not the caller's to know of."""


class Conflict(Refused):
    """Not possible in the record's present state (an invalid transition, a repeated key)."""


class Forbidden(Refused):
    """The caller may not do this."""
