"""The console's inbox of the public's questions over HTTP: a drafter lists the department's
questions (unanswered by default, contacts masked), opens one (the contact in full, audited) and
answers it publicly; the answer shows on the policy page. Another department's staff get a 404,
an overseer reads and cannot answer, a visitor signed out is sent to sign in, a forged form is
refused, and an empty answer is shown again with its error."""

from __future__ import annotations

import re

from tests.conftest import Api
from tests.console_helpers import ConsoleClient
from tests.test_console_policies import audit_actions, person
from tests.test_feedback import ASKER, ask, published

_ROW = re.compile(r'href="/console/questions/(\d+)"')


async def listed(client: ConsoleClient, query: str = "") -> list[int]:
    status, html, _ = await client.get(f"/console/questions{query}")
    assert status == 200, html[:800]
    return [int(i) for i in _ROW.findall(html)]


async def test_the_inbox_answers_within_the_department(api: Api) -> None:
    dept, policy = await published(api)
    other, theirs = await published(api, "市税务局")
    await ask(api, policy["id"], question="补贴何时发放？", contact=ASKER)
    await ask(api, policy["id"], question="个体户可以申请吗？")
    await ask(api, theirs["id"], question="别处的问题")
    drafter = await person(api, dept["id"], "drafter")
    outsider = await person(api, other["id"], "drafter")
    overseer = await person(api, None, "overseer")
    visitor = ConsoleClient(api)
    try:
        status, html, _ = await drafter.get("/console/questions")
        assert status == 200 and "补贴何时发放？" in html and "别处的问题" not in html
        assert "l***@example.com" in html and ASKER not in html
        assert 'href="/console/questions"' in html  # in the navigation
        mine = await listed(drafter)
        assert len(mine) == 2
        first = mine[-1]  # oldest last: the one with a contact
        assert await listed(outsider) == [i for i in await listed(outsider) if i not in mine]
        status, _, _ = await outsider.get(f"/console/questions/{first}")
        assert status == 404
        status, _, headers = await visitor.get("/console/questions")
        assert status == 303 and headers["Location"].startswith("/console/login")

        status, html, _ = await drafter.get(f"/console/questions/{first}")
        assert status == 200 and ASKER in html
        assert any(e["action"] == "question.read" for e in await audit_actions(api, dept["api_key"]))

        # A forged form, then an empty answer: refused, nothing stored.
        status, _, _ = await drafter.request("POST", f"/console/questions/{first}",
                                             data={"csrf_token": "forged", "answer": "x"})
        assert status == 403
        status, html, _ = await drafter.post(f"/console/questions/{first}", {"answer": "  ", "public": "yes"},
                                          page=f"/console/questions/{first}")
        assert status == 422 and 'id="answer-error"' in html and re.search(r'name="public"[^>]*checked', html)

        # The overseer reads every department's and answers none.
        assert set(mine) <= set(await listed(overseer, "?state=all"))
        status, html, _ = await overseer.get(f"/console/questions/{first}")
        assert status == 200 and "<textarea" not in html
        status, _, _ = await overseer.request("POST", f"/console/questions/{first}", data={"answer": "x"})
        assert status == 403

        status, html, headers = await drafter.post(f"/console/questions/{first}",
                                                   {"answer": "本月底前发放。", "public": "yes"},
                                                   page=f"/console/questions/{first}")
        assert status == 303, html[:500]
        status, html, _ = await drafter.follow(headers["Location"])
        assert "本月底前发放。" in html and "<textarea" not in html
        assert first not in await listed(drafter)
        assert first in await listed(drafter, "?state=answered")
        status, page = await api.call("GET", f"/p/{policy['id']}")
        assert "补贴何时发放？" in page and "本月底前发放。" in page and ASKER not in page
    finally:
        for client in (drafter, outsider, overseer, visitor):
            await client.close()
