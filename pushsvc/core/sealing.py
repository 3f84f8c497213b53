"""Secrets a department gives us to use, not to show (a callback's bearer token), kept sealed at
rest: AES-256-GCM under a key derived from PUSHSVC_SECRET_KEY and the secret's purpose, so a copy
of the database alone reveals none of them."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class Unsealable(ValueError):
    """Not sealed by us under this secret key (the key changed, or the value was altered)."""


def _key(secret_key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"pushsvc:{purpose}:{secret_key}".encode()).digest()


def seal(secret_key: str, purpose: str, plain: str) -> str:
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(secret_key, purpose)).encrypt(nonce, plain.encode(), purpose.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: str, purpose: str, sealed: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return AESGCM(_key(secret_key, purpose)).decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode()).decode()
    except (InvalidTag, ValueError) as exc:
        raise Unsealable(purpose) from exc
