"""The statuses of a case and the moves between them, with the words applicants read. Pure."""

from __future__ import annotations

from typing import Literal, get_args

CaseStatus = Literal[
    "submitted", "accepted", "not_accepted", "in_review", "supplement_required",
    "approved", "rejected", "completed", "result_delivered", "withdrawn",
]
STATUSES: tuple[str, ...] = get_args(CaseStatus)
INITIAL = "submitted"
# Not decided yet: the applicant may still withdraw, and the time limit runs.
OPEN = frozenset({"submitted", "accepted", "in_review", "supplement_required"})

_NEXT: dict[str, tuple[str, ...]] = {
    "submitted": ("accepted", "not_accepted"),
    "accepted": ("in_review",),
    "in_review": ("supplement_required", "approved", "rejected"),
    "supplement_required": ("in_review",),
    "approved": ("completed",),
    "completed": ("result_delivered",),
}


def allowed_next(status: str) -> list[str]:
    """The statuses a case in `status` may move to; [] when it has ended."""
    return [*_NEXT.get(status, ()), *(["withdrawn"] if status in OPEN else [])]


def can_move(current: str, new: str) -> bool:
    return new in allowed_next(current)


# The status in plain words, per template locale.
LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "submitted": "已提交", "accepted": "已受理", "not_accepted": "不予受理", "in_review": "审查中",
        "supplement_required": "需补正材料", "approved": "审批通过", "rejected": "审批未通过",
        "completed": "已办结", "result_delivered": "结果已送达", "withdrawn": "已撤回",
    },
    "zh-HK": {
        "submitted": "已提交", "accepted": "已受理", "not_accepted": "不予受理", "in_review": "審查中",
        "supplement_required": "需補正材料", "approved": "審批通過", "rejected": "審批未通過",
        "completed": "已辦結", "result_delivered": "結果已送達", "withdrawn": "已撤回",
    },
    "en": {
        "submitted": "submitted", "accepted": "accepted", "not_accepted": "not accepted",
        "in_review": "under review", "supplement_required": "more materials needed", "approved": "approved",
        "rejected": "not approved", "completed": "completed", "result_delivered": "result delivered",
        "withdrawn": "withdrawn",
    },
}

# What the applicant should do next; {note} is the department's note (for supplement_required:
# the materials to bring).
_NEXT_STEPS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "submitted": "请等待受理。", "accepted": "无需操作，请等待审查结果。",
        "not_accepted": "如有疑问请咨询办理窗口。{note}", "in_review": "无需操作，请等待审查结果。",
        "supplement_required": "请补正以下材料：{note}", "approved": "请等待办结通知。",
        "rejected": "如有异议，可依法申请行政复议或提起行政诉讼。{note}", "completed": "请留意结果送达。{note}",
        "result_delivered": "请查收办理结果。{note}", "withdrawn": "申请已撤回，无需操作。",
    },
    "zh-HK": {
        "submitted": "請等待受理。", "accepted": "無需操作，請等待審查結果。",
        "not_accepted": "如有疑問請諮詢辦理窗口。{note}", "in_review": "無需操作，請等待審查結果。",
        "supplement_required": "請補正以下材料：{note}", "approved": "請等待辦結通知。",
        "rejected": "如有異議，可依法申請行政覆議或提起行政訴訟。{note}", "completed": "請留意結果送達。{note}",
        "result_delivered": "請查收辦理結果。{note}", "withdrawn": "申請已撤回，無需操作。",
    },
    "en": {
        "submitted": "Please wait for it to be accepted.", "accepted": "Nothing to do; we will tell you the result.",
        "not_accepted": "Ask the service counter if anything is unclear. {note}",
        "in_review": "Nothing to do; we will tell you the result.",
        "supplement_required": "Please provide these materials: {note}",
        "approved": "Please wait for the case to be completed.",
        "rejected": "You may apply for administrative reconsideration or bring a lawsuit. {note}",
        "completed": "The result will reach you soon. {note}", "result_delivered": "Please check the result. {note}",
        "withdrawn": "The application is withdrawn; nothing to do.",
    },
}


def labels(status: str) -> dict[str, str]:
    """The status in plain words, keyed by locale."""
    return {locale: words[status] for locale, words in LABELS.items()}


def next_steps(status: str, note: str | None) -> dict[str, str]:
    """What to do next, keyed by locale, the note woven in where the status calls for it."""
    note = " ".join((note or "").split())
    return {locale: steps[status].format(note=note).strip() for locale, steps in _NEXT_STEPS.items()}
