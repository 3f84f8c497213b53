"""The pages' side of proving a contact, shared by /subscribe, /verify, /confirm and /manage:
the client address and page a proof comes from, a limit or a refused code in the page's words,
the manage page a proof leads to, and the page for a bad link. What a proof does is
pushsvc.subscriptions.proofs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from pushsvc.core.identifiers import normalise_phone
from pushsvc.core.msgid import N_
from pushsvc.core.tokens import BadToken
from pushsvc.core.verification import ContactKeys, ContactKind, manage_token, normal_code
from pushsvc.http.limits import client_address
from pushsvc.http.routing import services
from pushsvc.i18n import Words
from pushsvc.subscriptions.proofs import CodeRefused, Limited, prove_by_code
from pushsvc.web.forms import FIGURES, INVALID_PHONE, minutes, notice

# How each contact is reached, and the sources consents name: the page it happened on.
SUBSCRIBE_SOURCE, CONFIRM_SOURCE, VERIFY_SOURCE, MANAGE_SOURCE = "web:/subscribe", "web:/confirm", "web:/verify", "web:/manage"


# A message refused for its contact or for the client's address, in the page's words.
_LIMITED = {
    "phone": N_("This number has asked for %(limit)s codes in the last hour. To protect it from being flooded, "
                "try again in about %(minutes)s minutes."),
    "email": N_("This address has been sent %(limit)s messages in the last hour. To protect it from being flooded, "
                "try again in about %(minutes)s minutes."),
}
_LIMITED_CLIENT = N_("Too many requests from your network address: try again in about %(minutes)s minutes.")


def client_of(request: web.Request) -> str:
    return client_address(request, services(request).settings.proxy_hops)


def limit_error(limited: Limited, words: Words) -> dict[str, str]:
    """The error, by form field, for a message over its limit."""
    msgid = _LIMITED_CLIENT if limited.refused.who == "client" else _LIMITED[limited.contact]
    return {limited.contact: words.gettext(msgid, minutes=minutes(limited.refused.retry_after), limit=FIGURES["limit"])}


@dataclass(frozen=True)
class Rejected:
    errors: dict[str, str]  # by form field
    status: int


async def prove_code(request: web.Request, phone_text: str, code_text: str, source: str,
                     words: Words) -> tuple[int, str, set[str]] | Rejected:
    """(subscriber id, phone, the channels on) for a right code, which proves the phone."""
    try:
        phone = normalise_phone(phone_text)
    except ValueError:
        return Rejected({"phone": words.gettext(INVALID_PHONE)}, 422)
    code = normal_code(code_text)
    if code is None:
        return Rejected({"code": words.gettext("Enter the 6-digit code from the text message.")}, 422)
    result = await prove_by_code(services(request), phone, code, client_of(request), source)
    if not isinstance(result, CodeRefused):
        return result.subscriber_id, phone, result.channels_on
    if result.reason == "limited":
        return Rejected({"code": words.gettext(_LIMITED_CLIENT, minutes=minutes(result.retry_after))}, 429)
    if result.reason == "wrong":
        return Rejected({"code": words.ngettext("That code is not right: %(num)s more try.",
                                                "That code is not right: %(num)s more tries.", result.attempts_left)}, 422)
    return Rejected({"code": words.gettext(
        "There is no valid code (it expired, was used or was mistyped too often): send a new one.")}, 422)


def manage_path(request: web.Request, sid: int, kind: ContactKind, contact: str, locale: str) -> str:
    """The manage page for someone who has just proven `contact`."""
    svc = services(request)
    token = manage_token(svc.signer, ContactKeys(svc.settings.secret_key), sid, kind, contact)
    return f"/manage/{token}?lang={locale}"


def bad_link(request: web.Request, locale: str, exc: BadToken) -> web.Response:
    """A clear page, never a 500, for a link that is expired (410) or not ours (400)."""
    new_link = ((f"/manage?lang={locale}", N_("Ask for a new manage link")),)
    if exc.reason == "expired":
        return notice(request, locale, 410, N_("Link expired"),
                      N_("This link has expired. Ask for a new manage link, or subscribe again."), links=new_link)
    return notice(request, locale, 400, N_("Invalid link"),
                  N_("This link is not valid or not complete: use the whole link from the e-mail or text message."),
                  links=new_link)
