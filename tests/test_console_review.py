"""Review in the console and for API keys (issue 15, items 4 and 6), at the HTTP level on both
databases: who may approve (not a drafter, not the writer), returning with a comment, approving a
stale version, approving publishes through the API's own code (the SMTP sink gets the message), a
department cannot see another's draft, and a key's policy waits for review only when the
department has an approver and has not let its keys publish without review."""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

import sqlalchemy as sa

from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store.db import Database
from pushsvc.store.schema import deliveries, departments
from tests.conftest import Api, Workers, eventually
from tests.console_helpers import ConsoleClient, make_staff, signed_in
from tests.test_api_foundation import POLICY, enterprise

TWO_CLAUSES = {
    "title": "关于支持中小微企业稳岗扩岗的若干措施", "summary": "对吸纳就业的小微企业给予补贴。",
    "doc_number": "穗人社规字〔2026〕3号", "domain": "employment-entrepreneurship", "channel.email": "on",
    "notify_on_lapse": "on", "audience.enterprise": "on", "combinator": "all",
    "clause.0.attr": "enterprise.district", "clause.0.op": "in", "clause.0.value": "haizhu, tianhe",
    "clause.1.attr": "enterprise.scale", "clause.1.op": "in", "clause.1.value": "small, micro",
}


async def person(api: Api, department_id: int, role: str, **contacts: Any) -> ConsoleClient:
    made = await make_staff(api, department_id, role, **contacts)
    client = await signed_in(api, made["username"], made["password"])
    client.staff = made  # type: ignore[attr-defined]
    return client


async def new_draft(client: ConsoleClient, fields: dict[str, str]) -> int:
    status, html, headers = await client.post("/console/drafts/new", {"kind": "new", "version": "0", **fields},
                                              page="/console/drafts/new")
    assert status == 303, html[:800]
    found = re.match(r"/console/drafts/(\d+)", headers["Location"])
    assert found, headers["Location"]
    return int(found.group(1))


def version_of(html: str) -> str:
    found = re.search(r'name="version" value="(\d+)"', html)
    assert found, html[:800]
    return found.group(1)


async def submitted(client: ConsoleClient, settings: Settings, draft_id: int, fields: dict[str, str]) -> int:
    """Save `fields` and submit; returns the draft's version."""
    status, html, _ = await client.get(f"/console/drafts/{draft_id}")
    assert status == 200, html[:800]
    status, html, headers = await client.post(f"/console/drafts/{draft_id}",
                                              {"version": version_of(html), "action": "submit", **fields},
                                              page=f"/console/drafts/{draft_id}")
    assert status == 303, html[:1500]
    row = await draft_row(settings, draft_id)
    assert row["status"] == "submitted", row
    return int(row["version"])


async def review_post(client: ConsoleClient, draft_id: int, action: str, form: dict[str, str]) -> tuple[int, str, Any]:
    return await client.post(f"/console/drafts/{draft_id}/{action}", form, page=f"/console/drafts/{draft_id}/review")


async def draft_row(settings: Settings, draft_id: int) -> dict[str, Any]:
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            query = sa.text("SELECT * FROM policy_drafts WHERE id = :i")
            return dict((await conn.execute(query, {"i": draft_id})).mappings().one())
    finally:
        await db.close()


