"""Ownership of subscriber records (issue 13, items 1 and 2): a department reads, changes and
merges into only the records it supplied; a person's own choices win over any department write;
explain and preview tell a department nothing of others' records beyond pass or fail and counts
of at least 5. Each attack of the issue is replayed and must now be refused, the other
department's data unchanged."""

from __future__ import annotations

import json
import re
from typing import Any

from pushsvc.core.tokens import TokenSigner, unsubscribe_token
from pushsvc.dev.stubs.smtp_sink import SmtpSink
from pushsvc.settings import Settings
from pushsvc.store.subscribers import HELD_ELSEWHERE, PERSON_CHOSE
from tests.conftest import ADMIN, Api, Workers, eventually
from tests.test_self_service import Visitor, link_in, mail_to, subscribe_fields

VICTIM = "victim@example.com"
B_PHONE, A_PHONE = "+8613800138001", "+8613900139002"
CSV = {"Content-Type": "text/csv"}
HEADER = "name,email,phone,domains,channels,aid_recipient.district,aid_recipient.assistance_type,aid_recipient.household_size"


def aid_recipient(email: str, phone: str | None = None, household_size: int | None = 3, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"district": "haizhu", "assistance_type": "dibao"}
    if household_size is not None:
        attrs["household_size"] = household_size
    return {"name": "王五", "email": email, "phone": phone, "audiences": {"aid_recipient": attrs},
            "domains": ["social-assistance"], "channels": ["email"], **extra}


def aid_policy(domain: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
    targeting: dict[str, Any] = {"audiences": ["aid_recipient"]}
    if where is not None:
        targeting["where"] = where
    return {"title": "关于提高城乡低保标准的通知", "summary": "提高低保标准。", "domain": domain,
            "produced_on": "2026-11-20", "targeting": targeting, "channels": ["email"]}


async def two_departments(api: Api) -> tuple[str, str]:
    a = await api.department("市人社局", ["employment-entrepreneurship", "social-insurance"])
    b = await api.department("市民政局", ["social-assistance"])
    return a["api_key"], b["api_key"]


async def import_rows(api: Api, key: str, *rows: str) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/subscribers/import", key, data="\n".join([HEADER, *rows]).encode(),
                                  headers=CSV)
    assert status == 200, body
    return body


def names_no_id(body: Any) -> bool:
    """No subscriber id in what the caller is told: no number in any message, no id field."""
    text = json.dumps(body, ensure_ascii=False)
    messages = re.findall(r'"(?:message|detail|title)": "([^"]*)"', text)
    return "existing_id" not in text and not any(re.search(r"\d", m) for m in messages)


async def test_takeover_through_import_is_refused(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    status, victim = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, B_PHONE))
    assert status == 201, victim

    # A's row: the victim's e-mail, a phone of A's choosing, SMS, A's domain, no household_size.
    report = await import_rows(api, a_key, f"王五,{VICTIM},{A_PHONE},social-insurance,email;sms,haizhu,dibao,")
    assert report["imported"] == 0 and report["merged"] == 0
    assert [(r["row"], [e["field"] for e in r["errors"]]) for r in report["rejected"]] == [(2, ["email"])]
    assert report["rejected"][0]["errors"][0]["message"] == HELD_ELSEWHERE and names_no_id(report)

    status, after = await api.call("GET", f"/v1/subscribers/{victim['id']}", b_key)
    assert status == 200 and after == victim  # phone, channels, domains, household_size: all as B left them
    assert after["phone"] == B_PHONE and after["channels"] == ["email"] and after["domains"] == ["social-assistance"]
    assert after["audiences"]["aid_recipient"]["household_size"] == 3

    # A can neither read the record nor tell it from one that does not exist.
    status, theirs = await api.call("GET", f"/v1/subscribers/{victim['id']}", a_key)
    missing_status, missing = await api.call("GET", "/v1/subscribers/999999", a_key)
    assert status == missing_status == 404 and theirs["detail"] == missing["detail"]

    # The phone alone (A's number on no record) still cannot be merged through another held contact.
    report = await import_rows(api, a_key, f"某人,other@example.com,{B_PHONE},social-insurance,sms,haizhu,dibao,")
    assert [e["field"] for e in report["rejected"][0]["errors"]] == ["phone"] and names_no_id(report)
    status, after = await api.call("GET", f"/v1/subscribers/{victim['id']}", b_key)
    assert after == victim


