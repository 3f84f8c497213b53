"""The console's roster (issue 15, item 6): search with contacts masked, one record read (audited),
corrected with errors beside their fields, erased after a confirmation; a CSV import run by a real
worker with its progress, summary and rejected rows; the audit log page. Rights: a department's
drafters, approvers and admins change its records, an overseer reads, another department finds
nothing, a visitor is sent to sign in."""

from __future__ import annotations

import csv
import html as html_lib
import io
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushsvc.settings import Settings
from pushsvc.store.schema import audit_log, subscribers
from tests.conftest import Api, Workers, eventually, screenshot_path
from tests.console_helpers import ConsoleClient, form_token, make_staff, signed_in
from tests.test_ownership import aid_recipient


async def setup(api: Api) -> dict[str, Any]:
    """Two departments, a record of each, and a drafter of each signed in."""
    a = await api.department("市民政局", ["social-assistance"])
    b = await api.department("市人社局", ["social-insurance"])
    status, mine = await api.call("POST", "/v1/subscribers", a["api_key"], json=aid_recipient(
        "wang.wu@example.com", phone="+8613800138000", external_id="MZ-1"))
    assert status == 201, mine
    status, theirs = await api.call("POST", "/v1/subscribers", b["api_key"], json=aid_recipient(
        "li.si@example.com", domains=["social-insurance"]))
    assert status == 201, theirs
    drafter = await make_staff(api, a["id"], "drafter")
    other = await make_staff(api, b["id"], "drafter")
    return {"a": a, "b": b, "mine": mine, "theirs": theirs,
            "drafter": await signed_in(api, drafter["username"], drafter["password"]),
            "other": await signed_in(api, other["username"], other["password"])}


async def close(*clients: ConsoleClient) -> None:
    for client in clients:
        await client.close()


async def audit_rows(settings: Settings, action: str) -> list[Any]:
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log).where(audit_log.c.action == action))).all()
    await engine.dispose()
    return list(rows)


def error_beside(html: str, field_id: str) -> str:
    found = re.search(rf'id="{re.escape(field_id)}-error">([^<]*)<', html)
    assert found, html[:3000]
    return html_lib.unescape(found.group(1))


async def test_search_masks_contacts_and_keeps_departments_apart(api: Api, settings: Settings) -> None:
    s = await setup(api)
    drafter, other = s["drafter"], s["other"]
    visitor = ConsoleClient(api)
    status, _, headers = await visitor.get("/console/roster")
    assert status == 303 and headers["Location"].startswith("/console/login")
    await visitor.close()

    status, html, _ = await drafter.get("/console/roster?q=wang.wu")
    assert status == 200 and f'href="/console/roster/{s["mine"]["id"]}"' in html
    assert "w***@example.com" in html and "+86138****8000" in html and "wang.wu@example.com" not in html
    status, html, _ = await drafter.get("/console/roster?q=138 0013 8000")
    assert f'href="/console/roster/{s["mine"]["id"]}"' in html
    status, html, _ = await drafter.get("/console/roster?q=li.si")
    assert f'/console/roster/{s["theirs"]["id"]}"' not in html
    status, html, _ = await drafter.get("/console/roster?status=nonsense")
    assert status == 200 and "must be one of" in html

    # One record, whole, and the reading in the audit log; another department's: not found.
    status, html, _ = await drafter.get(f"/console/roster/{s['mine']['id']}")
    assert status == 200 and "wang.wu@example.com" in html and "MZ-1" in html
    status, _, _ = await other.get(f"/console/roster/{s['mine']['id']}")
    assert status == 404
    status, _, _ = await other.get(f"/console/roster/{s['mine']['id']}/edit")
    assert status == 404

    # The city's overseer reads every department's records, and its reading is recorded; it changes nothing.
    person = await make_staff(api, None, "overseer")
    overseer = await signed_in(api, person["username"], person["password"])
    status, html, _ = await overseer.get("/console/roster")
    assert f'/console/roster/{s["theirs"]["id"]}"' in html and f'/console/roster/{s["mine"]["id"]}"' in html
    status, html, _ = await overseer.get(f"/console/roster/{s['theirs']['id']}")
    assert status == 200 and "li.si@example.com" in html and "/edit" not in html
    status, _, _ = await overseer.get(f"/console/roster/{s['theirs']['id']}/edit")
    assert status == 403
    reads = await audit_rows(settings, "subscriber.read")
    assert {(r.actor, r.subscriber_id) for r in reads} >= {
        (f"department:{s['a']['id']}:staff:{drafter_id(reads, s['a']['id'])}", s["mine"]["id"]),
        (f"overseer:{person['id']}", s["theirs"]["id"])}
    await close(drafter, other, overseer)


def drafter_id(entries: list[Any], department_id: int) -> str:
    return next(r.actor.rsplit(":", 1)[1] for r in entries if r.actor.startswith(f"department:{department_id}:staff:"))