async def test_review_rights_return_stale_approve_and_publish(api: Api, settings: Settings, sink: SmtpSink,
                                                              workers: Workers) -> None:
    dept = await api.department()
    for n in (1, 2):
        status, body = await api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(n))
        assert status == 201, body
    drafter = await person(api, dept["id"], "drafter")
    approver = await person(api, dept["id"], "approver")
    writer_approver = await person(api, dept["id"], "approver")
    draft_id = await new_draft(drafter, {**TWO_CLAUSES, "summary": ""})
    version = await submitted(drafter, settings, draft_id, TWO_CLAUSES)

    # A drafter has no right to approve: 403 (and the page is not theirs either).
    status, _, _ = await drafter.get(f"/console/drafts/{draft_id}/review")
    assert status == 403
    status, _, _ = await drafter.request("POST", f"/console/drafts/{draft_id}/approve", data={"version": version})
    assert status == 403

    # The writer cannot approve their own: an approver's own draft needs another approver.
    own_id = await new_draft(writer_approver, TWO_CLAUSES)
    own_version = await submitted(writer_approver, settings, own_id, TWO_CLAUSES)
    status, html, _ = await writer_approver.get(f"/console/drafts/{own_id}/review")
    assert status == 200 and f'/console/drafts/{own_id}/approve' not in html
    # A good token (from a draft of someone else's, which this approver may review) does not help.
    token = await writer_approver.token(f"/console/drafts/{draft_id}/review", f"/console/drafts/{draft_id}/approve")
    status, html, _ = await writer_approver.request("POST", f"/console/drafts/{own_id}/approve",
                                                    data={"csrf_token": token, "version": str(own_version)})
    assert status == 403, html[:500]
    assert (await draft_row(settings, own_id))["status"] == "submitted"

    # Returning needs a comment; the error is beside the field.
    status, html, _ = await review_post(approver, draft_id, "return", {"version": str(version), "comment": " "})
    assert status == 422 and 'id="e-comment"' in html
    status, html, _ = await review_post(approver, draft_id, "return",
                                        {"version": str(version), "comment": "请补充政策解读链接"})
    assert status == 303, html[:800]
    row = await draft_row(settings, draft_id)
    assert row["status"] == "returned"
    status, html, _ = await drafter.get(f"/console/drafts/{draft_id}")
    assert status == 200 and "请补充政策解读链接" in html and 'id="compose"' in html  # editable again

    # Changed and submitted again: approving the version seen before is a conflict.
    fields = {**TWO_CLAUSES, "interpretation_url": "https://example.gov.cn/jd/123"}
    new_version = await submitted(drafter, settings, draft_id, fields)
    assert new_version > version
    status, html, _ = await review_post(approver, draft_id, "approve", {"version": str(version)})
    assert status == 409, html[:500]
    assert (await draft_row(settings, draft_id))["status"] == "submitted"

    # Approved: published by the API's code; a second click publishes nothing more.
    workers.start()
    status, html, _ = await review_post(approver, draft_id, "approve", {"version": str(new_version)})
    assert status == 303, html[:1500]
    row = await draft_row(settings, draft_id)
    assert row["status"] == "published" and row["policy_id"]
    token = await approver.token(f"/console/drafts/{own_id}/review", f"/console/drafts/{own_id}/approve")
    status, html, _ = await approver.request("POST", f"/console/drafts/{draft_id}/approve",
                                             data={"csrf_token": token, "version": str(new_version)})
    assert status == 303, html[:500]  # the same click again: nothing more happens
    await eventually(lambda: sink.count() >= 2)
    subjects = {str(email.message_from_bytes(m.data, policy=email.policy.default)["Subject"]) for m in sink.messages()}
    assert any(TWO_CLAUSES["title"] in s for s in subjects) and not any("[测试]" in s for s in subjects)
    status, body = await api.call("GET", f"/v1/drafts/{draft_id}", dept["api_key"])
    assert status == 200 and body["status"] == "published" and body["policy_id"] == row["policy_id"]
    assert [e["action"] for e in body["events"]] == ["saved", "saved", "submitted", "returned", "saved",
                                                     "submitted", "approved", "published"]
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                        .where(deliveries.c.policy_id == row["policy_id"]))).scalar_one()
            assert count == 2
    finally:
        await db.close()
    for c in (drafter, approver, writer_approver):
        await c.close()


