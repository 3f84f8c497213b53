"""`pushsvc demo --once` end to end, as a user runs it: its own database, Redis DB, stand-ins and worker;
and the sample data it and the benches use."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.catalogue import load_catalogue
from pushsvc.core.identifiers import normalise_phone
from pushsvc.core.subscribers import validate_subscriber
from pushsvc.dev.demo import demo_redis_url
from pushsvc.dev.demo_data import SampleFactory, csv_text, samples
from pushsvc.settings import REPO_ROOT


def test_demo_once_delivers_on_every_channel_and_says_where(tmp_path: Path) -> None:
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
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    var = tmp_path / "var"
    with sqlite3.connect(var / "demo.db") as db:
        rows = db.execute("SELECT channel, status IN ('sent', 'delivered'), count(*) FROM deliveries GROUP BY 1, 2")
        ledger = {(channel, bool(ok)): n for channel, ok, n in rows}
    # What each stand-in recorded, as the demo saved its /_stub/messages.
    sms = json.loads((var / "demo-sms.json").read_text(encoding="utf-8"))
    wechat = json.loads((var / "demo-wechat.json").read_text(encoding="utf-8"))
    received = {
        "email": len(list((var / "demo-mail").glob("*.eml"))),
        "sms": sum(r["code"] == "OK" for request in sms for r in request["results"]),
        "wechat": len(wechat),
    }
    for channel, count in received.items():
        assert ledger.get((channel, False), 0) == 0, ledger
        assert count == ledger.get((channel, True)) and count > 20, (channel, received, ledger)
    assert {m["kind"] for m in wechat} == {"webhook", "template"}  # organisations' robots and people's openids
    assert all(m["text"].startswith("【") and "/s/" in m["text"] for m in sms)

    page = re.search(r"http://127\.0\.0\.1:\d+/p/\d+", output)
    assert page, output[-4000:]
    for where in (f"{page[0]}/qr.png", f"{page[0]}/poster", "/_stub/messages", "render?channel=sms", "00:00-00:00"):
        assert where in output, (where, output[-4000:])
    assert not configured.exists()  # the configured database is never the demo's


def test_demo_on_both_cloud_stand_ins_shows_receipts_and_the_failover(tmp_path: Path) -> None:
    # PUSHSVC_DEMO_SMS=both: Aliyun's stand-in first, told to fail midway; Tencent Cloud's takes over.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHSVC_")} | {
        "PUSHSVC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'configured.db'}",
        "PUSHSVC_REDIS_URL": "redis://127.0.0.1:6379/12", "PUSHSVC_DEMO_REDIS_DB": "12",
        "PUSHSVC_DEMO_SMS": "both", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "pushsvc.cli", "demo", "--once"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]

    var = tmp_path / "var"
    with sqlite3.connect(var / "demo.db") as db:
        rows = dict(db.execute("SELECT provider, count(*) FROM deliveries WHERE channel = 'sms' AND status = 'delivered' "
                               "GROUP BY 1").fetchall())
        assert db.execute("SELECT count(*) FROM deliveries WHERE channel = 'sms' AND status != 'delivered'").fetchone() == (0,)
    took = {name: [r["phone_number"] for request in json.loads((var / f"demo-sms-{name}.json").read_text(encoding="utf-8"))
                   for r in request["results"] if r.get("message_id")] for name in ("aliyun", "tencent")}
    assert rows == {name: len(numbers) for name, numbers in took.items()} and all(rows.values()), (rows, took)
    assert len(set(took["aliyun"] + took["tencent"])) == sum(rows.values())  # every number once
    # The summary: per provider what it took, its receipts and failures, and the failover.
    table = output[output.index("SMS per provider"):]
    for name, label in (("aliyun", "Aliyun"), ("tencent", "Tencent Cloud")):
        assert re.search(rf"{label}\s+{rows[name]}\s+{rows[name]}\s+0\s", table), table
    refused = re.search(r"failover: Aliyun refused (\d+) requests", table)
    assert refused and int(refused[1]) >= 1, table


@pytest.mark.parametrize("mixed", [False, True])
def test_sample_subscribers_pass_validation_and_import_columns(mixed: bool) -> None:
    catalogue = load_catalogue(REPO_ROOT / "audiences")
    robot_origin = "http://127.0.0.1:9"
    subs = list(samples(catalogue, 300, mixed_channels=mixed, robot_webhook=f"{robot_origin}/cgi-bin/webhook/send"))
    assert len({s.email for s in subs}) == 300
    assert {g for s in subs for g in s.audiences} == set(catalogue.groups)
    assert len({a["district"] for s in subs for a in s.audiences.values()}) == len(catalogue.districts)
    for sub in subs:
        data = {"name": sub.name, "email": sub.email, "phone": sub.phone, "audiences": sub.audiences,
                "domains": list(sub.domains), "channels": list(sub.channels), "locale": sub.locale,
                "wechat": {"openid": sub.wechat_openid, "webhook_url": sub.wechat_webhook}}
        checked, errors = validate_subscriber(data, catalogue, CHANNEL_CONTACTS, (robot_origin,))
        assert checked is not None, (sub, errors)
        assert sub.phone is None or normalise_phone(sub.phone) == sub.phone
        for slug, attrs in sub.audiences.items():
            required = {n for n, a in catalogue.groups[slug].attributes.items() if a.required}
            assert required <= set(attrs)
    if mixed:
        assert {c for s in subs for c in s.channels} == {"email", "sms", "wechat"}
        assert all(s.wechat_openid or s.wechat_webhook for s in subs if "wechat" in s.channels)
        phones = [s.phone for s in subs if s.phone]
        assert len(set(phones)) == len(phones) > 50
        assert len({s.wechat_webhook for s in subs if s.wechat_webhook}) > 20  # a robot per organisation
    else:
        assert all(s.channels == ("email",) and s.phone is s.wechat_openid is s.wechat_webhook is None for s in subs)
    header = csv_text(catalogue, subs[:1]).splitlines()[0]
    assert "enterprise.uscc" in header and "tech_talent.talent_tier" in header and "wechat_webhook" in header
    # Deterministic: the same seed gives the same people.
    assert SampleFactory(catalogue, seed=7, mixed_channels=mixed).make(0) == SampleFactory(
        catalogue, seed=7, mixed_channels=mixed).make(0)


def test_demo_redis_url_keeps_the_server_and_picks_the_database() -> None:
    assert demo_redis_url("redis://:pw@cache.local:6380/0", 14) == "redis://:pw@cache.local:6380/14"
    assert demo_redis_url("redis://127.0.0.1:6379", 14) == "redis://127.0.0.1:6379/14"
    assert demo_redis_url("unix:///run/redis.sock?db=2", 14) == "unix:///run/redis.sock?db=14"