async def test_edit_shows_errors_beside_fields_and_keeps_what_was_typed(api: Api, settings: Settings) -> None:
    s = await setup(api)
    drafter, sid = s["drafter"], s["mine"]["id"]
    path = f"/console/roster/{sid}/edit"
    status, html, _ = await drafter.get(path)
    assert status == 200 and 'value="wang.wu@example.com"' in html and 'value="MZ-1"' in html
    token = form_token(html, path)
    form = [("csrf_token", token), ("name", "王五五"), ("email", "not-an-address"), ("phone", "+8613800138000"),
            ("external_id", "MZ-7"), ("frequency", "weekly"), ("locale", "zh-CN"), ("quiet_hours", ""),
            ("wechat_openid", ""), ("wechat_webhook", ""), ("channel", "email"), ("channel", "sms"),
            ("domain", "social-assistance"), ("aid_recipient.member", "1"), ("aid_recipient.district", "haizhu"),
            ("aid_recipient.assistance_type", "dibao"), ("aid_recipient.household_size", "many")]
    status, html, _ = await drafter.request("POST", path, data=form)
    assert status == 422
    assert "@" in error_beside(html, "f-email")
    assert error_beside(html, "f-aid_recipient.household_size")
    assert 'value="not-an-address"' in html and 'value="王五五"' in html and 'value="MZ-7"' in html and 'value="many"' in html
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(subscribers).where(subscribers.c.id == sid))).one()
    await engine.dispose()
    assert row.name == "王五" and row.email == "wang.wu@example.com"  # nothing written

    fixed = [(k, "wang.wu5@example.com" if k == "email" else "4" if k.endswith("household_size") else v)
             for k, v in form if k != "csrf_token"]
    status, html, _ = await drafter.request("POST", path, data=[("csrf_token", form_token(html, path)), *fixed])
    assert status == 303, html[:2000]
    status, body = await api.call("GET", f"/v1/subscribers/{sid}", s["a"]["api_key"])
    assert body["email"] == "wang.wu5@example.com" and body["name"] == "王五五" and body["external_id"] == "MZ-7"
    assert body["frequency"] == "weekly" and body["channels"] == ["email", "sms"]
    assert body["audiences"]["aid_recipient"]["household_size"] == 4
    # Without the form's token: refused, nothing changed.
    status, _, _ = await drafter.request("POST", path, data=[("csrf_token", "forged"), *fixed[:1], ("name", "X")])
    assert status == 422
    status, again = await api.call("GET", f"/v1/subscribers/{sid}", s["a"]["api_key"])
    assert again["name"] == "王五五"
    await close(drafter, s["other"])


async def test_delete_asks_then_erases(api: Api, settings: Settings) -> None:
    s = await setup(api)
    drafter, other, sid = s["drafter"], s["other"], s["mine"]["id"]
    status, _, _ = await other.get(f"/console/roster/{sid}/delete")
    assert status == 404
    status, html, _ = await drafter.get(f"/console/roster/{sid}/delete")
    assert status == 200 and f'action="/console/roster/{sid}/delete"' in html
    status, _, headers = await drafter.post(f"/console/roster/{sid}/delete", {}, page=f"/console/roster/{sid}/delete")
    assert status == 303 and headers["Location"] == "/console/roster?done=erased"
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(subscribers).where(subscribers.c.id == sid))).one()
    await engine.dispose()
    assert row.status == "erased" and row.email is None and row.phone is None and row.external_id is None
    status, _, _ = await drafter.get(f"/console/roster/{sid}")
    assert status == 404
    [erase] = await audit_rows(settings, "subscriber.erase")
    assert erase.actor.startswith(f"department:{s['a']['id']}:staff:")
    await close(drafter, other)


CSV_HEADER = "name,email,phone,domains,channels,external_id,aid_recipient.district,aid_recipient.assistance_type"