async def test_another_department_and_anonymous(api: Api) -> None:
    dept = await api.department()
    other = await api.department(name="市税务局", domains=["tax-administration"])
    drafter = await person(api, dept["id"], "drafter")
    stranger = await person(api, other["id"], "approver")
    draft_id = await new_draft(drafter, TWO_CLAUSES)
    for path in (f"/console/drafts/{draft_id}", f"/console/drafts/{draft_id}/review",
                 f"/console/drafts/{draft_id}/email?locale=en"):
        status, _, _ = await stranger.get(path)
        assert status == 404, path
    status, _, _ = await stranger.request("POST", f"/console/drafts/{draft_id}", data={"version": "1", "title": "x"})
    assert status in (403, 404)
    status, body = await api.call("GET", f"/v1/drafts/{draft_id}", other["api_key"])
    assert status == 404
    anonymous = ConsoleClient(api)
    for path in ("/console/drafts", f"/console/drafts/{draft_id}", "/console/review", "/console/drafts/new"):
        status, _, headers = await anonymous.get(path)
        assert status == 303 and headers["Location"].startswith("/console/login"), path
    status, _, _ = await anonymous.request("POST", f"/console/drafts/{draft_id}/approve", data={"version": "1"})
    assert status in (303, 403)
    for c in (drafter, stranger, anonymous):
        await c.close()


async def test_key_policy_waits_for_review_only_with_an_approver(api: Api, settings: Settings) -> None:
    dept = await api.department()
    key = dept["api_key"]
    # No approver yet: published at once, as before.
    status, body = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and "draft_id" not in body and body["id"], body

    await make_staff(api, dept["id"], "drafter")
    status, body = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and "draft_id" not in body, "a drafter cannot approve: nothing to wait for"

    await make_staff(api, dept["id"], "approver")
    status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, "domain": "healthcare"})
    assert status == 403, "checked exactly as before"
    status, body = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": ""})
    assert status == 422 and body["errors"][0]["field"] == "title"
    status, body = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and body == {"draft_id": body["draft_id"], "status": "submitted", "review": True}, body
    # The same Idempotency-Key twice keeps one draft; with another body it is a conflict.
    status, first = await api.call("POST", "/v1/policies", key, json=POLICY, headers={"Idempotency-Key": "k-1"})
    status, again = await api.call("POST", "/v1/policies", key, json=POLICY, headers={"Idempotency-Key": "k-1"})
    assert status == 202 and again == first and first["draft_id"] != body["draft_id"]
    status, _ = await api.call("POST", "/v1/policies", key, json={**POLICY, "title": "另一项"},
                               headers={"Idempotency-Key": "k-1"})
    assert status == 409
    status, got = await api.call("GET", f"/v1/drafts/{body['draft_id']}", key)
    assert status == 200 and got["status"] == "submitted" and got["policy_id"] is None
    assert [e["action"] for e in got["events"]] == ["submitted"] and got["events"][0]["actor"].startswith(
        f"department:{dept['id']}:key:")

    db = Database(settings.database_url)
    try:
        async with db.write() as conn:
            await conn.execute(sa.update(departments).where(departments.c.id == dept["id"])
                               .values(keys_publish_without_review=True))
    finally:
        await db.close()
    status, body = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202 and "draft_id" not in body and body["status"] in ("publishing", "published"), body


async def test_key_draft_approved_in_the_console(api: Api, settings: Settings) -> None:
    dept = await api.department()
    approver = await person(api, dept["id"], "approver")
    status, body = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY)
    assert status == 202 and body["review"], body
    draft_id = body["draft_id"]
    status, html, _ = await approver.get("/console/review")
    assert status == 200 and f"/console/drafts/{draft_id}/review" in html
    status, html, _ = await approver.get(f"/console/drafts/{draft_id}/review")
    assert status == 200 and "/approve" in html and POLICY["title"] in html
    status, html, _ = await review_post(approver, draft_id, "approve", {"version": "1"})
    assert status == 303, html[:1000]
    status, got = await api.call("GET", f"/v1/drafts/{draft_id}", dept["api_key"])
    assert got["status"] == "published" and got["policy_id"]
    status, policy = await api.call("GET", f"/v1/policies/{got['policy_id']}", dept["api_key"])
    assert status == 200 and policy["title"] == POLICY["title"]
    await approver.close()


