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

