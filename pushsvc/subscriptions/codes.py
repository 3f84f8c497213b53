"""One-time SMS codes in Redis, and the limits that keep the public pages from being used to flood
someone's phone or mailbox.

Codes for a number come in rounds, kept under the keyed digest of the number (no phone number in
Redis keys) as one hash: the attempts made (`a`) and, once the job has sent it, the code's keyed
hash (`h`) and the subscriber it proves (`s`); the round expires with `CODE_TTL`. Every request for
a code starts a new round (`new_round`) whether or not the number is subscribed, and checks count
the same way with or without a code in it: a wrong code answers "n tries left" for any number, so
the answer does not say who is subscribed. Checking is one Lua script: a right code is consumed at
once (two concurrent checks cannot both win), a wrong one counts, the last wrong one ends the round.

Limits use the shared sliding-window limiter: messages a contact may be sent in an hour (a code
or a link), requests one client address may make in an hour, and code checks per client address
(each round allows only `CODE_ATTEMPTS`, but one client could try many numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from pushsvc import redis_keys
from pushsvc.core.verification import CODE_ATTEMPTS, CODE_TTL, ContactKeys, new_code
from pushsvc.ratelimit import Rate, RateLimiter

MESSAGES_PER_CONTACT = Rate(5, 3600)
REQUESTS_PER_CLIENT = Rate(30, 3600)
CHECKS_PER_CLIENT = Rate(30, 3600)

# KEYS[1]: the round. ARGV: the hash of the code typed, the attempts allowed.
# Returns {1, subscriber id} right; {2, attempts left} wrong; {0, 0} no round (none asked for,
# expired, used or spent). A round without a code (nobody to send it to, or not sent yet) counts alike.
_CHECK = """
local made = redis.call('HGET', KEYS[1], 'a')
if not made or tonumber(made) >= tonumber(ARGV[2]) then return {0, 0} end
local stored = redis.call('HGET', KEYS[1], 'h')
if stored and stored == ARGV[1] then
  local sid = redis.call('HGET', KEYS[1], 's')
  redis.call('DEL', KEYS[1])
  return {1, tonumber(sid)}
end
local left = tonumber(ARGV[2]) - redis.call('HINCRBY', KEYS[1], 'a', 1)
if left <= 0 then redis.call('HDEL', KEYS[1], 'h', 's') end
return {2, left}
"""

# KEYS[1]: the round. ARGV: the code's hash, the subscriber, the round's lifetime in seconds. The
# code joins the round its request started, its attempts and expiry untouched (resetting them
# here, for subscribed numbers only, would tell them apart); a round already gone starts afresh.
_ISSUE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'a', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
redis.call('HSET', KEYS[1], 'h', ARGV[1], 's', ARGV[2])
"""


@dataclass(frozen=True)
class Refused:
    """`who`: the contact has had its messages for the hour, or the client its requests."""

    who: Literal["contact", "client"]
    retry_after: float


@dataclass(frozen=True)
class Checked:
    """`ok` with the subscriber it proves; `wrong` with attempts left; `none`: no round running."""

    result: Literal["ok", "wrong", "none"]
    subscriber_id: int = 0
    attempts_left: int = 0


class Codes:
    def __init__(self, redis: Redis, keys: ContactKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._limiter = RateLimiter(redis, redis_keys.SELF_SERVICE_LIMITS)
        self._check = redis.register_script(_CHECK)
        self._issue = redis.register_script(_ISSUE)

    def _key(self, phone: str) -> str:
        return redis_keys.sms_code(self._keys.digest(phone))

    async def may_send(self, contact: str, client: str) -> Refused | None:
        """Take one message for `contact` (a phone number or e-mail address) requested by `client`,
        or say who is over their limit. Asked the same way for contacts we know and don't."""
        taken = await self._limiter.reserve(f"client:{client}", REQUESTS_PER_CLIENT)
        if not taken.granted:
            return Refused("client", taken.wait)
        taken = await self._limiter.reserve(f"contact:{self._keys.digest(contact)}", MESSAGES_PER_CONTACT)
        if not taken.granted:
            return Refused("contact", taken.wait)
        return None

    async def may_check(self, client: str) -> Refused | None:
        taken = await self._limiter.reserve(f"check:{client}", CHECKS_PER_CLIENT)
        return None if taken.granted else Refused("client", taken.wait)

    async def new_round(self, phone: str) -> None:
        """A code was asked for `phone` (known or not): the code before stops working, tries start again."""
        key = self._key(phone)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, "a", 0)
            pipe.expire(key, int(CODE_TTL.total_seconds()))
            await pipe.execute()

    async def issue(self, phone: str, subscriber_id: int) -> str:
        """A fresh code for `phone` proving `subscriber_id`, in the round its request started."""
        code = new_code()
        await self._issue(keys=[self._key(phone)],
                          args=[self._keys.code_hash(phone, code), subscriber_id, int(CODE_TTL.total_seconds())])
        return code

    async def check(self, phone: str, code: str) -> Checked:
        kind, value = await self._check(keys=[self._key(phone)], args=[self._keys.code_hash(phone, code), CODE_ATTEMPTS])
        if kind == 1:
            return Checked("ok", subscriber_id=int(value))
        if kind == 2:
            return Checked("wrong", attempts_left=max(0, int(value)))
        return Checked("none")

    async def forget(self, phone: str) -> None:
        """The code goes; the round's count stays, so checks answer as for any other number."""
        await self._redis.hdel(self._key(phone), "h", "s")
