"""Was this useful? Ask a question (issue 18, item 6) as people and departments use it: the form a
policy page links to (errors beside the fields, typed text kept, CSRF, the limits' 429), the
question reaching its department through the API (another department: 404, nobody: 401; contacts
masked in lists, every read audited), the answer (public on the page or not) sent to the asker's
mailbox through a real worker and SMTP sink, the asker deleting their question, the contacts'
erasure, and the report's figures. Real servers, on every test database."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from pushsvc.core.clock import now
from pushsvc.dev.stubs.sms_gateway import SmsGatewayStub
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store import feedback as store
from pushsvc.store.db import Database
from pushsvc.store.schema import audit_log, policy_questions
from tests.conftest import Api, Workers, eventually
from tests.test_api_foundation import POLICY
from tests.test_self_service import Visitor, error_beside, sms_sent
from tests.test_sms import SIGN, SMS_SECRET, gateway  # noqa: F401  (the SMS stand-in)

ASKER = "li.si@example.com"
QUESTION = "小微企业吸纳几名高校毕业生可以申请补贴？"
ANSWER = "吸纳1名及以上即可申请，详见第三条。"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # Low enough for a test to reach: a service hall's visitors share one address, so the default is generous.
    # The SMS stand-in's secret and sign name as test_sms has them.
    return {**settings_env, "PUSHSVC_FEEDBACK_PER_ADDRESS_PER_HOUR": "4", "PUSHSVC_FEEDBACK_PER_POLICY_PER_HOUR": "50",
            "PUSHSVC_SMS_SECRET": SMS_SECRET, "PUSHSVC_SMS_SIGN_NAME": SIGN}


async def published(api: Api, name: str = "市人社局") -> tuple[dict[str, Any], dict[str, Any]]:
    dept = await api.department(name)
    status, policy = await api.call("POST", "/v1/policies", dept["api_key"], json=POLICY)
    assert status == 202, policy
    return dept, policy


async def ask(api: Api, policy_id: int, **fields: str) -> tuple[int, str, Visitor]:
    person = Visitor(api)
    status, _ = await person.get(f"/p/{policy_id}/feedback")
    assert status == 200
    status, html = await person.submit(f"/p/{policy_id}/feedback", fields)
    return status, html, person


async def rows(settings: Settings, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(table).where(*where))]
    finally:
        await db.close()


async def test_rate_ask_answer_public_and_mailed(api: Api, workers: Workers, sink: SmtpSink, settings: Settings) -> None:
    dept, policy = await published(api)
    pid = policy["id"]
    person = Visitor(api)
    status, page = await person.get(f"/p/{pid}")
    assert status == 200 and f'href="/p/{pid}/feedback?rating=useful' in page

    status, html, person = await ask(api, pid, rating="useful", question=QUESTION, contact=ASKER)
    assert status == 200, html
    assert "l***@example.com" in html  # the contact shown masked
    assert ASKER not in html
    own_link = re.search(r'href="(/q/[^"?]+)', html)
    assert own_link

    # The department reads it: masked in the list, in full one by one; both reads audited.
    key = dept["api_key"]
    status, listed = await api.call("GET", f"/v1/policies/{pid}/questions", key)
    assert status == 200, listed
    [item] = listed["items"]
    assert item["question"] == QUESTION and item["contact_kind"] == "email"
    assert item["contact"] == "l***@example.com"
    status, one = await api.call("GET", f"/v1/questions/{item['id']}", key)
    assert status == 200 and one["contact"] == ASKER
    audited = await rows(settings, audit_log, audit_log.c.action.in_(("questions.read", "question.read")))
    assert {r["action"] for r in audited} == {"questions.read", "question.read"}
    assert all(r["department_id"] == dept["id"] for r in audited)

    # Another department: as if it did not exist. Nobody: 401.
    other = await api.department("市税务局", ["tax-administration"])
    for method, path, body in (("GET", f"/v1/policies/{pid}/questions", None), ("GET", f"/v1/questions/{item['id']}", None),
                               ("POST", f"/v1/questions/{item['id']}/answer", {"answer": "x", "public": True})):
        status, refused = await api.call(method, path, other["api_key"], json=body)
        assert status == 404, refused
        status, refused = await api.call(method, path, None, json=body)
        assert status == 401, refused

    # Bad answers name the field; nothing is stored.
    for bad in ({"answer": ""}, {"answer": "x" * 5001}, {"answer": "ok", "public": "maybe"}, {"public": True}):
        status, problem = await api.call("POST", f"/v1/questions/{item['id']}/answer", key, json=bad)
        assert status == 422, problem
        assert problem["errors"] and problem["errors"][0]["field"] in ("answer", "public")

    workers.start()
    status, answered = await api.call("POST", f"/v1/questions/{item['id']}/answer", key,
                                      json={"answer": ANSWER, "public": True})
    assert status == 200, answered
    assert answered["public"] is True and answered["answer"] == ANSWER and answered["contact"] != ASKER
    status, again = await api.call("POST", f"/v1/questions/{item['id']}/answer", key, json={"answer": "二次", "public": False})
    assert status == 409, again

    # Public: on the policy page, under the interpretation, without the contact.
    status, page = await person.get(f"/p/{pid}")
    assert QUESTION in page and ANSWER in page and ASKER not in page
    assert page.index("政策解读 Interpretation") < page.index(ANSWER)

    # The asker's mailbox gets the answer.
    mail = await eventually(lambda: next((m for m in sink.messages() if ASKER in m.rcpt_tos), None))
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ANSWER in text and QUESTION in text and POLICY["title"] in str(parsed["Subject"])
    assert "List-Unsubscribe" not in parsed  # nobody subscribed to an answer
    [stored] = await eventually(lambda: _sent(settings, item["id"]))
    assert stored["answer_error"] is None

    # The asker's own page shows the answer; deleting takes question, answer and contact away.
    status, own = await person.get(own_link[1])
    assert status == 200 and ANSWER in own
    status, done = await person.submit(own_link[1], {})
    assert status == 200, done
    assert await rows(settings, policy_questions) == []
    status, page = await person.get(f"/p/{pid}")
    assert QUESTION not in page
    status, gone = await person.get(own_link[1])
    assert status == 404


async def _sent(settings: Settings, question_id: int) -> list[dict[str, Any]]:
    found = await rows(settings, policy_questions, policy_questions.c.id == question_id)
    return found if found and found[0]["answer_sent_at"] else []


async def test_an_answer_by_sms_links_to_the_askers_page(
    api: Api, workers: Workers, gateway: SmsGatewayStub, settings: Settings  # noqa: F811  (the fixture)
) -> None:
    dept, policy = await published(api)
    status, html, person = await ask(api, policy["id"], question="个体户适用吗？", contact="138 0013 8000")
    assert status == 200 and "+86138****8000" in html
    status, listed = await api.call("GET", f"/v1/policies/{policy['id']}/questions", dept["api_key"])
    [item] = listed["items"]
    assert item["contact_kind"] == "sms"
    workers.start(PUSHSVC_SMS_URL=gateway.url)
    status, _ = await api.call("POST", f"/v1/questions/{item['id']}/answer", dept["api_key"], json={"answer": "适用。"})
    assert status == 200
    [sent] = await eventually(lambda: sms_sent(api, gateway))
    assert "13800138000" in sent["numbers"]
    assert f"【{SIGN}】" in sent["text"] and "适用。" not in sent["text"]  # the answer waits behind the link
    link = re.search(r"https://push\.example\.gov\.cn(/s/\w+)", sent["text"])
    assert link, sent["text"]
    async with api.session.get(api.base + link[1], allow_redirects=False) as resp:
        assert resp.status == 302
        own = resp.headers["Location"].removeprefix(settings.public_url)
    status, page = await person.get(own)
    assert status == 200 and "适用。" in page and "个体户适用吗？" in page


async def test_private_answer_stays_off_the_page(api: Api) -> None:
    dept, policy = await published(api)
    status, html, person = await ask(api, policy["id"], question="这项政策何时到期？")
    assert status == 200, html
    status, listed = await api.call("GET", f"/v1/policies/{policy['id']}/questions?state=unanswered", dept["api_key"])
    [item] = listed["items"]
    assert item["contact"] is None and item["contact_kind"] is None
    status, answered = await api.call("POST", f"/v1/questions/{item['id']}/answer", dept["api_key"],
                                      json={"answer": "2028年11月30日到期。"})
    assert status == 200 and answered["public"] is False
    status, page = await person.get(f"/p/{policy['id']}")
    assert "这项政策何时到期" not in page and "2028年11月30日到期" not in page
    status, listed = await api.call("GET", f"/v1/policies/{policy['id']}/questions?state=unanswered", dept["api_key"])
    assert listed["items"] == []
    status, problem = await api.call("GET", f"/v1/policies/{policy['id']}/questions?state=later", dept["api_key"])
    assert status == 422 and problem["errors"][0]["field"] == "state"


async def test_errors_beside_fields_with_typed_text_kept(api: Api, settings: Settings) -> None:
    _, policy = await published(api)
    path = f"/p/{policy['id']}/feedback"
    status, html, _ = await ask(api, policy["id"])
    assert status == 422 and error_beside(html, "f-rating")
    status, html, _ = await ask(api, policy["id"], contact="13800138000")
    assert status == 422 and error_beside(html, "f-contact") and 'value="13800138000"' in html
    status, html, _ = await ask(api, policy["id"], rating="not_useful", question="如何申请？<b>", contact="not-a-contact")
    assert status == 422 and error_beside(html, "f-contact")
    assert "如何申请？&lt;b&gt;</textarea>" in html and 'value="not-a-contact"' in html
    assert re.search(r'id="r-not-useful"[^>]*checked', html)
    status, html, _ = await ask(api, policy["id"], question="问" * 2001)
    assert status == 422 and error_beside(html, "f-question")
    status, html, _ = await ask(api, policy["id"], rating="excellent")
    assert status == 422 and error_beside(html, "f-rating")
    assert await rows(settings, policy_questions) == []
    # An unknown or unpublished policy has no form.
    person = Visitor(api)
    assert (await person.get("/p/999999/feedback"))[0] == 404
    assert (await person.get(f"{path}x"))[0] == 404


async def test_forged_or_missing_csrf_is_refused(api: Api, settings: Settings) -> None:
    _, policy = await published(api)
    path = f"/p/{policy['id']}/feedback"
    person = Visitor(api)
    await person.get(path)
    status, html, _ = await person.open("POST", path, {"rating": "useful", "question": "伪造？", "csrf_token": "forged.token"})
    assert status == 403 and "伪造？" in html
    stranger = Visitor(api)  # no cookie: a post from another site
    status, _, _ = await stranger.open("POST", path, {"rating": "useful", "csrf_token": "x"})
    assert status == 403
    assert await rows(settings, policy_questions) == []


async def test_limit_per_address_answers_429_with_the_page(api: Api, settings: Settings) -> None:
    _, policy = await published(api)
    for _ in range(4):
        status, html, _ = await ask(api, policy["id"], rating="useful")
        assert status == 200, html
    status, html, person = await ask(api, policy["id"], rating="not_useful", question="还能提问吗？")
    assert status == 429
    assert person.headers is not None and int(person.headers["Retry-After"]) > 0
    assert "还能提问吗？</textarea>" in html and 'role="alert"' in html
    assert await rows(settings, policy_questions) == []


async def test_contacts_erased_after_their_retention(api: Api, settings: Settings) -> None:
    dept, policy = await published(api)
    await ask(api, policy["id"], question="一", contact="13800138000")
    await ask(api, policy["id"], question="二", contact=ASKER)
    status, listed = await api.call("GET", f"/v1/policies/{policy['id']}/questions", dept["api_key"])
    first = next(i for i in listed["items"] if i["question"] == "一")
    assert first["contact"] == "+86138****8000"
    await api.call("POST", f"/v1/questions/{first['id']}/answer", dept["api_key"], json={"answer": "好"})
    db = Database(settings.database_url)
    try:
        async with db.write() as conn:  # 31 days on: the answered one's contact goes, the open one's stays
            later = now() + timedelta(days=31)
            assert await store.erase_contacts(conn, later - timedelta(days=30), later - timedelta(days=180), later) == 1
    finally:
        await db.close()
    left = {r["question"]: r["contact"] for r in await rows(settings, policy_questions)}
    assert left == {"一": None, "二": ASKER}


async def test_report_gives_ratings_and_answer_times(api: Api) -> None:
    dept, policy = await published(api)
    for rating, question in (("useful", "甲"), ("useful", "乙"), ("not_useful", "")):
        status, html, _ = await ask(api, policy["id"], rating=rating, question=question)
        assert status == 200, html
    status, listed = await api.call("GET", f"/v1/policies/{policy['id']}/questions", dept["api_key"])
    await api.call("POST", f"/v1/questions/{listed['items'][0]['id']}/answer", dept["api_key"], json={"answer": "答"})
    status, report = await api.call("GET", "/v1/reports/department", dept["api_key"])
    assert status == 200, report
    [mine] = [p for p in report["policies"] if p["id"] == policy["id"]]
    assert mine["ratings"] == {"useful": 2, "not_useful": 1}
    assert report["ratings"] == {"useful": 2, "not_useful": 1}
    assert report["questions"] == {"asked": 2, "answered": 1, "unanswered": 1, "median_working_days": 0.0,
                                   "p95_working_days": 0.0}
