"""The database schema (SQLAlchemy Core). Migrations in `migrations/` must match it."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants room for billions of deliveries.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on both backends, always returned timezone-aware."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def _created() -> sa.Column[datetime]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


departments = sa.Table(
    "departments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("domains", Json, nullable=False),
    # Before keys moved to `api_keys` (migration 0008 copied each there), the department's key;
    # since, a digest of a key never issued, as the column must be unique and not null. Kept because
    # SQLite cannot drop a column of a table other tables' foreign keys point at without turning
    # foreign keys off. Nothing authenticates with it.
    sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("contact_email", sa.String(254)),
    _created(),
    # Console settings a department admin keeps. Staff must use a second factor (TOTP) to sign in.
    sa.Column("require_totp", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Whether a policy sent with an API key is published at once rather than submitted for review.
    # Review needs an approver: a department without one publishes with its keys as before.
    sa.Column("keys_publish_without_review", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Granted by the admin (migration 0015): the department may publish policies with priority "urgent".
    sa.Column("may_send_urgent", sa.Boolean(), nullable=False, server_default=sa.false()),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(254), unique=True),
    sa.Column("phone", sa.String(20), unique=True),
    sa.Column("uscc", sa.String(18), unique=True),
    sa.Column("wechat_openid", sa.String(64)),
    sa.Column("wechat_webhook", sa.String(500)),
    # pending (awaiting confirmation) | active | paused | unsubscribed | erased
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("frequency", sa.String(10), nullable=False, server_default="immediate"),
    sa.Column("locale", sa.String(8), nullable=False, server_default="zh-CN"),
    # Quiet hours for SMS and WeChat as minutes after local midnight; NULL means the default.
    sa.Column("quiet_start", sa.SmallInteger()),
    sa.Column("quiet_end", sa.SmallInteger()),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id")),
    # Who supplied the record: `person` (the self-service pages), `department` (department_id's
    # API key or import) or `admin`. A department reads, changes and merges into only its own.
    # The default is the safest: a record nobody claims is nobody's to change.
    sa.Column("supplied_by", sa.String(12), nullable=False, server_default="person"),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The supplying department's own reference for the record (its registry's id): unique within
    # the department, carried in callbacks as `reference`, cleared on erasure. A unique index, not
    # a constraint: SQLite adds a constraint only by copying the table (migration 0010).
    sa.Column("external_id", sa.String(100)),
    sa.Index(None, "department_id", "external_id", unique=True),
    # No index on status: matching reads subscribers in id order anyway, and one on (status, id)
    # made SQLite look every row up twice.
)

# One row per audience group a subscriber belongs to.
subscriber_audiences = sa.Table(
    "subscriber_audiences",
    metadata,
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("audience", sa.String(40), primary_key=True),
    sa.Index(None, "audience", "subscriber_id"),
)

# A member's attribute values, one row each, so that every targeting clause is a range scan of one
# index (audience, name, value) instead of parsing a JSON document per subscriber. `value` is the
# JSON text of the normalised value (equality and `in` compare it exactly, ISO dates order as text);
# `num` repeats numbers for `gte`/`lte`.
subscriber_attributes = sa.Table(
    "subscriber_attributes",
    metadata,
    sa.Column("subscriber_id", Id, primary_key=True),
    sa.Column("audience", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(600), nullable=False),
    sa.Column("num", sa.Float()),
    sa.ForeignKeyConstraint(
        ["subscriber_id", "audience"],
        ["subscriber_audiences.subscriber_id", "subscriber_audiences.audience"],
        ondelete="CASCADE",
    ),
    sa.Index(None, "audience", "name", "value", "subscriber_id"),
)

# Domain subscriptions; the slug "*" stands for every domain, present and future.
subscriber_domains = sa.Table(
    "subscriber_domains",
    metadata,
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("domain", sa.String(64), primary_key=True),
    sa.Index(None, "domain", "subscriber_id"),
)

# The channels a subscriber currently accepts; a row is removed when they opt out of it.
subscriber_channels = sa.Table(
    "subscriber_channels",
    metadata,
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Index(None, "channel", "subscriber_id"),
)

# Consent as PIPL wants it remembered: who agreed or withdrew, to what, when and through which path.
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # granted | withdrawn | confirmed
    sa.Column("scope", Json, nullable=False),
    sa.Column("source", sa.String(80), nullable=False),
    _created(),
    sa.Index(None, "subscriber_id"),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("domain", sa.String(64), nullable=False),
    sa.Column("doc_number", sa.String(120)),
    sa.Column("url", sa.String(1000)),
    sa.Column("interpretation_url", sa.String(1000)),
    sa.Column("disclosure", sa.String(16), nullable=False),
    sa.Column("produced_on", sa.Date()),
    sa.Column("effective_on", sa.Date()),
    sa.Column("expires_on", sa.Date()),
    sa.Column("publish_at", UTCDateTime()),
    sa.Column("targeting", Json, nullable=False),
    sa.Column("channels", Json, nullable=False),
    # scheduled | publishing | published | repealed | lapsed (no longer in force)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False, server_default="1"),
    # Whether the people who received it are told when it lapses (expires_on passed).
    sa.Column("notify_on_lapse", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("repealed_on", sa.Date()),
    sa.Column("repeal_reason", sa.Text()),
    # Highest subscriber id whose delivery rows are written: where a resumed fan-out restarts.
    sa.Column("fanout_cursor", Id, nullable=False, server_default="0"),
    sa.Column("matched", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("published_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Published with a test key (migration 0014): every outcome comes from the simulator, nothing
    # leaves pushsvc, and no report or figure counts it.
    sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false()),
    # normal | urgent (migration 0015): urgent goes out at once on its own queue, past digests and quiet hours.
    sa.Column("priority", sa.String(8), nullable=False, server_default="normal"),
    # {channel: next channel} tried when a message on the first fails for good; null: none.
    sa.Column("fallback", Json),
    sa.Index(None, "department_id", "id"),
    sa.Index(None, "status", "publish_at"),
)

# The public index of policies (/policies and its feeds; migration 0016): one row per proactively
# disclosed policy not sent with a test key, rewritten in the transaction of every change to it.
# `terms` are pushsvc.core.search_terms' (words and filters alike); `sort_key` orders the index
# newest first; `changed_at` is the last change the public saw (a feed entry's `updated`). The
# full-text index over `terms` is each database's own, made by the migration: on SQLite an FTS5
# table `policy_search_fts` (external content, kept by triggers), on PostgreSQL `terms` is a
# tsvector with the GIN index `ix_policy_search_terms`.
policy_search = sa.Table(
    "policy_search",
    metadata,
    sa.Column("sort_key", Id, primary_key=True, autoincrement=False),  # SQLite: the rowid, FTS5's too
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), nullable=False, unique=True),
    sa.Column("terms", sa.Text().with_variant(TSVECTOR(), "postgresql"), nullable=False),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
)
SEARCH_FTS_TABLE = "policy_search_fts"
SEARCH_GIN_INDEX = "ix_policy_search_terms"


def declared(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's `include_object` for comparing a database with this module (autogenerate,
    tests/test_migrations.py): the full-text index objects above are made by migration 0016 and
    cannot be declared here, so the comparison leaves them alone."""
    if type_ == "table" and name is not None:
        return not (name == SEARCH_FTS_TABLE or name.startswith(SEARCH_FTS_TABLE + "_"))
    return not (type_ == "index" and name == SEARCH_GIN_INDEX)