async def test_import_runs_in_a_worker_with_progress_and_rejected_rows(api: Api, workers: Workers) -> None:
    s = await setup(api)
    drafter, other = s["drafter"], s["other"]
    rows = [f"居民{i},r{i}@example.com,,social-assistance,email,R-{i},haizhu,dibao" for i in range(1, 1201)]
    rows[9] = "坏行,not-an-email,,social-assistance,email,,haizhu,dibao"  # row 11
    rows[499] = "坏行二,bad2@example.com,,social-assistance,email,,nowhere,dibao"  # row 501
    rows[1099] = "重复,r1@example.com,,social-assistance,email,R-1100,haizhu,dibao"  # row 1101: merged into row 2's
    upload = "\n".join([CSV_HEADER, *rows]) + "\n"
    status, html, _ = await drafter.get("/console/roster/import")
    assert status == 200
    token = form_token(html, "/console/roster/import")
    status, html, headers = await drafter.request("POST", "/console/roster/import", data={
        "csrf_token": token, "file": io.BytesIO(upload.encode())})
    assert status == 303, html[:2000]
    page = headers["Location"]
    status, html, _ = await drafter.get(page)
    assert status == 200 and "<progress" in html and 'http-equiv="refresh"' in html
    status, _, _ = await other.get(page)
    assert status == 404  # another department's import

    workers.start()
    seen: list[int] = []

    async def finished() -> dict[str, Any] | None:
        status, text, _ = await drafter.get(page + "/progress")
        assert status == 200, text
        state = json.loads(text)
        seen.append(state["percent"])
        return state if state["status"] == "done" else None

    state = await eventually(finished, timeout=60)
    assert state["percent"] == 100 and seen == sorted(seen)
    assert (state["imported"], state["merged"], state["rejected"]) == (1197, 1, 2)
    status, html, _ = await drafter.get(page)
    assert 'value="100"' in html and "/rejected" in html and 'http-equiv="refresh"' not in html

    status, text, headers = await drafter.get(page + "/rejected")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert lines[0] == ["row", "field", "message", *CSV_HEADER.split(",")]
    # One line per error: row 11's address is bad, and so its e-mail channel has no contact.
    assert [(line[0], line[1]) for line in lines[1:]] == [
        ("11", "email"), ("11", "channels[0]"), ("501", "audiences.aid_recipient.district")]
    assert lines[1][3:] == rows[9].split(",") and lines[3][3:] == rows[499].split(",")
    status, body = await api.call("GET", "/v1/subscribers?external_id=R-1200", s["a"]["api_key"])
    assert [i["email"] for i in body["items"]] == ["r1200@example.com"]
    await close(drafter, other)


async def test_audit_page_shows_the_reads(api: Api) -> None:
    s = await setup(api)
    drafter, other, sid = s["drafter"], s["other"], s["mine"]["id"]
    await drafter.get(f"/console/roster/{sid}")
    status, html, _ = await drafter.get(f"/console/audit?subscriber={sid}")
    assert status == 200 and "subscriber.read" in html and "subscriber.create" in html
    status, html, _ = await drafter.get(f"/console/audit?actor=department:{s['a']['id']}:staff")
    assert "subscriber.read" in html and "subscriber.create" not in html
    status, html, _ = await drafter.get("/console/audit?from=2026-13-01")
    assert status == 422 and error_beside(html, "a-from")
    # The other department sees none of it.
    status, html, _ = await other.get(f"/console/audit?subscriber={sid}")
    assert status == 200 and "subscriber.read" not in html
    person = await make_staff(api, None, "overseer")
    overseer = await signed_in(api, person["username"], person["password"])
    status, html, _ = await overseer.get(f"/console/audit?department={s['a']['id']}&subscriber={sid}")
    assert "subscriber.read" in html
    await close(drafter, other, overseer)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser adds nothing a second database would notice
async def test_import_in_a_browser_moves_the_bar_to_the_summary(api: Api, workers: Workers, browser: Any) -> None:
    """With JavaScript (import.js under the strict CSP): upload, the bar, the summary; at 390 and
    1280 pixels, with a screenshot of each."""
    a = await api.department("市民政局", ["social-assistance"])
    person = await make_staff(api, a["id"], "drafter")
    workers.start()
    rows = [f"居民{i},b{i}@example.com,,social-assistance,email,,haizhu,dibao" for i in range(1, 801)]
    rows[4] = "坏行,not-an-email,,social-assistance,email,,haizhu,dibao"
    upload = ("\n".join([CSV_HEADER, *rows]) + "\n").encode()
    for width in (390, 1280):
        context = await browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        scripts_refused: list[str] = []
        page.on("console", lambda msg: scripts_refused.append(msg.text) if "Content Security Policy" in msg.text else None)
        await page.goto(f"{api.base}/console/login")
        await page.fill("#username", person["username"])
        await page.fill("#password", person["password"])
        async with page.expect_navigation():
            await page.click("main button[type=submit]")
        await page.goto(f"{api.base}/console/roster/import")
        await page.set_input_files("#file", files=[{"name": "roster.csv", "mimeType": "text/csv", "buffer": upload}])
        await page.click("main button[type=submit]")
        await page.wait_for_selector("progress")
        await page.wait_for_selector("#rejected", timeout=90_000)
        assert await page.inner_text("#rejected") == "1"
        assert await page.get_attribute("progress", "value") == "100"
        await page.screenshot(path=str(screenshot_path(f"console-roster-import-{width}")), full_page=True)
        await page.goto(f"{api.base}/console/roster?q=b7")
        assert await page.locator("table tbody tr").count() >= 1
        await page.screenshot(path=str(screenshot_path(f"console-roster-{width}")), full_page=True)
        assert scripts_refused == []
        await context.close()
