"""The public's questions about a department's policies, and its answers: list a policy's
questions (contacts masked; the read is audited), read one with its contact (audited), answer one
(public or not; the asker is sent the answer). Another department's question or policy is a 404."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from pushsvc.api.policies import own_policy
from pushsvc.core.errors import FieldError
from pushsvc.feedback.answers import ANSWER_MAX, answer_question
from pushsvc.feedback.questions import masked, read_question, read_questions
from pushsvc.http.auth import caller
from pushsvc.http.problems import Problem
from pushsvc.http.routing import (
    CURSOR,
    LIMIT,
    Param,
    after_cursor,
    endpoint,
    int_param,
    json_body,
    json_response,
    next_cursor,
    parse_model,
    path_id,
    services,
)
from pushsvc.store.feedback import STATES, State


class QuestionOut(BaseModel):
    id: int
    policy_id: int
    policy_title: str
    question: str
    contact_kind: Literal["email", "sms"] | None = Field(description="how the asker wants the answer; null: not at all")
    contact: str | None = Field(description="masked in lists; in full from GET /v1/questions/{id}; null once erased")
    locale: str
    asked_at: datetime
    answer: str | None
    public: bool = Field(description="the answer shows on the policy page, with the question and never the contact")
    answered_at: datetime | None
    answer_sent_at: datetime | None = Field(description="when the answer went to the asker")
    answer_error: str | None = Field(description="why sending the answer failed for good")

    @classmethod
    def of(cls, row: dict[str, Any], contact: str | None) -> QuestionOut:
        return cls(**{k: row[k] for k in cls.model_fields if k in row and k != "contact"},
                   asked_at=row["created_at"], contact=contact)


class QuestionPage(BaseModel):
    items: list[QuestionOut]
    next_cursor: str | None


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(min_length=1, max_length=ANSWER_MAX)
    public: bool = False


@endpoint("GET", "/v1/policies/{id}/questions", summary="The public's questions about a policy, newest first "
          "(contacts masked; the read is in the audit log)", tag="questions", auth="department_or_admin",
          response=QuestionPage, errors=(401, 404, 422),
          query=(Param("state", "unanswered | answered | all (default)", schema={"type": "string", "enum": list(STATES)}),
                 LIMIT, CURSOR))
async def list_policy_questions(request: web.Request) -> web.Response:
    policy = await own_policy(request)
    state = request.query.get("state", "all")
    if state not in STATES:
        raise Problem(422, "unknown state", [FieldError("state", f"must be one of {', '.join(STATES)}")])
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    rows = await read_questions(services(request), caller(request).actor, None, policy_id=policy["id"],
                                state=cast(State, state), before_id=after_cursor(request), limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    return json_response(QuestionPage(items=[QuestionOut.of(r, r["contact_masked"]) for r in rows],
                                      next_cursor=next_cursor(rows[-1]["id"]) if more else None))


@endpoint("GET", "/v1/questions/{id}", summary="One question with the asker's contact in full (the read is in the "
          "audit log)", tag="questions", auth="department_or_admin", response=QuestionOut, errors=(401, 404))
async def read_one_question(request: web.Request) -> web.Response:
    who = caller(request)
    row = await read_question(services(request), who.actor, who.department_id, path_id(request))
    return json_response(QuestionOut.of(row, row["contact"]))


@endpoint("POST", "/v1/questions/{id}/answer", summary="Answer a question: stored once, sent to the asker's contact, "
          "shown on the policy page when public", tag="questions", auth="department", body=AnswerIn,
          response=QuestionOut, errors=(400, 401, 403, 404, 409, 413, 422))
async def answer_one_question(request: web.Request) -> web.Response:
    who = caller(request)
    question_id = path_id(request)
    body = parse_model(AnswerIn, await json_body(request))
    row = await answer_question(services(request), who.actor, who.department_id, question_id, body.answer, body.public)
    return json_response(QuestionOut.of(row, masked(row)))