# The delivery ledger: one row per policy x notice x subscriber x channel. Notice 0 is the policy
# itself; notice n its n-th lifecycle notice (policy_notices), sent to those who received notice 0.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), nullable=False),
    sa.Column("notice", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id"), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    # queued | sending | sent | delivered | failed | held (quiet hours, a provider's pace: until
    # next_attempt_at) | digest (waiting for the subscriber's digest; a retry not before next_attempt_at)
    # | suppressed (the contact is on the suppression list: never sent; error holds the reason)
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text()),
    sa.Column("provider_ref", sa.String(100)),
    sa.Column("next_attempt_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("delivered_at", UTCDateTime()),
    # Which of the channel's providers took the message (SMS: aliyun | tencent | generic; migration 0011).
    sa.Column("provider", sa.String(16)),
    # The row (same policy, notice and subscriber) whose failure for good this one falls back from.
    sa.Column("fallback_of", Id),
    sa.UniqueConstraint("policy_id", "notice", "subscriber_id", "channel"),
    sa.Index(None, "policy_id", "channel", "status"),
    sa.Index(None, "status", "updated_at"),
    sa.Index(None, "provider_ref"),
)

# A policy's revisions after the first: what each changed, [{field, before, after}] (JSON values).
policy_revisions = sa.Table(
    "policy_revisions",
    metadata,
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), primary_key=True),
    sa.Column("revision", sa.Integer(), primary_key=True),
    sa.Column("changes", Json, nullable=False),
    _created(),
)

