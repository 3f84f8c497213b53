"""Every Redis key pushsvc writes, all under `pushsvc:`, so one Redis can serve other programs and
`redis-cli --scan --pattern 'pushsvc:*'` shows all of ours. arq's own keys (`arq:queue`,
`arq:job:<id>`, ...) are arq's business and are not listed here.

A leaf module: it imports nothing of pushsvc, so every layer (channels included) may use it.
"""

from __future__ import annotations

PREFIX = "pushsvc"

# Ids of cases with something to send, oldest first (pushsvc.cases.dispatcher): a Redis list;
# an id twice is harmless.
CASES_DUE = f"{PREFIX}:cases:due"
# Held by the one digest run at a time (pushsvc.delivery.digest).
DIGEST_LOCK = f"{PREFIX}:digest:lock"
# The workers' shared counters, one hash (pushsvc.metrics): field "<counter>|<label value>|…" -> count.
METRICS = f"{PREFIX}:metrics"


def rate_limits(family: str) -> str:
    """The namespace of one family of sliding-window limits (`pushsvc.ratelimit.RateLimiter`):
    each limited thing (a key, an address, a provider) is a list under `<namespace>:`."""
    return f"{PREFIX}:ratelimit:{family}"


API_LIMITS = rate_limits("api")  # per department key or admin token (pushsvc.http.limits)
PAGE_LIMITS = rate_limits("pages")  # per client address on the public pages (pushsvc.http.limits)
PROVIDER_PACE = rate_limits("provider")  # per provider: smtp, sms, wechat-template (pushsvc.ratelimit)
WECHAT_ROBOT_LIMITS = rate_limits("wechat-robot")  # per robot webhook key (pushsvc.channels.wechat)
SELF_SERVICE_LIMITS = rate_limits("selfservice")  # per contact and client address (pushsvc.subscriptions.codes)


def sms_code(contact_digest: str) -> str:
    """A one-time SMS code, under the keyed digest of its number: no phone number in a key."""
    return f"{PREFIX}:selfservice:code:{contact_digest}"


def daily_quota(family: str, day: str, key: str) -> str:
    """Messages counted against one day's quota (pushsvc.ratelimit.DailyQuota): `family` is what is
    capped (sms-number, wechat-template), `day` the local day ('20261205'), `key` what it caps (a
    number's keyed mark: no phone number in a key; an account's appid). Expires after its day."""
    return f"{PREFIX}:quota:{family}:{day}:{key}"


def wechat_token(account: str) -> str:
    """The Official Account's access token shared by the workers (pushsvc.channels.wechat.token)."""
    return f"{PREFIX}:wechat:token:{account}"


def wechat_token_lock(account: str) -> str:
    """Held by the one worker fetching a new access token."""
    return f"{PREFIX}:wechat:token-lock:{account}"


def breaker(provider: str) -> str:
    """A provider's circuit breaker (pushsvc.delivery.breaker), a hash: `failures` (hand-overs in a
    row that reached nobody), `down_since` (Unix time; absent while it is up), `error` (what opened
    it). Deleted when a message gets through."""
    return f"{PREFIX}:breaker:{provider}"


def breaker_probe(provider: str) -> str:
    """Set (NX, expiring) by the one worker that may probe a provider that is down; its time to
    live is when the next probe may start."""
    return f"{PREFIX}:breaker:{provider}:probe"


def sms_health(provider: str, bucket: int) -> str:
    """An SMS provider's requests, errors and slow requests in one 10-second bucket (Unix time // 10),
    a hash read by the failover (pushsvc.channels.sms.providers.failover); expires after the window."""
    return f"{PREFIX}:sms:health:{provider}:{bucket}"


def admin_session(session_digest: str) -> str:
    """A signed-in admin session (pushsvc.web.admin_sessions), under the SHA-256 of its id: a copy of
    Redis holds no session that could be replayed."""
    return f"{PREFIX}:admin:session:{session_digest}"


def roster_import(import_id: str) -> str:
    """A CSV import the console runs as a job (pushsvc.subscriptions.import_jobs), a hash: who asked
    and the file until the job has read it, then its progress, summary and rejected rows. It
    expires a day after the upload."""
    return f"{PREFIX}:import:{import_id}"


def visitor_seen(day: str, policy_id: int, channel: str, visitor_digest: str) -> str:
    """A visitor already counted on a policy's page by a channel that day (pushsvc.policies.reading),
    under a keyed hash of the day, address and browser: no address in a key. It expires with the day."""
    return f"{PREFIX}:visit:{day}:{policy_id}:{channel}:{visitor_digest}"