async def test_a_record_the_person_made_is_not_merged_into(api: Api) -> None:
    a_key, _ = await two_departments(api)
    person = Visitor(api)
    await person.get("/subscribe")
    status, _ = await person.submit("/subscribe", subscribe_fields(email=VICTIM))
    assert status == 200
    report = await import_rows(api, a_key, f"王五,{VICTIM},{A_PHONE},social-insurance,email;sms,haizhu,dibao,")
    assert report["merged"] == 0 and report["rejected"][0]["errors"][0]["message"] == HELD_ELSEWHERE
    status, body = await api.call("POST", "/v1/subscribers", a_key, json=aid_recipient(VICTIM))
    assert status == 409 and names_no_id(body)
    # The admin sees the record as the person left it: pending, nothing on, A's phone nowhere.
    status, page = await api.call("GET", "/v1/subscribers/1", ADMIN)
    assert status == 200 and page["email"] == VICTIM and page["phone"] is None and page["channels"] == []


async def test_a_conflict_names_the_id_only_of_the_callers_own_record(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    status, victim = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, B_PHONE))
    assert status == 201
    status, body = await api.call("POST", "/v1/subscribers", a_key, json=aid_recipient(VICTIM, A_PHONE))
    assert status == 409 and names_no_id(body) and str(victim["id"]) not in json.dumps(body).replace('"status": 409', "")
    assert [e["field"] for e in body["errors"]] == ["email"]
    status, again = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, B_PHONE))
    assert status == 409 and again["existing_id"] == victim["id"]
    status, after = await api.call("GET", f"/v1/subscribers/{victim['id']}", b_key)
    assert after == victim


async def test_an_unsubscribe_is_not_undone_by_a_reimport(api: Api, settings: Settings) -> None:
    a_key, b_key = await two_departments(api)
    row = f"王五,{VICTIM},{B_PHONE},social-assistance,email;sms,haizhu,dibao,3"
    assert (await import_rows(api, b_key, row))["imported"] == 1
    status, page = await api.call("GET", "/v1/subscribers/1", b_key)
    assert page["channels"] == ["email", "sms"]

    # One click in a message: e-mail off, the withdrawal recorded.
    token = unsubscribe_token(TokenSigner(settings.secret_key), page["id"], "email")
    status, _ = await api.call("POST", f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert status == 200

    # The same row again, by the department that supplied it and by another: e-mail stays off.
    b_report = await import_rows(api, b_key, row)
    a_report = await import_rows(api, a_key, row.replace("social-assistance", "social-insurance"))
    assert b_report["merged"] == 1 and a_report["merged"] == 0
    status, after = await api.call("GET", "/v1/subscribers/1", b_key)
    assert after["channels"] == ["sms"] and after["status"] == "active"


async def test_a_merge_turns_on_no_channel_for_a_contact_the_row_does_not_name(api: Api) -> None:
    _, b_key = await two_departments(api)
    status, sub = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, B_PHONE))
    # B's own row names the record's e-mail but another phone: SMS would go to a number B did not vouch for now.
    report = await import_rows(api, b_key, f"王五,{VICTIM},{A_PHONE},social-assistance,email;sms,haizhu,dibao,4")
    assert report["merged"] == 1
    status, after = await api.call("GET", f"/v1/subscribers/{sub['id']}", b_key)
    assert after["phone"] == B_PHONE and after["channels"] == ["email"]
    assert after["audiences"]["aid_recipient"]["household_size"] == 4  # B's own data of its own group: updated


async def test_what_the_person_set_on_the_pages_wins_over_a_reimport(
    api: Api, workers: Workers, sink: SmtpSink
) -> None:
    workers.start()
    _, b_key = await two_departments(api)
    status, sub = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, household_size=None))
    assert status == 201
    person = Visitor(api)
    await person.get("/manage")
    await person.submit("/manage", {"contact": VICTIM, "action": "send"})
    [mail] = await eventually(lambda: mail_to(sink, VICTIM), timeout=20)
    path = link_in(mail, "/manage/")
    status, html = await person.get(path)
    assert status == 200
    status, html = await person.submit(path, {
        "group": "aid_recipient", "aid_recipient.district": "tianhe", "aid_recipient.assistance_type": "dibao",
        "domain": ["social-assistance"], "channel": ["email"], "name": "王五", "email": VICTIM,
        "frequency": "daily", "locale": "en", "action": "save"})
    assert status == 200
    status, chosen = await api.call("GET", f"/v1/subscribers/{sub['id']}", b_key)
    assert chosen["frequency"] == "daily" and chosen["audiences"]["aid_recipient"]["district"] == "tianhe"

    report = await import_rows(api, b_key, f"王五,{VICTIM},{B_PHONE},*,email;sms,haizhu,dibao,5")
    assert report["merged"] == 0 and report["rejected"][0]["errors"][0]["message"] == PERSON_CHOSE
    status, after = await api.call("GET", f"/v1/subscribers/{sub['id']}", b_key)
    assert after == chosen


