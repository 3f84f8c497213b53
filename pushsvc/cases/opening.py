"""Opening a case: the applicant's contacts checked for the channels asked for, the case stored
with its page token and short link."""

from __future__ import annotations

from pushsvc.cases.messages import case_page_token, case_path
from pushsvc.cases.view import case_out
from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.core.case_states import INITIAL
from pushsvc.core.clock import now
from pushsvc.core.errors import Conflict, FieldError, ValidationFailed
from pushsvc.core.identifiers import normalise_email, normalise_phone
from pushsvc.core.messages import Recipient
from pushsvc.core.models import CaseIn, CaseOut
from pushsvc.core.quiet_hours import local_date
from pushsvc.core.workdays import add_working_days
from pushsvc.services import Services
from pushsvc.store.cases import DuplicateCase, insert_case, set_links
from pushsvc.store.short_links import short_code


async def open_case(svc: Services, department_id: int, data: CaseIn) -> CaseOut:
    contacts, errors = _contacts(data)
    if errors:
        raise ValidationFailed(errors)
    at = now()
    started_on = local_date(at)
    row = {
        "department_id": department_id, "case_no": data.case_no, "service_item": data.service_item.strip(),
        "applicant_name": data.applicant.name.strip(), "email": contacts.email, "phone": contacts.phone,
        "wechat_openid": contacts.wechat_openid, "locale": data.locale,
        "channels": list(dict.fromkeys(data.channels)), "status": INITIAL,
        "time_limit_days": data.time_limit_days, "started_on": started_on,
        "due_on": add_working_days(started_on, data.time_limit_days) if data.time_limit_days else None,
        "created_at": at, "updated_at": at,
    }
    try:
        async with svc.db.write() as conn:
            # The page token names the case by id, known only once the row exists: insert, then fill in.
            row["page_token"], row["short_code"] = "", ""
            case_id = await insert_case(conn, row)
            token = case_page_token(svc.signer, case_id)
            code = await short_code(conn, case_path(token))
            case = await set_links(conn, case_id, token, code)
    except DuplicateCase:
        raise Conflict(f"case {data.case_no} exists", [FieldError("case_no", "already used by this department")]) from None
    return case_out(svc, case, [])


def _contacts(data: CaseIn) -> tuple[Recipient, list[FieldError]]:
    """The applicant's normalised contacts (as a Recipient, which channels can address), and what is wrong."""
    a, errors = data.applicant, []
    email = phone = None
    try:
        email = normalise_email(a.email) if a.email else None
    except ValueError as exc:
        errors.append(FieldError("applicant.email", str(exc)))
    try:
        phone = normalise_phone(a.phone) if a.phone else None
    except ValueError as exc:
        errors.append(FieldError("applicant.phone", str(exc)))
    contacts = Recipient(0, 0, a.name, data.locale, email=email, phone=phone, wechat_openid=a.wechat_openid)
    for i, channel in enumerate(data.channels):
        address = CHANNEL_CONTACTS.get(channel)
        if address is None:
            errors.append(FieldError(f"channels[{i}]", f"unknown channel '{channel}'"))
        elif address(contacts) is None and not any(e.field.startswith("applicant.") for e in errors):
            errors.append(FieldError(f"channels[{i}]", f"channel {channel} needs a contact for it in applicant"))
    return contacts, errors