# Lifecycle notices told to a policy's earlier recipients: `seq` is the ledger's `notice`.
# `details` holds what the message says beyond the policy: revised {changes}, repealed
# {reason, repealed_on}, lapsed {expires_on}.
policy_notices = sa.Table(
    "policy_notices",
    metadata,
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), primary_key=True),
    sa.Column("seq", sa.SmallInteger(), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # revised | repealed | lapsed
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("details", Json, nullable=False),
    _created(),
)

# A digest as sent: the policies of one period, listed on its page /d/{token}. Subscribers whose
# lists are the same in one run share one row (and its short link).
digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(8), nullable=False),  # daily | weekly
    sa.Column("period_start", sa.Date(), nullable=False),
    sa.Column("period_end", sa.Date(), nullable=False),
    sa.Column("policy_ids", Json, nullable=False),
    _created(),
)

# A repeated Idempotency-Key returns the first response and starts nothing.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.SmallInteger(), nullable=False),
    sa.Column("response", Json, nullable=False),
    _created(),
)

# Short links (/s/{code}) for SMS, WeChat and QR codes; a code never changes once issued.
short_links = sa.Table(
    "short_links",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("target", sa.String(500), nullable=False, unique=True),
    _created(),
)

# Cases (issue 6): an applicant's application to a department, followed step by step.
cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("case_no", sa.String(64), nullable=False),
    sa.Column("service_item", sa.String(200), nullable=False),
    sa.Column("applicant_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254)),
    sa.Column("phone", sa.String(20)),
    sa.Column("wechat_openid", sa.String(64)),
    sa.Column("locale", sa.String(8), nullable=False),
    sa.Column("channels", Json, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("time_limit_days", sa.SmallInteger()),
    sa.Column("started_on", sa.Date(), nullable=False),  # local date the time limit counts from
    sa.Column("due_on", sa.Date()),
    sa.Column("latest_at", UTCDateTime()),  # occurred_at of the latest event that moved the status
    sa.Column("last_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("page_token", sa.String(200), nullable=False),
    sa.Column("short_code", sa.String(16), nullable=False),
    sa.Column("alerted_at", UTCDateTime()),  # the department was told it reached 80% of its time
    # One worker sends a case's messages at a time: it holds this lease while it does.
    sa.Column("lease_owner", sa.String(32)),
    sa.Column("lease_until", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("department_id", "case_no"),
    sa.Index(None, "status", "due_on"),
)

# The timeline: every event posted, in arrival order (`seq`, per case). `applied` is false for an
# event older than the case's latest: recorded, but it moved nothing and sent nothing.
case_events = sa.Table(
    "case_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("note", sa.Text()),
    sa.Column("applied", sa.Boolean(), nullable=False),
    _created(),
    sa.UniqueConstraint("case_id", "seq"),
    sa.UniqueConstraint("case_id", "event_id"),
)

# The applicants' ledger: one row per event x channel, sent in `seq` order per case and channel.
case_notifications = sa.Table(
    "case_notifications",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("case_id", Id, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("event_seq", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    # queued | held | sent | delivered | failed
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text()),
    sa.Column("provider_ref", sa.String(100)),
    sa.Column("next_attempt_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("delivered_at", UTCDateTime()),  # from the provider's receipt
    sa.UniqueConstraint("case_id", "event_seq", "channel"),
    sa.Index(None, "status", "updated_at"),
    sa.Index(None, "provider_ref"),  # receipts find their message by it
)

# A department's API keys, several per department, each named; only a digest of the key is kept.
# `test` keys (psk_test_…) are for integrations against simulated contacts. A revoked key stays,
# with revoked_at, so that the audit log's actors keep meaning something.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # live | test
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),  # the key's first characters, to recognise it by
    _created(),
    sa.Column("last_used_at", UTCDateTime()),  # written at most once a minute per key
    sa.Column("revoked_at", UTCDateTime()),
    sa.Index(None, "department_id", "id"),
)

# Who read or changed whose personal data: one row per subscriber concerned (a listing or an
# import writes many), or one with no subscriber for an act on no person (a key issued). The
# service only ever inserts here; rows older than the retention period are deleted by
# `pushsvc audit purge` and nothing else. No foreign keys: an entry outlives its subscriber's
# erasure and must not stop it.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(80), nullable=False),  # admin | department:<id>:key:<key id> | subscriber:<id> | cli
    sa.Column("department_id", Id),  # the acting department's, so that it finds its own entries
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("subscriber_id", Id),
    sa.Column("request_id", sa.String(64)),
    sa.Column("detail", Json),
    sa.Index(None, "department_id", "id"),
    sa.Index(None, "subscriber_id", "id"),
    sa.Index(None, "at"),
)

# People who sign in to the console. A department's drafters, approvers and admins belong to it; the
# city's overseers (open-government office) to none. `password_hash` is argon2id; a single sign-on
# account (OIDC, later) has none and is found by (sso_issuer, sso_subject). A person is never
# deleted, only disabled, so that the history of what they did keeps its names.
staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id")),  # NULL for an overseer
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),  # drafter | approver | department_admin | overseer
    sa.Column("password_hash", sa.String(200)),
    sa.Column("sso_issuer", sa.String(300)),
    sa.Column("sso_subject", sa.String(200)),
    sa.Column("totp_secret", sa.String(64)),  # base32; set once the person confirmed a first code
    sa.Column("totp_last_step", sa.BigInteger()),  # a code is good once: the last time step used
    # Where the person's test sends go (their own contacts, not a subscriber's).
    sa.Column("email", sa.String(254)),
    sa.Column("phone", sa.String(20)),
    sa.Column("wechat_openid", sa.String(64)),
    sa.Column("failed_logins", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("locked_until", UTCDateTime()),
    sa.Column("disabled_at", UTCDateTime()),
    sa.Column("password_changed_at", UTCDateTime()),
    sa.Column("last_login_at", UTCDateTime()),
    _created(),
    sa.UniqueConstraint("sso_issuer", "sso_subject"),
    sa.Index(None, "department_id", "id"),
)

# Console sessions, server side: the cookie carries a random id, the table its SHA-256. Revoking
# (signing out, a department admin ending someone's sessions, disabling the person) sets
# revoked_at, and the next request is refused. `second_factor_due` marks a session that passed the
# password and still owes its TOTP code: it opens nothing but the code form.
staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("staff_id", Id, sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("second_factor_due", sa.Boolean(), nullable=False, server_default=sa.false()),
    _created(),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Column("user_agent", sa.String(200)),
    sa.Index(None, "staff_id", "id"),
)

# A policy on its way through review: a new policy, a revision of a published one (`policy_id`
# set, `body` the changed fields) or a repeal (`body` {"reason"}). `body` is the API's request body
# as the clerk typed it, so a draft may be incomplete; it is checked on submit and on publish.
# status: draft | submitted | approved | returned | published | scheduled | withdrawn.
# `version` goes up on every change: an approval names the version it saw, and a draft changed
# since is not published.
policy_drafts = sa.Table(
    "policy_drafts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # new | revise | repeal
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id")),  # revised/repealed, or once published
    sa.Column("body", Json, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("created_by", sa.String(80), nullable=False),  # an audit actor: department:<d>:staff:<id>, or a key's
    sa.Column("submitted_by", sa.String(80)),
    sa.Column("submitted_at", UTCDateTime()),
    sa.Column("approved_by", sa.String(80)),
    sa.Column("approved_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "department_id", "status", "id"),
)

# Every step of a draft: who, when, what (saved | submitted | returned | approved | published |
# scheduled | withdrawn | test_sent), the reviewer's comment, and the draft's version at the time.
draft_events = sa.Table(
    "draft_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("draft_id", Id, sa.ForeignKey("policy_drafts.id"), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", sa.String(80), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("comment", sa.Text()),
    sa.Index(None, "draft_id", "id"),
)

# A parametric QR code of the Official Account (a poster in a service hall): the department whose
# poster it is, the domains and audience groups whoever follows through it subscribes to, and the
# platform's ticket and URL. expires_at NULL: a permanent code.
wechat_scenes = sa.Table(
    "wechat_scenes",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("domains", Json, nullable=False),
    sa.Column("audiences", Json, nullable=False),
    sa.Column("ticket", sa.String(200)),
    sa.Column("url", sa.String(300)),
    sa.Column("expires_at", UTCDateTime()),
    _created(),
)
# The Official Account's events name a follower by openid: unsubscribe and scans look them up.
sa.Index("ix_subscribers_wechat_openid", subscribers.c.wechat_openid)

# Contacts nothing is sent to any more: kind email | phone | wechat (an openid), the contact as a
# keyed digest (core.verification.ContactKeys, over the kind and the contact as subscribers hold
# it), so that erasing a person leaves their address in no table while it stays suppressed;
# reason hard_bounce | invalid_number | wechat_refused | reply_r | complaint, detail (a DSN status,
# a provider's code). Proving the contact again lifts it (lifted_at); one open row per contact.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("contact_digest", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("detail", sa.String(100)),
    _created(),
    sa.Column("lifted_at", UTCDateTime()),
    sa.Index("ix_suppressions_open", "contact_digest", unique=True,
             sqlite_where=sa.text("lifted_at IS NULL"), postgresql_where=sa.text("lifted_at IS NULL")),
)

# Where a department's system is told of its messages' status changes (migration 0014). The bearer
# token is kept encrypted (AES-GCM under a key derived from PUSHSVC_SECRET_KEY) and never shown.
# One poster at a time per department (`lease_until`), so that its events go out in order;
# `next_attempt_at`: when the head of its backlog is tried again after a failure.
callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), primary_key=True),
    sa.Column("url", sa.String(1000), nullable=False),
    sa.Column("bearer_token", sa.String(400), nullable=False),
    sa.Column("last_error", sa.String(200)),
    sa.Column("last_error_at", UTCDateTime()),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# The callbacks' outbox: one row per status change, written in the transaction that changes the
