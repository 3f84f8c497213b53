from __future__ import annotations

import re
from datetime import timedelta

import pytest

from pushsvc.core.tokens import BadToken, TokenSigner, read_unsubscribe_token, unsubscribe_token

SECRET = "s" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reason(signer: TokenSigner, purpose: str, token: str) -> str:
    with pytest.raises(BadToken) as info:
        signer.verify(purpose, token)
    return info.value.reason


def test_round_trip_is_url_safe_and_compact() -> None:
    signer = TokenSigner(SECRET)
    token = signer.sign("confirm", {"s": 12345, "c": "email", "n": "张三"})
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert signer.verify("confirm", token) == {"s": 12345, "c": "email", "n": "张三"}
    assert len(unsubscribe_token(signer, 12345, "email")) < 80


def test_purpose_is_bound() -> None:
    signer = TokenSigner(SECRET)
    token = signer.sign("unsub", {"s": 1, "c": "email"})
    assert reason(signer, "manage", token) == "invalid"


def test_tampering_and_garbage_are_invalid() -> None:
    signer = TokenSigner(SECRET)
    token = signer.sign("unsub", {"s": 1, "c": "email"})
    body, mac = token.split(".")
    forged_body = TokenSigner(SECRET).sign("unsub", {"s": 2, "c": "email"}).split(".")[0]
    for bad in (
        f"{forged_body}.{mac}",
        f"{body}.{mac[:-2]}AA",
        f"{body}.",
        body,
        "",
        ".",
        "a.b.c",
        "!!!.???",
        f"{body}.{mac}é",
        "é.é",
    ):
        assert reason(signer, "unsub", bad) == "invalid", bad
    assert reason(TokenSigner("t" * 32), "unsub", token) == "invalid"


def test_expiry() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, clock=clock)
    short = signer.sign("manage", {"s": 1}, ttl=timedelta(hours=1))
    forever = signer.sign("manage", {"s": 1})
    clock.now += 3599
    assert signer.verify("manage", short) == {"s": 1}
    clock.now += 2
    assert reason(signer, "manage", short) == "expired"
    clock.now += 100 * 365 * 86400
    assert signer.verify("manage", forever) == {"s": 1}


def test_expired_forgery_is_invalid_not_expired() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, clock=clock)
    token = signer.sign("manage", {"s": 1}, ttl=timedelta(seconds=1))
    clock.now += 10
    body, mac = token.split(".")
    assert reason(signer, "manage", f"{body}.{mac[::-1]}") == "invalid"


def test_unsubscribe_helpers() -> None:
    signer = TokenSigner(SECRET)
    token = unsubscribe_token(signer, 42, "sms")
    assert read_unsubscribe_token(signer, token) == (42, "sms")
    # Genuine token of the right purpose but the wrong shape.
    for payload in ({"s": "42", "c": "sms"}, {"s": 42}, {"s": True, "c": "sms"}):
        with pytest.raises(BadToken) as info:
            read_unsubscribe_token(signer, signer.sign("unsub", payload))
        assert info.value.reason == "invalid"
    with pytest.raises(BadToken):
        read_unsubscribe_token(signer, signer.sign("confirm", {"s": 42, "c": "sms"}))
