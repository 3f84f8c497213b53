"""Composing in the console (issue 15, items 2 to 4), at the HTTP level on both databases: a draft
with two targeting clauses shows its reach; an invalid value comes back beside its field with
everything typed kept; the builder works without JavaScript (add and remove rows are submit
buttons); the reach endpoint answers as the clerk types; each channel's rendering is shown, the
e-mail in a sandboxed frame; a test send reaches the clerk's own inbox marked as a test and
writes no delivery row; revise and repeal open the form of their kind."""

from __future__ import annotations

import email
import email.policy
import html as html_lib
import json
import re

import sqlalchemy as sa

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store.db import Database
from pushsvc.store.schema import deliveries
from tests.conftest import Api, Workers, eventually
from tests.console_helpers import form_token
from tests.test_api_foundation import POLICY, enterprise
from tests.test_console_review import TWO_CLAUSES, draft_row, new_draft, person, version_of


def field_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', html) or \
        re.search(rf'name="{re.escape(name)}"[^>]*>([^<]*)</textarea>', html)
    assert found, f"no field {name}"
    return html_lib.unescape(found.group(1))


async def subscribers(api: Api, key: str, *numbers: int, **extra: object) -> None:
    for n in numbers:
        status, body = await api.call("POST", "/v1/subscribers", key, json=enterprise(n, **extra))
        assert status == 201, body


async def test_two_clauses_reach_and_errors_beside_fields(api: Api, settings: Settings) -> None:
    dept = await api.department()
    await subscribers(api, dept["api_key"], 1, 2)
    await subscribers(api, dept["api_key"], 3, district="baiyun")
    await subscribers(api, dept["api_key"], 4, scale="large")
    clerk = await person(api, dept["id"], "drafter")
    draft_id = await new_draft(clerk, TWO_CLAUSES)
    status, html, headers = await clerk.get(f"/console/drafts/{draft_id}")
    assert status == 200, html[:800]
    assert "frame-src 'self'" in headers["Content-Security-Policy"]
    reach = re.search(r'class="reach-total">([^<]*)<', html)
    assert reach and " 2 " in f" {reach.group(1)} ", reach  # haizhu/tianhe and small/micro: 1 and 2 only
    assert field_value(html, "clause.0.value") == "haizhu, tianhe"
    assert field_value(html, "clause.1.value") == "small, micro"
    # Each channel in each locale; the e-mail in a sandboxed frame served with a sandbox CSP.
    assert html.count("<iframe sandbox") == 3
    frame = re.search(r'<iframe sandbox src="([^"]+)"', html)
    assert frame
    status, mail, headers = await clerk.get(html_lib.unescape(frame.group(1)))
    assert status == 200 and TWO_CLAUSES["title"] in mail
    assert headers["Content-Security-Policy"].startswith("sandbox")

    # A value the catalogue refuses: the error beside its field, everything typed kept.
    typed = {**TWO_CLAUSES, "clause.1.value": "small, enormous", "title": "稳岗扩岗 第二稿", "body": "正文\n第二段"}
    status, html, headers = await clerk.post(f"/console/drafts/{draft_id}", {"version": version_of(html), **typed},
                                              page=f"/console/drafts/{draft_id}")
    assert status == 303, html[:800]
    status, html, _ = await clerk.get(headers["Location"])
    assert 'id="e-clause.1.value"' in html and 'aria-invalid="true" aria-describedby="e-clause.1.value"' in html
    assert field_value(html, "clause.1.value") == "small, enormous"
    assert field_value(html, "title") == "稳岗扩岗 第二稿" and field_value(html, "body") == "正文\n第二段"
    assert 'class="reach-total"' not in html
    # Submitting it is refused, beside the same field; the draft stays editable.
    status, html, _ = await clerk.post(f"/console/drafts/{draft_id}",
                                       {"version": version_of(html), "action": "submit", **typed},
                                       page=f"/console/drafts/{draft_id}")
    assert status == 422 and 'id="e-clause.1.value"' in html
    assert (await draft_row(settings, draft_id))["status"] == "draft"

    # A stale version is not saved, and what was typed is shown again.
    status, html, _ = await clerk.post(f"/console/drafts/{draft_id}", {"version": "1", **typed, "title": "旧页面"},
                                       page=f"/console/drafts/{draft_id}")
    assert status == 409 and field_value(html, "title") == "旧页面"
    await clerk.close()


