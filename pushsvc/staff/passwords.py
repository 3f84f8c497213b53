"""Staff passwords: argon2id hashes (argon2-cffi's current defaults, rehashed at the next sign-in
when those change), the rule a new password must meet, and generated ones.

Checking a password for an unknown username still hashes one (against a fixed dummy hash), so the
time a refusal takes says nothing about whether the name exists.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pushsvc.core.errors import FieldError
from pushsvc.core.msgid import N_

MIN_LENGTH = 12  # the messages below say it: change them together
MAX_LENGTH = 200  # argon2 takes any length; this only bounds the work one request can ask for
# The messages are msgids: the pages show them translated, the API as they are.
TOO_SHORT = N_("Use at least 12 characters.")
TOO_LONG = N_("Use at most 200 characters.")
SAME_AS_USERNAME = N_("The password must not be the username.")
_hasher = PasswordHasher()  # argon2id
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches `stored_hash`; with no hash (an unknown user, an SSO account) a
    dummy is checked instead, taking the same time, and the answer is no."""
    if len(password) > MAX_LENGTH:  # no password is longer: the dummy keeps the time, the answer is no
        stored_hash, password = None, password[:MAX_LENGTH]
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def password_problem(password: str, username: str, field: str = "password") -> FieldError | None:
    """What is wrong with `password` as a new password for `username`, if anything."""
    if len(password) < MIN_LENGTH:
        return FieldError(field, TOO_SHORT)
    if len(password) > MAX_LENGTH:
        return FieldError(field, TOO_LONG)
    if password.strip().casefold() == username.strip().casefold():
        return FieldError(field, SAME_AS_USERNAME)
    return None


def generated_password() -> str:
    """20 characters, about 120 random bits: for a first password that is handed over once."""
    return secrets.token_urlsafe(15)