async def test_explain_gives_values_only_of_own_records(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    status, victim = await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, B_PHONE))
    status, mine = await api.call("POST", "/v1/subscribers", a_key, json=aid_recipient(
        "own@example.com", domains=["social-insurance"], household_size=5))
    where = {"all": [{"attr": "aid_recipient.assistance_type", "op": "exists"},
                     {"attr": "aid_recipient.household_size", "op": "gte", "value": 2}]}
    status, policy = await api.call("POST", "/v1/policies", a_key, json=aid_policy("social-insurance", where))
    assert status == 202, policy
    explain = f"/v1/policies/{policy['id']}/explain?subscriber_id="

    status, theirs = await api.call("GET", explain + str(victim["id"]), a_key)
    text = json.dumps(theirs, ensure_ascii=False)
    assert status == 200 and "dibao" not in text and "value:" not in text and "haizhu" not in text
    assert any("household_size gte 2 holds" in r for r in theirs["reasons"])  # pass or fail, no value

    # An id that does not exist answers like a record that fails every rule: no 404 to enumerate.
    status, nobody = await api.call("GET", explain + "999999", a_key)
    assert status == 200 and nobody["matched"] is False and "value:" not in json.dumps(nobody)
    status, another = await api.call("GET", explain + "999998", a_key)
    assert another == nobody

    status, own = await api.call("GET", explain + str(mine["id"]), a_key)
    assert "(value: 'dibao')" in json.dumps(own, ensure_ascii=False) and "(value: 5)" in json.dumps(own)
    status, admin = await api.call("GET", explain + str(victim["id"]), ADMIN)
    assert status == 200 and "(value: 'dibao')" in json.dumps(admin, ensure_ascii=False)
    status, _ = await api.call("GET", explain + "999999", ADMIN)
    assert status == 404


async def test_preview_hides_small_counts_of_others(api: Api) -> None:
    a_key, b_key = await two_departments(api)
    await api.call("POST", "/v1/subscribers", b_key, json=aid_recipient(VICTIM, domains=["*"], household_size=7))
    for n in range(2):
        status, _ = await api.call("POST", "/v1/subscribers", a_key, json=aid_recipient(
            f"a{n}@example.com", domains=["social-insurance"], household_size=2))
        assert status == 201

    async def preview(key: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
        domain = "social-insurance" if key == a_key else "social-assistance"
        status, body = await api.call("POST", "/v1/policies/preview", key, json=aid_policy(domain, where))
        assert status == 200, body
        return body

    # Three reached, one of them B's: A is told "fewer than 5", not 3; a narrowing to B's one neither.
    assert await preview(a_key) == {"total": "fewer than 5", "by_channel": {"email": "fewer than 5"},
                                    "by_audience": {"aid_recipient": "fewer than 5"}}
    seven = {"attr": "aid_recipient.household_size", "op": "eq", "value": 7}
    assert (await preview(a_key, seven))["total"] == "fewer than 5"
    # Only A's own: shown exactly, zero too.
    two = {"attr": "aid_recipient.household_size", "op": "eq", "value": 2}
    assert await preview(a_key, two) == {"total": 2, "by_channel": {"email": 2}, "by_audience": {"aid_recipient": 2}}
    assert (await preview(a_key, {"attr": "aid_recipient.household_size", "op": "eq", "value": 9}))["total"] == 0
    # B's policy reaches only B's one (A's records do not take B's domain): its own, shown exactly.
    assert (await preview(b_key))["total"] == 1

    for n in range(2, 4):
        await api.call("POST", "/v1/subscribers", a_key, json=aid_recipient(
            f"a{n}@example.com", domains=["social-insurance"], household_size=2))
    assert (await preview(a_key))["total"] == 5  # five or more: the number, whoever supplied them