async def test_revise_and_repeal_go_through_review(api: Api, settings: Settings, workers: Workers) -> None:
    dept = await api.department()
    key = dept["api_key"]
    status, policy = await api.call("POST", "/v1/policies", key, json=POLICY)
    assert status == 202, policy
    workers.start()

    async def published() -> bool:
        return (await api.call("GET", f"/v1/policies/{policy['id']}", key))[1]["status"] == "published"

    await eventually(published)
    drafter = await person(api, dept["id"], "drafter")
    approver = await person(api, dept["id"], "approver")
    page = f"/console/drafts/new?kind=revise&policy={policy['id']}"
    status, html, headers = await drafter.post("/console/drafts/new", {
        "kind": "revise", "policy_id": str(policy["id"]), "title": POLICY["title"] + "（修订）",
        "summary": POLICY["summary"], "doc_number": POLICY["doc_number"], "url": POLICY["url"],
        "interpretation_url": POLICY["interpretation_url"], "produced_on": POLICY["produced_on"],
        "notify_on_lapse": "on"}, page=page)
    assert status == 303, html[:800]
    revise_id = int(headers["Location"].rsplit("/", 1)[1])
    status, html, _ = await drafter.get(f"/console/drafts/{revise_id}")
    assert status == 200 and "（修订）" in html and "<iframe sandbox" in html  # the notice, rendered
    version = await submitted(drafter, settings, revise_id, {
        "title": POLICY["title"] + "（修订）", "summary": POLICY["summary"], "doc_number": POLICY["doc_number"],
        "url": POLICY["url"], "interpretation_url": POLICY["interpretation_url"],
        "produced_on": POLICY["produced_on"], "notify_on_lapse": "on"})
    status, html, _ = await review_post(approver, revise_id, "approve", {"version": str(version)})
    assert status == 303, html[:1500]
    status, got = await api.call("GET", f"/v1/policies/{policy['id']}", key)
    assert got["title"] == POLICY["title"] + "（修订）" and got["revisions"]

    page = f"/console/drafts/new?kind=repeal&policy={policy['id']}"
    status, html, headers = await drafter.post("/console/drafts/new", {
        "kind": "repeal", "policy_id": str(policy["id"]), "reason": "已被新政策取代"}, page=page)
    assert status == 303, html[:800]
    repeal_id = int(headers["Location"].rsplit("/", 1)[1])
    version = await submitted(drafter, settings, repeal_id, {"reason": "已被新政策取代"})
    status, html, _ = await review_post(approver, repeal_id, "approve", {"version": str(version)})
    assert status == 303, html[:1500]
    status, got = await api.call("GET", f"/v1/policies/{policy['id']}", key)
    assert got["status"] == "repealed"
    assert (await draft_row(settings, repeal_id))["status"] == "published"
    for c in (drafter, approver):
        await c.close()


async def test_withdrawn_draft_is_kept_and_closed(api: Api, settings: Settings) -> None:
    dept = await api.department()
    drafter = await person(api, dept["id"], "drafter")
    draft_id = await new_draft(drafter, TWO_CLAUSES)
    await submitted(drafter, settings, draft_id, TWO_CLAUSES)
    status, html, _ = await drafter.post(f"/console/drafts/{draft_id}/withdraw", {}, page=f"/console/drafts/{draft_id}")
    assert status == 303, html[:500]
    assert (await draft_row(settings, draft_id))["status"] == "withdrawn"
    status, html, _ = await drafter.get(f"/console/drafts/{draft_id}")
    assert status == 200 and 'id="compose"' not in html and "/withdraw" not in html
    await drafter.close()
