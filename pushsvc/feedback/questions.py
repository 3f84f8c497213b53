"""The questions as their department reads them (the API and the console's inbox), as their asker
reaches them again (a signed link: see the answer, delete the question), and the contacts' end.

A contact is personal data kept for one purpose, sending the answer: lists show it masked, and
every list or question read that shows one is in the audit log. It is cleared ANSWERED_RETENTION
after the answer (long enough for a failed send to be retried and a reply looked into), or
UNANSWERED_RETENTION after the question if no answer ever came; the asker's link deletes the
question and its contact at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pushsvc.core.clock import now
from pushsvc.core.errors import NotFound
from pushsvc.core.identifiers import mask_email, mask_phone
from pushsvc.core.quiet_hours import local_time
from pushsvc.core.tokens import BadToken, TokenSigner
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store import feedback as store

ANSWERED_RETENTION = timedelta(days=30)
UNANSWERED_RETENTION = timedelta(days=180)
_ASKER_PURPOSE = "question"
# The asker's link outlives the contact (they may still want to delete the question) but not forever.
ASKER_LINK_TTL = timedelta(days=365)


def masked(row: dict[str, Any]) -> str | None:
    """The question's contact as lists show it; None without one."""
    if not row["contact"]:
        return None
    return mask_email(row["contact"]) if row["contact_kind"] == "email" else mask_phone(row["contact"])


async def own_question(svc: Services, department_id: int | None, question_id: int) -> dict[str, Any]:
    """The question; another department's is NotFound (`department_id` None: any)."""
    async with svc.db.read() as conn:
        row = await store.get_question(conn, question_id)
    if row is None or (department_id is not None and row["department_id"] != department_id):
        raise NotFound("no such question")
    return row


async def read_questions(svc: Services, actor: str, department_id: int | None, *, policy_id: int | None = None,
                         state: store.State = "all", before_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """A page of questions, newest first, contacts masked (`contact_masked`, `contact` removed). A
    page showing any contact is recorded in the audit log, for the questions' department."""
    async with svc.db.read() as conn:
        rows = await store.list_questions(conn, department_id, policy_id=policy_id, state=state,
                                          before_id=before_id, limit=limit)
    for row in rows:
        row["contact_masked"] = masked(row)
        del row["contact"]
    await _audit_contacts(svc, actor, [r for r in rows if r["contact_masked"]], "questions.read")
    return rows


async def read_question(svc: Services, actor: str, department_id: int | None, question_id: int) -> dict[str, Any]:
    """One question with its contact in full (the person answering may need to call back): audited."""
    row = await own_question(svc, department_id, question_id)
    row["contact_masked"] = masked(row)
    await _audit_contacts(svc, actor, [row] if row["contact"] else [], "question.read")
    return row


async def _audit_contacts(svc: Services, actor: str, rows: list[dict[str, Any]], action: str) -> None:
    by_department: dict[int, list[int]] = {}
    for row in rows:
        by_department.setdefault(row["department_id"], []).append(row["id"])
    for department_id, ids in by_department.items():
        await audit.record(svc, actor, action, None, for_department=department_id, question_ids=ids)


async def public_qa(svc: Services, policy_id: int) -> list[dict[str, Any]]:
    """The policy page's public Q&A: question, answer, when answered (local time); no contact."""
    async with svc.db.read() as conn:
        rows = await store.public_answers(conn, policy_id)
    return [{"question": r["question"], "answer": r["answer"], "answered_at": local_time(r["answered_at"])} for r in rows]


# -- the asker's own link ------------------------------------------------------------------------


def asker_token(signer: TokenSigner, question_id: int) -> str:
    return signer.sign(_ASKER_PURPOSE, {"q": question_id}, ASKER_LINK_TTL)


def asker_path(signer: TokenSigner, question_id: int) -> str:
    return f"/q/{asker_token(signer, question_id)}"


def read_asker_token(signer: TokenSigner, token: str) -> int:
    """The question a link names; BadToken if it is not ours or has expired."""
    payload = signer.verify(_ASKER_PURPOSE, token)
    question_id = payload.get("q")
    if not isinstance(question_id, int):
        raise BadToken("invalid")
    return question_id


async def asked(svc: Services, question_id: int) -> dict[str, Any] | None:
    async with svc.db.read() as conn:
        return await store.get_question(conn, question_id)


async def delete_by_asker(svc: Services, question_id: int) -> bool:
    """The asker takes their question back: it goes, contact, answer and all."""
    async with svc.db.write() as conn:
        gone = await store.delete_question(conn, question_id)
        if gone:
            await audit.record(conn, f"asker:question:{question_id}", "question.deleted", None)
    return gone


async def run_purge_contacts(svc: Services) -> int:
    """Clear the contacts whose time is up (the `question_contacts` cron)."""
    at = now()
    async with svc.db.write() as conn:
        return await store.erase_contacts(conn, at - ANSWERED_RETENTION, at - UNANSWERED_RETENTION, at)
