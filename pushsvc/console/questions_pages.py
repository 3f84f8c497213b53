"""The console's inbox of the public's questions (`/console/questions`): the department's, newest
first, unanswered by default, contacts masked (the list read is audited); one question with the
asker's contact (audited) and, for drafters and up, the answer form with its "make public" box.
Another department's question is a 404; an overseer reads every department's and answers none."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from aiohttp import web

from pushsvc.console.session import (
    FORM_MEDIA,
    LANG,
    PageAnswer,
    checked_form,
    console_endpoint,
    console_page,
    page_lang,
    redirect,
    require,
)
from pushsvc.core.errors import Conflict, NotFound, ValidationFailed
from pushsvc.core.msgid import N_
from pushsvc.core.quiet_hours import local_time
from pushsvc.feedback.answers import ANSWER_MAX, answer_question
from pushsvc.feedback.questions import read_question, read_questions
from pushsvc.http.problems import Problem
from pushsvc.http.routing import CURSOR, Param, after_cursor, next_cursor, path_id, services
from pushsvc.i18n import words
from pushsvc.staff.rights import Staff, can
from pushsvc.store.feedback import STATES, State

PAGE_SIZE = 50
ANSWER_FORM = "answer-question"
STATE_NAMES = {"unanswered": N_("Unanswered"), "answered": N_("Answered"), "all": N_("All")}
CONTACT_KINDS = {"email": N_("E-mail"), "sms": N_("SMS")}
EMPTY_ANSWER = N_("Write the answer.")
LONG_ANSWER = N_("The answer can have at most %(max)s characters.")


def _before(request: web.Request) -> int:
    try:
        return after_cursor(request)
    except Problem:
        return 0


@console_endpoint("GET", "/console/questions", summary="The public's questions about the department's policies",
                  query=(Param("state", "unanswered (default) | answered | all"), CURSOR, LANG), errors=(403,))
async def questions_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    state = request.query.get("state", "unanswered")
    state = state if state in STATES else "unanswered"
    rows = await read_questions(services(request), staff.actor, staff.department_id, state=cast(State, state),
                                before_id=_before(request), limit=PAGE_SIZE + 1)
    more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
    query = {"state": state}
    return console_page(
        request, "questions.html", staff, items=rows, state=state, states=STATES, state_names=STATE_NAMES,
        local_time=local_time, paged=bool(request.query.get("cursor")),
        first_url=f"/console/questions?{urlencode(query)}",
        next_url=f"/console/questions?{urlencode({**query, 'cursor': next_cursor(rows[-1]['id'])})}" if more else None,
    )


async def _question(request: web.Request, staff: Staff) -> dict[str, Any]:
    try:
        return await read_question(services(request), staff.actor, None if staff.is_overseer else staff.department_id,
                                   path_id(request))
    except (NotFound, Problem):
        t = words(page_lang(request))
        raise PageAnswer(console_page(request, "message.html", staff, status=404, title=t.gettext("Not found"),
                                      text=t.gettext("No such question in your department."),
                                      back="/console/questions")) from None


def _question_page(request: web.Request, staff: Staff, question: dict[str, Any], *, status: int = 200,
                   errors: dict[str, str] | None = None, typed: str = "", public: bool = False) -> web.Response:
    return console_page(
        request, "question.html", staff, status=status, form=ANSWER_FORM, question=question, local_time=local_time,
        contact_kinds=CONTACT_KINDS, errors=errors or {}, typed=typed, public=public, answer_max=ANSWER_MAX,
        can_answer=not staff.is_overseer and can(staff, "draft", question["department_id"])
        and question["answered_at"] is None,
        answered=request.query.get("answered") == "1",
    )


@console_endpoint("GET", "/console/questions/{id}", summary="One question, the asker's contact, and the answer form",
                  query=(LANG,), errors=(403, 404))
async def question_page(request: web.Request) -> web.Response:
    staff = await require(request, "read")
    return _question_page(request, staff, await _question(request, staff))


@console_endpoint("POST", "/console/questions/{id}", summary="Answer a question (public or not); the asker is sent it",
                  body_media=FORM_MEDIA, status=303, errors=(403, 404, 409, 422))
async def answer_page(request: web.Request) -> web.Response:
    staff = await require(request, "draft")
    question = await _question(request, staff)
    fields = await checked_form(request, ANSWER_FORM)
    t = words(page_lang(request))
    typed, public = fields.get("answer", "")[:ANSWER_MAX * 2], fields.get("public") == "yes"
    try:
        await answer_question(services(request), staff.actor, staff.department_id, question["id"], typed, public)
    except ValidationFailed:
        message = t.gettext(LONG_ANSWER, max=ANSWER_MAX) if typed.strip() else t.gettext(EMPTY_ANSWER)
        return _question_page(request, staff, question, status=422, errors={"answer": message}, typed=typed,
                              public=public)
    except Conflict:
        return _question_page(request, staff, await _question(request, staff), status=409,
                              errors={"answer": t.gettext("This question has been answered already.")})
    raise redirect(f"/console/questions/{question['id']}?answered=1")