async def test_builder_without_javascript_and_reach_endpoint(api: Api) -> None:
    dept = await api.department()
    await subscribers(api, dept["api_key"], 1, 2, 3)
    clerk = await person(api, dept["id"], "drafter")
    one = {k: v for k, v in TWO_CLAUSES.items() if not k.startswith("clause.1.")}
    draft_id = await new_draft(clerk, {**one, "action": "add_clause", "blank_rows": "0"})
    status, html, _ = await clerk.get(f"/console/drafts/{draft_id}?rows=1")
    assert 'name="clause.1.attr"' in html and 'name="clause.2.attr"' not in html
    # Fill the new row and remove the first: one row left, renumbered.
    form = {**one, "clause.1.attr": "enterprise.scale", "clause.1.op": "in", "clause.1.value": "small",
            "action": "remove.0", "version": version_of(html)}
    status, html, headers = await clerk.post(f"/console/drafts/{draft_id}", form, page=f"/console/drafts/{draft_id}")
    assert status == 303
    status, html, _ = await clerk.get(headers["Location"])
    assert field_value(html, "clause.0.value") == "small" and 'name="clause.1.attr"' not in html

    # The reach as typed (not saved), for targeting.js; errors by form field.
    token = form_token(html, f"/console/drafts/{draft_id}")
    status, body, _ = await clerk.request("POST", f"/console/drafts/{draft_id}/reach",
                                          data={"csrf_token": token, **TWO_CLAUSES})
    assert status == 200, body
    assert '"total": 3' in body or '"total":3' in body
    status, body, _ = await clerk.request("POST", f"/console/drafts/{draft_id}/reach",
                                          data={"csrf_token": token, **TWO_CLAUSES,
                                                "clause.0.attr": "enterprise.colour"})
    assert status == 422 and "clause.0.attr" in body
    status, body, _ = await clerk.request("POST", f"/console/drafts/{draft_id}/reach", data=dict(TWO_CLAUSES))
    assert status == 403  # no CSRF token
    await clerk.close()


async def test_test_send_reaches_own_inbox_marked_and_unrecorded(api: Api, settings: Settings, sink: SmtpSink,
                                                                 workers: Workers) -> None:
    dept = await api.department()
    await subscribers(api, dept["api_key"], 1)
    clerk = await person(api, dept["id"], "drafter", email="clerk@example.gov.cn")
    clerk.cookies["pushsvc_console_lang"] = "zh-CN"  # the test message in the clerk's language
    draft_id = await new_draft(clerk, TWO_CLAUSES)
    workers.start()
    status, _, headers = await clerk.post(f"/console/drafts/{draft_id}/test-send", {},
                                          page=f"/console/drafts/{draft_id}")
    assert status == 303 and "sent=yes" in headers["Location"], headers
    await eventually(lambda: sink.count() >= 1)
    [message] = sink.messages()
    assert message.rcpt_tos == ("clerk@example.gov.cn",)
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert "[测试]" in str(parsed["Subject"]) and TWO_CLAUSES["title"] in str(parsed["Subject"])
    assert parsed["List-Unsubscribe"] is None
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            assert (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar_one() == 0
            actions = [a for (a,) in await conn.execute(sa.text(
                "SELECT action FROM draft_events WHERE draft_id = :d ORDER BY id"), {"d": draft_id})]
            assert actions == ["saved", "test_sent"]
    finally:
        await db.close()
    # Someone without an e-mail, phone or WeChat in their account is told so.
    bare = await person(api, dept["id"], "drafter")
    other_id = await new_draft(bare, TWO_CLAUSES)
    status, _, headers = await bare.post(f"/console/drafts/{other_id}/test-send", {},
                                         page=f"/console/drafts/{other_id}")
    assert "sent=nowhere" in headers["Location"]
    for c in (clerk, bare):
        await c.close()


async def test_revise_and_repeal_open_their_form(api: Api, settings: Settings) -> None:
    dept = await api.department()
    status, policy = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY)
    assert status == 202, policy
    clerk = await person(api, dept["id"], "drafter")
    status, html, _ = await clerk.get(f"/console/drafts/new?kind=revise&policy={policy['id']}")
    assert status == 200 and field_value(html, "title") == POLICY["title"] and 'name="audience.' not in html
    status, html, headers = await clerk.post("/console/drafts/new", {
        "kind": "revise", "policy_id": str(policy["id"]), "title": POLICY["title"] + "（修订）",
        "summary": POLICY["summary"], "doc_number": POLICY["doc_number"], "url": POLICY["url"],
        "interpretation_url": POLICY["interpretation_url"], "produced_on": POLICY["produced_on"],
        "notify_on_lapse": "on"}, page=f"/console/drafts/new?kind=revise&policy={policy['id']}")
    assert status == 303, html[:800]
    draft_id = int(headers["Location"].rsplit("/", 1)[1])
    row = await draft_row(settings, draft_id)
    assert row["kind"] == "revise" and row["policy_id"] == policy["id"]
    body = row["body"] if isinstance(row["body"], dict) else json.loads(row["body"])
    assert body == {"title": POLICY["title"] + "（修订）"}
    status, html, _ = await clerk.get(f"/console/drafts/new?kind=repeal&policy={policy['id']}")
    assert status == 200 and 'name="reason"' in html
    other = await api.department(name="市税务局", domains=["tax-administration"])
    stranger = await person(api, other["id"], "drafter")
    status, _, _ = await stranger.get(f"/console/drafts/new?kind=revise&policy={policy['id']}")
    assert status == 404
    for c in (clerk, stranger):
        await c.close()


async def test_test_sends_are_limited_per_person(api: Api) -> None:
    dept = await api.department()
    clerk = await person(api, dept["id"], "drafter", phone="13800138000")
    draft_id = await new_draft(clerk, TWO_CLAUSES)
    outcomes = []
    for _ in range(11):
        status, _, headers = await clerk.post(f"/console/drafts/{draft_id}/test-send", {},
                                              page=f"/console/drafts/{draft_id}")
        assert status == 303
        outcomes.append(headers["Location"].rsplit("sent=", 1)[1])
    assert outcomes == ["yes"] * 10 + ["later"]
    status, html, _ = await clerk.get(f"/console/drafts/{draft_id}?sent=later")
    assert 'class="notice"' in html
    await clerk.close()