# ledger row, so that a change is never told without having happened nor happens without being
# told. Posted in id order per department; `sent_at` is set only after the receiver's 2xx, and
# `given_up_at` once the event waited 24 hours. (An outbox rather than a cursor over the ledgers:
# a row moves sent -> delivered within a second, and a cursor would see only where it ended.)
callback_events = sa.Table(
    "callback_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("department_id", Id, nullable=False),
    sa.Column("payload", Json, nullable=False),
    _created(),
    sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default="0"),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("given_up_at", UTCDateTime()),
    # The backlog of a department, oldest first: what the poster reads and GET /v1/callback counts.
    sa.Index("ix_callback_events_backlog", "department_id", "id",
             sqlite_where=sa.text("sent_at IS NULL AND given_up_at IS NULL"),
             postgresql_where=sa.text("sent_at IS NULL AND given_up_at IS NULL")),
    sa.Index(None, "created_at"),
)

# A subscriber following a policy (migration 0017): told of its revisions, repeal and lapse like
# the people it reached, on the channels they receive by, whether or not the policy reached them.
policy_follows = sa.Table(
    "policy_follows",
    metadata,
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), primary_key=True),
    sa.Column("subscriber_id", Id, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    _created(),
    sa.Index(None, "subscriber_id"),
)

# Visitors of a policy's page per channel and day (migration 0017): a count, nobody in it. Who was
# already counted that day lives in Redis as a keyed hash that expires with the day.
policy_visits = sa.Table(
    "policy_visits",
    metadata,
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),  # email | sms | wechat | qr | web
    sa.Column("day", sa.Date(), primary_key=True),  # Asia/Shanghai
    sa.Column("visitors", sa.Integer(), nullable=False),
)

