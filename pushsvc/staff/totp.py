"""The second factor: time-based one-time codes (RFC 6238, pyotp: 6 digits, 30-second steps), as
any authenticator app makes them. A code is accepted one step either side of now (a phone's clock
drifts) and only once: the step it belongs to is kept (`staff.totp_last_step`) and no code of that
step or an earlier one is accepted again."""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "pushsvc"
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def accepted_step(secret: str, code: str, at: datetime, last_step: int | None) -> int | None:
    """The time step `code` is good for at `at`, or None: wrong, out of the drift window, or of a
    step already used (`last_step`)."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
