"""The department answers a question: the answer is stored once (a second answer is a conflict:
the asker has been told already), shown on the policy page if marked public, and sent to the
asker by the contact they gave (e-mail, or SMS with a link to read it), through the one send step
in the `answer_send` job as the self-service messages are. The job's argument names the question,
never the contact: it reads the contact as it is then (gone if the asker deleted the question).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from pushsvc.core.clock import now
from pushsvc.core.errors import Conflict, FieldError, ValidationFailed
from pushsvc.core.links import page_url
from pushsvc.core.messages import BaseMessage, Recipient
from pushsvc.delivery.send import Row, SendStep
from pushsvc.feedback.questions import asker_path, own_question
from pushsvc.jobs import ANSWER_SEND, enqueue
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import feedback as store
from pushsvc.store.departments import department_by_id
from pushsvc.store.short_links import short_code

log = logging.getLogger(__name__)

ANSWER_MAX = 5000


@dataclass(frozen=True)
class AnswerMessage(BaseMessage):
    """A department's answer to one person's question about a policy (kind `answer`)."""

    question_id: int
    title: str  # the policy's title
    department: str
    question: str
    answer: str
    page_url: str  # the policy page
    answer_url: str  # the asker's own page: the question, the answer, a button to delete them
    short_url: str  # its short link: the SMS's one link, the e-mail's QR
    kind: str = "answer"
    version: str = "1"  # an answer is given once
    # Nobody subscribed to it: no unsubscribe link, no waiting for quiet hours (they asked).
    to_subscriber: ClassVar[bool] = False

    @property
    def key(self) -> str:
        return f"answer:{self.question_id}"

    @property
    def page(self) -> str:
        return self.answer_url


def check_answer(text: str) -> str:
    answer = text.replace("\r\n", "\n").strip()
    if not answer:
        raise ValidationFailed([FieldError("answer", "must not be empty")])
    if len(answer) > ANSWER_MAX:
        raise ValidationFailed([FieldError("answer", f"must be at most {ANSWER_MAX} characters")])
    return answer


async def answer_question(svc: Services, actor: str, department_id: int | None, question_id: int, text: str,
                          public: bool) -> dict[str, Any]:
    """Store the answer (ValidationFailed, NotFound for another department's, Conflict if answered)
    and enqueue its sending when the asker left a contact; the question as it is now."""
    answer = check_answer(text)
    question = await own_question(svc, department_id, question_id)
    async with svc.db.write() as conn:
        if not await store.set_answer(conn, question_id, answer, public, actor, now()):
            raise Conflict("this question has been answered already")
        await audit.record(conn, actor, "question.answered", None, for_department=question["department_id"],
                           question_id=question_id, public=public)
    if question["contact"]:
        await enqueue(svc.redis, ANSWER_SEND, question_id, _job_id=f"answer:{question_id}")
    return await own_question(svc, None, question_id)


async def _message(svc: Services, question: dict[str, Any]) -> AnswerMessage:
    public = svc.settings.public_url
    path = asker_path(svc.signer, question["id"])
    async with svc.db.write() as conn:
        code = await short_code(conn, path)
        department = await department_by_id(conn, question["department_id"])
    return AnswerMessage(
        question_id=question["id"], title=question["policy_title"], department=department["name"] if department else "",
        question=question["question"], answer=question["answer"], page_url=page_url(public, question["policy_id"]),
        answer_url=public + path, short_url=f"{public}/s/{code}",
    )


async def run_answer_send(svc: Services, question_id: int, attempt: int) -> float | None:
    """Send the answer; seconds until a retry when the channel says try again later, else None."""
    async with svc.db.read() as conn:
        question = await store.get_question(conn, question_id)
    if question is None or not question["contact"] or question["answer"] is None or question["answer_sent_at"]:
        log.info("answer to question %d: nothing to send (deleted, no contact, or sent)", question_id)
        return None
    via = "email" if question["contact_kind"] == "email" else "sms"
    recipient = Recipient(delivery_id=question_id, subscriber_id=0, name=None, locale=question["locale"],
                          email=question["contact"] if via == "email" else None,
                          phone=question["contact"] if via == "sms" else None)
    step = SendStep(svc, "self_service")  # no ledger: the question row keeps what came of it
    [result] = await step.send(via, await _message(svc, question), [recipient], {question_id: (Row(question_id, attempt),)})
    await step.count()
    if result.status in ("sent", "failed"):
        error = (result.outcome.error or "failed") if result.status == "failed" else None
        async with svc.db.write() as conn:
            await store.answer_sent(conn, question_id, now(), error)
        if error:
            log.warning("answer to question %d by %s failed: %s", question_id, via, error)
    if result.retry_at is None:
        return None
    return max(0.0, (result.retry_at - now()).total_seconds())
