"""`pushsvc demo --once` end to end, as a user runs it: its own database, Redis DB, sink and worker."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from pushsvc.core.catalogue import load_catalogue
from pushsvc.core.subscribers import validate_subscriber
from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.demo import demo_redis_url
from pushsvc.demo_data import SampleFactory, csv_text, samples
from pushsvc.settings import REPO_ROOT


def test_demo_once_delivers_every_mail_and_says_where(tmp_path: Path) -> None:
    # No .env in the working directory and no secrets in the environment: the demo makes its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")}
    configured = tmp_path / "configured.db"
    env |= {
        "PUSHSVC_DATABASE_URL": f"sqlite+aiosqlite:///{configured}",
        "PUSHSVC_REDIS_URL": "redis://127.0.0.1:6379/12",
        "PUSHSVC_DEMO_REDIS_DB": "12",
        "COLUMNS": "200",  # rich wraps at 80 columns without a terminal
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pushsvc.cli", "demo", "--once"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    with sqlite3.connect(tmp_path / "var" / "demo.db") as db:
        [(sent,)] = db.execute("SELECT count(*) FROM deliveries WHERE status IN ('sent', 'delivered')").fetchall()
        [(other,)] = db.execute("SELECT count(*) FROM deliveries WHERE status NOT IN ('sent', 'delivered')").fetchall()
    mails = list((tmp_path / "var" / "demo-mail").glob("*.eml"))
    assert sent > 50 and other == 0 and len(mails) == sent
    assert re.search(r"http://127\.0\.0\.1:\d+/p/\d+", output), output[-4000:]
    assert not configured.exists()  # the configured database is never the demo's


def test_sample_subscribers_pass_validation_and_import_columns() -> None:
    catalogue = load_catalogue(REPO_ROOT / "audiences")
    subs = list(samples(catalogue, 300))
    assert len({s.email for s in subs}) == 300
    assert {g for s in subs for g in s.audiences} == set(catalogue.groups)
    assert len({a["district"] for s in subs for a in s.audiences.values()}) == len(catalogue.districts)
    for sub in subs:
        data = {"name": sub.name, "email": sub.email, "audiences": sub.audiences, "domains": list(sub.domains),
                "channels": list(sub.channels), "locale": sub.locale}
        checked, errors = validate_subscriber(data, catalogue, CHANNEL_CONTACTS, ())
        assert checked is not None, (sub, errors)
        for slug, attrs in sub.audiences.items():
            required = {n for n, a in catalogue.groups[slug].attributes.items() if a.required}
            assert required <= set(attrs)
    header = csv_text(catalogue, subs[:1]).splitlines()[0]
    assert "enterprise.uscc" in header and "tech_talent.talent_tier" in header
    # Deterministic: the same seed gives the same people.
    assert SampleFactory(catalogue, seed=7).make(0) == SampleFactory(catalogue, seed=7).make(0)


def test_demo_redis_url_keeps_the_server_and_picks_the_database() -> None:
    assert demo_redis_url("redis://:pw@cache.local:6380/0", 14) == "redis://:pw@cache.local:6380/14"
    assert demo_redis_url("redis://127.0.0.1:6379", 14) == "redis://127.0.0.1:6379/14"
    assert demo_redis_url("unix:///run/redis.sock?db=2", 14) == "unix:///run/redis.sock?db=14"