# What the public tells a department about a policy (migration 0018). A rating holds nobody: only
# the policy, the verdict and when.
policy_ratings = sa.Table(
    "policy_ratings",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), nullable=False),
    sa.Column("useful", sa.Boolean(), nullable=False),
    _created(),
    sa.Index(None, "policy_id", "useful"),
)

# A question about a policy and the department's answer (migration 0018). `contact` (an e-mail
# address or a normalised mobile number; `contact_kind` email | sms) is kept only to send the
# answer: it is cleared (`contact_erased_at`) a retention period after the answer went out, or
# after a longer one unanswered; the asker's own link deletes the whole row. `public`: the answer
# shows on the policy page, with the question and never the contact.
policy_questions = sa.Table(
    "policy_questions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("policy_id", Id, sa.ForeignKey("policies.id"), nullable=False),
    sa.Column("department_id", Id, sa.ForeignKey("departments.id"), nullable=False),
    sa.Column("question", sa.Text(), nullable=False),
    sa.Column("contact_kind", sa.String(8)),
    sa.Column("contact", sa.String(254)),
    sa.Column("locale", sa.String(8), nullable=False),
    _created(),
    sa.Column("answer", sa.Text()),
    sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("answered_at", UTCDateTime()),
    sa.Column("answered_by", sa.String(80)),
    sa.Column("answer_sent_at", UTCDateTime()),
    sa.Column("answer_error", sa.String(200)),
    sa.Column("contact_erased_at", UTCDateTime()),
    sa.Index(None, "department_id", "id"),
    sa.Index(None, "policy_id", "public"),
)

# Which subscribers' audience data changed (migration 0019): one row per subscriber per writing
# transaction, in the same transaction, so an API process's in-memory reach index re-reads just
# those after they commit. No foreign key: an entry may outlive a purged request. Pruned by age.
subscriber_changes = sa.Table(
    "subscriber_changes",
    metadata,
    sa.Column("seq", Id, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", Id, nullable=False),
)
