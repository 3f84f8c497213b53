"""The admin page's sessions, kept server side in Redis so that signing out ends one at once.

The cookie carries a random session id (signed, expiring); Redis holds, under the id's SHA-256,
a keyed fingerprint of the admin token the session was opened with, so changing
PUSHSVC_ADMIN_TOKEN ends every session. Nothing derived from the token leaves the server. With
Redis away nobody is signed in: an admin session fails closed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from redis.exceptions import RedisError

from pushsvc import redis_keys
from pushsvc.core.tokens import BadToken
from pushsvc.services import Services

SESSION_TTL = timedelta(hours=8)
SESSION = "admin-session"  # the signer's purpose


def _key(session_id: str) -> str:
    return redis_keys.admin_session(hashlib.sha256(session_id.encode()).hexdigest())


def _fingerprint(svc: Services) -> str:
    return hmac.new(svc.settings.secret_key.encode(), svc.settings.admin_token.encode(), hashlib.sha256).hexdigest()


def _session_id(svc: Services, cookie: str) -> str | None:
    try:
        sid = svc.signer.verify(SESSION, cookie).get("s")
    except BadToken:
        return None
    return sid if isinstance(sid, str) and sid else None


async def open_session(svc: Services) -> str:
    """A new session: the cookie's value. Raises RedisError while Redis is away."""
    sid = secrets.token_urlsafe(32)
    await svc.redis.set(_key(sid), _fingerprint(svc), ex=int(SESSION_TTL.total_seconds()))
    return svc.signer.sign(SESSION, {"s": sid}, ttl=SESSION_TTL)


async def is_open(svc: Services, cookie: str) -> bool:
    """Whether `cookie` names a session not signed out, not expired, for the current admin token."""
    sid = _session_id(svc, cookie)
    if sid is None:
        return False
    try:
        stored = await svc.redis.get(_key(sid))
    except RedisError:
        return False
    held = stored.decode() if isinstance(stored, bytes) else stored
    return held is not None and hmac.compare_digest(held, _fingerprint(svc))


async def close_session(svc: Services, cookie: str) -> None:
    """Signing out: the session ends for every copy of the cookie. Raises RedisError while Redis is away."""
    sid = _session_id(svc, cookie)
    if sid is not None:
        await svc.redis.delete(_key(sid))
