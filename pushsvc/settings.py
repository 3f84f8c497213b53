"""Service settings, read from PUSHSVC_* environment variables and an optional .env file.

A PUSHSVC_ variable that names no setting stops start-up (`load_settings`): a typo such as
PUSHSVC_SMTP_HOTS would otherwise leave the setting at its default without a word.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pushsvc.core.retry import attempts_for

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "PUSHSVC_"
ENV_FILE = Path(".env")  # in the working directory
# PUSHSVC_ variables that are not settings of the service, set by the project's own tools: they
# may be in the environment a service process inherits. Add a name here with what sets it.
NOT_SETTINGS = frozenset({
    "PUSHSVC_ROOT",  # scripts/lib.sh: the checkout the scripts run in
    "PUSHSVC_CHROMIUM",  # scripts and tests: the browser the browser tests drive
    "PUSHSVC_DEMO_REDIS_DB",  # `pushsvc demo`: the Redis database number it empties and uses
    "PUSHSVC_DEMO_SMS",  # `pushsvc demo`: its SMS stand-ins (generic, aliyun, tencent, both)
    "PUSHSVC_TEST_DATABASE_URL",  # tests (set by .ci/run): PostgreSQL for the database tests
    "PUSHSVC_TEST_REDIS_URL",  # tests: the Redis server the test sessions use
    "PUSHSVC_TEST_PROCESSES",  # scripts/test: how many pytest processes
})


class SettingsError(SystemExit):
    """Start-up stops with a message naming each bad setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=ENV_FILE, extra="ignore")

    database_url: str = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'pushsvc.db'}"
    redis_url: str = "redis://127.0.0.1:6379/0"
    admin_token: str = Field(min_length=16)
    secret_key: str = Field(min_length=32)
    public_url: str = "http://127.0.0.1:8080"

    # The defaults are the installation's folders, wherever the process is started.
    audiences_dir: Path = Field(default=REPO_ROOT / "audiences", validate_default=True)
    templates_dir: Path = Field(default=REPO_ROOT / "templates", validate_default=True)

    @field_validator("audiences_dir", "templates_dir")
    @classmethod
    def _existing_folder(cls, v: Path) -> Path:
        # Made absolute and checked once, at start: a process started from another folder (another
        # host, a service manager) with a relative path stops here, naming the setting, instead of
        # starting and then failing every message it renders.
        folder = v.resolve()
        if not folder.is_dir():
            where = "" if v.is_absolute() else f" (a relative path is taken from the working directory, {Path.cwd()})"
            raise ValueError(f"{folder} is not a folder{where}")
        return folder

    max_body_bytes: int = Field(default=1 << 20, gt=0)
    max_import_bytes: int = Field(default=64 << 20, gt=0)

    # The API process builds an in-memory reach index at start (in the background; measured for 3
    # million subscribers: about 20 s and 220 MB) and answers previews from it once built; false: SQL.
    reach_index: bool = True

    # Fan-out and delivery.
    fanout_batch_size: int = Field(default=1000, ge=1, le=10_000)
    max_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # A temporary failure is final only once max_attempts are spent *and*, even at the backoff's
    # shortest draws, retry_for_hours have passed since the first attempt: max_attempts is raised to
    # the attempts that takes (`_attempts_cover_retry_window`; 297 with these defaults), so an
    # outage of hours fails nothing. 0: max_attempts alone decide.
    retry_for_hours: float = Field(default=24.0, ge=0)
    # A provider (SMTP relay, SMS gateway, WeChat templates, WeChat robots) is `down` once this many
    # hand-overs in a row reached nobody for a temporary reason (pushsvc.delivery.breaker); its
    # messages then wait `held`, and one hand-over every breaker_probe_seconds tries it again.
    breaker_failures: int = Field(default=10, ge=1)
    breaker_probe_seconds: float = Field(default=30.0, gt=0)
    stale_after_seconds: int = Field(default=300, ge=5)
    job_timeout_seconds: int = Field(default=60, ge=5)
    worker_max_jobs: int = Field(default=8, ge=1)
    # Cases a worker's dispatcher sends together (one claim, one read, one write for all of them).
    case_batch_size: int = Field(default=200, ge=1, le=1000)
    sweep_every_seconds: int = Field(default=30, ge=1, le=60)

    # Digests: daily and weekly subscribers get their held policies in one message at this local
    # time (Asia/Shanghai), weekly ones on this ISO weekday (1 = Monday).
    digest_time: str = Field(default="08:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    digest_weekday: int = Field(default=1, ge=1, le=7)

    # E-mail over SMTP.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, gt=0, lt=65536)
    smtp_from: str = "pushsvc@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_connections: int = Field(default=8, ge=1, le=200)
    smtp_timeout: float = Field(default=30.0, gt=0)
    unsubscribe_mailto: str | None = None
    # Each e-mail's envelope sender is bounces+<token>@this domain (VERP), whose MX must lead to
    # `pushsvc bounces`; empty: the domain of PUSHSVC_SMTP_FROM.
    bounce_domain: str = Field(default="", max_length=253, pattern=r"^[A-Za-z0-9.-]*$")

    # No SMS or personal WeChat in this local span unless a subscriber sets their own (00:00-00:00: none).
    quiet_hours: str = Field(default="21:00-08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")

    # Robot webhooks are called by the workers, so only these origins may be named (comma-separated).
    wechat_webhook_origins: str = "https://qyapi.weixin.qq.com"

    # WeChat: the Official Account's token and template endpoints live under wechat_api_url; robot
    # messages are markdown or news cards; a robot key takes at most wechat_robot_max_messages in
    # any wechat_robot_window_seconds (the platform's 20 a minute; a setting so tests can shrink
    # the window). wechat_timeout bounds one HTTP request.
    wechat_api_url: str = Field(default="https://api.weixin.qq.com", pattern=r"^https?://[^/?#]+/?$")
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_template_id: str = ""
    wechat_robot_message: str = Field(default="markdown", pattern=r"^(markdown|news)$")
    wechat_robot_max_messages: int = Field(default=20, ge=1)
    wechat_robot_window_seconds: float = Field(default=60.0, gt=0)
    wechat_timeout: float = Field(default=10.0, gt=0)
    wechat_connections: int = Field(default=8, ge=1, le=100)
    # The Official Account's server configuration (its console: Settings and development → Basic
    # configuration): the Token both sides sign with ("" = our server URL /v1/wechat/server answers
    # 404) and the EncodingAESKey of the compatible and safe modes ("" = plain mode only). The web
    # authorisation's authorize page lives under wechat_oauth_url (the stand-in plays it in tests).
    wechat_token: str = Field(default="", pattern=r"^[A-Za-z0-9]{0,32}$")
    wechat_encoding_aes_key: str = Field(default="", pattern=r"^([A-Za-z0-9+/]{43})?$")
    wechat_oauth_url: str = Field(default="https://open.weixin.qq.com", pattern=r"^https?://[^/?#]+/?$")

    @property
    def webhook_origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.wechat_webhook_origins.split(",") if o.strip())

    # SMS through a gateway's HTTP API (`pushsvc stub sms` stands in for the provider).
    sms_url: str = "http://127.0.0.1:8091"
    sms_secret: str = ""  # HMAC-SHA256 key for our requests and the gateway's callbacks; "" = SMS off
    sms_sign_name: str = Field(default="广州政务公开", min_length=2, max_length=12)
    sms_template_code: str = "PUSHSVC_POLICY"
    sms_opt_out: str = Field(default="拒收请回复R", min_length=1, max_length=20)
    sms_max_parts: int = Field(default=4, ge=1, le=10)
    sms_timeout: float = Field(default=10.0, gt=0)
    sms_connections: int = Field(default=4, ge=1, le=64)
    # Several SMS providers (pushsvc.channels.sms.providers): in order, with weights; each batch goes
    # to one drawn by weight among the healthy, and what it cannot take to the next. A provider with
    # sms_failover_errors refused or unanswered requests in sms_failover_window_seconds, or more than
    # sms_failover_slow_share of its requests slower than sms_failover_slow_seconds, loses its share
    # until the window passes. The providers' pushes (receipts, replies) come to
    # /v1/callbacks/sms/<provider>/<sms_callback_token>/report|reply: the token keeps others out.
    sms_providers: str = Field(default="generic:1",
                               pattern=r"^\s*(generic|aliyun|tencent)(:\d+)?(\s*,\s*(generic|aliyun|tencent)(:\d+)?)*\s*$")
    sms_failover_errors: int = Field(default=50, ge=1)
    sms_failover_window_seconds: float = Field(default=60.0, gt=0)
    sms_failover_slow_seconds: float = Field(default=5.0, gt=0)
    sms_failover_slow_share: float = Field(default=0.15, gt=0, le=1)
    sms_callback_token: str = ""  # "" = the providers' callbacks are refused
    # An Aliyun or Tencent message still `sent` this long after it went out (its pushed receipt lost)
    # is looked up by the sweeper (QuerySendDetails, PullSmsSendStatusByPhoneNumber), and again after
    # as long each time, for as long as the provider keeps it (3 days).
    sms_receipt_wait_seconds: float = Field(default=1800.0, gt=0)
    sms_aliyun_url: str = Field(default="https://dysmsapi.aliyuncs.com", pattern=r"^https?://[^/?#]+/?$")
    sms_aliyun_access_key_id: str = ""
    sms_aliyun_access_key_secret: str = ""
    sms_aliyun_sign_name: str = Field(default="", max_length=12)  # "" = sms_sign_name
    sms_aliyun_template_code: str = ""
    sms_tencent_url: str = Field(default="https://sms.tencentcloudapi.com", pattern=r"^https?://[^/?#]+/?$")
    sms_tencent_secret_id: str = ""
    sms_tencent_secret_key: str = ""
    sms_tencent_sdk_app_id: str = ""
    sms_tencent_sign_name: str = Field(default="", max_length=12)  # "" = sms_sign_name
    sms_tencent_template_id: str = ""
    sms_tencent_region: str = "ap-guangzhou"

    # Delivery-status callbacks (PUT /v1/callback): posted every callback_every_seconds, each post
    # waiting callback_timeout_seconds at most. Only https to public addresses, unless
    # callback_allow_private (one-machine set-ups and tests: http and private addresses too).
    callback_allow_private: bool = False
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    callback_every_seconds: int = Field(default=5, ge=1, le=60)

    # Logs: "json" (one object a line) or "text"; unset, serve and worker write json, other commands text.
    log_format: Literal["json", "text"] | None = None

    # Rate limits shared by every process through Redis; 0 means none. Providers: set them to your
    # contract (each SMS request carries up to 1,000 numbers). The API: per department key, and per
    # client address on the public pages (behind proxy_hops proxies, the address X-Forwarded-For names).
    smtp_per_second: int = Field(default=0, ge=0)
    sms_requests_per_second: int = Field(default=0, ge=0)
    wechat_template_per_second: int = Field(default=50, ge=0)
    # Daily quotas, per local day (Asia/Shanghai); 0 means none. Messages beyond one wait `held`
    # until local midnight (no attempt spent). The Official Account's template messages a day (the
    # platform's default 100,000; its error 45009 also means spent), and SMS a day to one number
    # (providers cap it, e.g. Aliyun 10; their per-number limit errors also mean spent).
    wechat_template_daily: int = Field(default=100_000, ge=0)
    sms_daily_per_number: int = Field(default=10, ge=0)
    # A ceiling against a runaway client, well above a business system posting case events at 500/s.
    api_requests_per_minute: int = Field(default=60000, ge=0)
    admin_requests_per_minute: int = Field(default=0, ge=0)
    page_requests_per_minute: int = Field(default=600, ge=0)
    # The public's "was this useful? ask a question" form, per hour: per client address (a service
    # hall's visitors share one, hence generous) and per policy (against a flood of one page).
    feedback_per_address_per_hour: int = Field(default=30, ge=1)
    feedback_per_policy_per_hour: int = Field(default=300, ge=1)
    proxy_hops: int = Field(default=0, ge=0, le=10)

    # The console's staff sign-in: this many failed passwords or codes in a row lock an account for
    # console_lockout_minutes; a session ends console_session_hours after sign-in, or after
    # console_idle_minutes without a request.
    console_max_failures: int = Field(default=5, ge=1)
    console_lockout_minutes: int = Field(default=15, ge=1)
    console_session_hours: float = Field(default=8.0, gt=0)
    console_idle_minutes: float = Field(default=30.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return v

    @field_validator("public_url")
    @classmethod
    def _http_base(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("retry_for_hours")
    @classmethod
    def _retry_window_reachable(cls, v: float, info: ValidationInfo) -> float:
        base, cap = info.data.get("retry_base_seconds"), info.data.get("retry_max_seconds")
        if base and cap:  # else their own errors are reported
            try:
                attempts_for(v * 3600, base, cap)
            except ValueError as exc:
                raise ValueError(f"{exc} with PUSHSVC_RETRY_MAX_SECONDS={cap:g}: raise that, or lower this") from None
        return v

    @model_validator(mode="after")
    def _attempts_cover_retry_window(self) -> Settings:
        # Raised here rather than at each use: every caller of core.retry.ledger_update passes
        # max_attempts, and all of them then keep the window.
        window = attempts_for(self.retry_for_hours * 3600, self.retry_base_seconds, self.retry_max_seconds)
        self.max_attempts = max(self.max_attempts, window)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def send_budget_seconds(self) -> float:
        """How long a job may go on sending (or waiting for a provider's pace): half its time, so
        that what it sent is recorded, and what it did not send handed on, well before the job is
        cancelled at job_timeout_seconds; a message sent but not recorded would go out again."""
        return self.job_timeout_seconds / 2


def unknown_variables(names: Iterable[str], where: str) -> list[str]:
    """A line for each PUSHSVC_ variable in `names` that no setting reads, with the nearest setting."""
    known = [field.upper() for field in Settings.model_fields]
    lines = []
    for name in names:
        upper = name.upper()  # settings are read whatever the case of their names
        if not upper.startswith(PREFIX) or upper.removeprefix(PREFIX) in known or upper in NOT_SETTINGS:
            continue
        # Compared without the prefix, which every name shares and which would make them all look alike.
        nearest = difflib.get_close_matches(upper.removeprefix(PREFIX), known, n=1)
        hint = f"; did you mean {PREFIX}{nearest[0]}?" if nearest else ""
        lines.append(f"{name} ({where}) is not a setting{hint}")
    return lines


def load_settings(**overrides: object) -> Settings:
    """Read settings, naming each bad or unknown PUSHSVC_* variable on a line of its own."""
    lines = unknown_variables(os.environ, "in the environment")
    if ENV_FILE.is_file():
        lines += unknown_variables(dotenv_values(ENV_FILE), f"in {ENV_FILE}")
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            name = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            reason = "is required but not set" if err["type"] == "missing" else err["msg"]
            lines.append(f"setting {name} {reason}")
    else:
        if not lines:
            return settings
    # One problem on one line; several under one heading.
    raise SettingsError("pushsvc cannot start: " + lines[0] if len(lines) == 1
                        else "pushsvc cannot start:\n  " + "\n  ".join(lines))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
