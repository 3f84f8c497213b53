"""The statuses of a case and the moves between them, with the words applicants read (as msgids). Pure."""

from __future__ import annotations

from typing import Literal, get_args

from pushsvc.core.msgid import N_

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


# The status in plain words, and what the applicant should do next (%(note)s is the department's
# note; for supplement_required: the materials to bring). msgids: the page or message showing them
# translates them into the applicant's language.
LABELS: dict[str, str] = {
    "submitted": N_("submitted"),
    "accepted": N_("accepted"),
    "not_accepted": N_("not accepted"),
    "in_review": N_("under review"),
    "supplement_required": N_("more materials needed"),
    "approved": N_("approved"),
    "rejected": N_("not approved"),
    "completed": N_("completed"),
    "result_delivered": N_("result delivered"),
    "withdrawn": N_("withdrawn"),
}
NEXT_STEPS: dict[str, str] = {
    "submitted": N_("Please wait for it to be accepted."),
    "accepted": N_("Nothing to do; we will tell you the result."),
    "not_accepted": N_("Ask the service counter if anything is unclear. %(note)s"),
    "in_review": N_("Nothing to do; we will tell you the result."),
    "supplement_required": N_("Please provide these materials: %(note)s"),
    "approved": N_("Please wait for the case to be completed."),
    "rejected": N_("You may apply for administrative reconsideration or bring a lawsuit. %(note)s"),
    "completed": N_("The result will reach you soon. %(note)s"),
    "result_delivered": N_("Please check the result. %(note)s"),
    "withdrawn": N_("The application is withdrawn; nothing to do."),
}
