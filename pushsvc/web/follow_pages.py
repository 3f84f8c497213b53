"""Following a policy from its page, and the policies a subscriber follows on the manage pages.

`/p/{id}/follow` asks for the contact a person subscribed with, as `/manage` does (the same
message, limits and answer whether or not it is subscribed): a phone gets a code, typed in here,
which proves it and follows at once; an address gets a manage link, and the policy waits in a
cookie of this browser (its id only) until that link's "Policies I follow" page offers it.
`/manage/{token}/following` lists what the subscriber follows, follows the waiting policy and
unfollows. What following means is pushsvc.policies.following.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pushsvc.core.msgid import N_
from pushsvc.http.pages import SECURITY_HEADERS
from pushsvc.http.problems import Problem
from pushsvc.http.routing import endpoint, path_id, services
from pushsvc.i18n import words as page_words
from pushsvc.policies import following
from pushsvc.store.policies import get_policy
from pushsvc.subscriptions.proofs import ManageSession, ask_for_manage_link, subscriber_with_wishes
from pushsvc.web import csrf
from pushsvc.web.forms import EXPIRED_FORM, FORM_MEDIA, LANG, locale_of, notice, read_form, redis_needed, render
from pushsvc.web.manage_pages import _contact as read_contact
from pushsvc.web.manage_pages import _session
from pushsvc.web.pages import PUBLIC_STATUSES
from pushsvc.web.proofs import MANAGE_SOURCE, Rejected, client_of, limit_error, manage_path, prove_code

FOLLOW_FORM, FOLLOWING_FORM = "follow", "following"
WISH_COOKIE = "pushsvc_follow"
_WISH_AGE = 24 * 3600  # a manage link lives far less; a day covers subscribing and confirming first
_NOT_IN_FORCE = N_("This policy is no longer in force: there is nothing more to follow.")
_NO_CHANNEL = N_("This policy is not sent by any of the ways you receive updates. Add one of them on your "
                 "manage page to follow it.")
_FOLLOWING = N_("You follow this policy: you will hear of its revisions, repeal or lapse.")


async def _public_policy(request: web.Request) -> dict[str, Any] | None:
    try:
        policy_id = path_id(request)
    except Problem:
        return None
    async with services(request).db.read() as conn:
        policy = await get_policy(conn, policy_id)
    return policy if policy and policy["status"] in PUBLIC_STATUSES and not policy["test"] else None


def _no_policy(request: web.Request, locale: str) -> web.Response:
    return notice(request, locale, 404, N_("Not found"), N_("There is no such policy."))


def _follow_page(request: web.Request, locale: str, policy: dict[str, Any], *, contact: str = "", phone: str = "",
                 errors: dict[str, str] | None = None, notice_text: str | None = None,
                 status: int = 200) -> web.Response:
    response = render(request, "follow.html", locale=locale, status=status, form=FOLLOW_FORM, policy=policy,
                      in_force=policy["status"] in following.FOLLOWABLE_STATUSES, contact=contact, phone=phone,
                      errors=errors or {}, notice_text=notice_text, action=f"/p/{policy['id']}/follow")
    # The policy waits here for the manage link opened in this browser (only its id: nothing personal).
    response.set_cookie(WISH_COOKIE, str(policy["id"]), max_age=_WISH_AGE, path="/manage/", httponly=True,
                        samesite="Lax", secure=services(request).settings.public_url.startswith("https://"))
    return response


@endpoint("GET", "/p/{id}/follow", summary="Follow a policy: ask for a manage link or code", tag="pages",
          html=True, query=(LANG,), errors=(404,))
async def follow_page(request: web.Request) -> web.Response:
    locale = locale_of(request)
    policy = await _public_policy(request)
    if policy is None:
        return _no_policy(request, locale)
    return _follow_page(request, locale, policy)


@endpoint("POST", "/p/{id}/follow", summary="Follow a policy: action=send (a link or code to the contact, the "
          "same answer for any contact) or action=enter (a code: follows, 303 to the policies followed)",
          tag="pages", html=True, body_media=FORM_MEDIA, also=(303,), errors=(403, 404, 409, 413, 422, 429, 503))
@redis_needed
async def follow_request(request: web.Request) -> web.Response:
    fields = await read_form(request)
    locale = locale_of(request, fields)
    words = page_words(locale)
    policy = await _public_policy(request)
    if policy is None:
        return _no_policy(request, locale)
    contact_text, phone_text = fields.get("contact", "")[:254].strip(), fields.get("phone", "")[:64]

    def again(errors: dict[str, str], status: int, **kept: str) -> web.Response:
        return _follow_page(request, locale, policy, errors=errors, status=status, **kept)

    if not csrf.valid(request, FOLLOW_FORM, fields):
        return again({"form": words.gettext(EXPIRED_FORM)}, 403, contact=contact_text, phone=phone_text)
    if policy["status"] not in following.FOLLOWABLE_STATUSES:
        return again({"form": words.gettext(_NOT_IN_FORCE)}, 409)
    if fields.get("action") == "enter":
        proven = await prove_code(request, phone_text, fields.get("code", "")[:64], MANAGE_SOURCE, words)
        if isinstance(proven, Rejected):
            return again(proven.errors, proven.status, phone=phone_text)
        sid, phone, _ = proven
        path, _, query = manage_path(request, sid, "phone", phone, locale).partition("?")
        sub = await subscriber_with_wishes(services(request), sid)
        said = await following.follow(services(request), policy["id"], sub) if sub else "not_in_force"
        if said == "no_channel":
            return again({"form": words.gettext(_NO_CHANNEL)}, 409, phone=phone_text)
        return web.Response(status=303, headers={**SECURITY_HEADERS, "Location": f"{path}/following?{query}"})
    contact = read_contact(contact_text)
    if contact is None:
        return again({"contact": words.gettext("Give a valid e-mail address or mainland China mobile number.")}, 422,
                     contact=contact_text)
    kind, value = contact
    limited = await ask_for_manage_link(services(request), kind, value, client_of(request))
    if limited is not None:
        return again({"contact": limit_error(limited, words)[kind]}, 429, contact=contact_text)
    said = (N_("If this number is subscribed, we have sent it a code: enter it below to follow the policy.")
            if kind == "phone" else
            N_("If this address is subscribed, we have sent it a link to your subscription. Open it in this "
               "browser and choose “Policies I follow” to finish."))
    return again({}, 200, contact=contact_text, phone=value if kind == "phone" else "",
                 notice_text=words.gettext(said))


# -- the policies a subscriber follows ---------------------------------------------------------------


async def _following_page(request: web.Request, locale: str, session: ManageSession, *,
                          notices: tuple[str, ...] = (), errors: dict[str, str] | None = None,
                          status: int = 200) -> web.Response:
    svc = services(request)
    followed = await following.followed(svc, session.subscriber_id)
    wish = None
    wished = request.cookies.get(WISH_COOKIE, "")
    if wished.isdigit() and len(wished) < 19 and int(wished) not in {p["id"] for p in followed}:
        async with svc.db.read() as conn:
            wish = await get_policy(conn, int(wished))
        if wish is None or wish["status"] not in following.FOLLOWABLE_STATUSES or wish["test"]:
            wish = None
    manage_url = request.path.removesuffix("/following")
    return render(request, "following.html", locale=locale, status=status, form=FOLLOWING_FORM, followed=followed,
                  wish=wish, notices=notices, errors=errors or {}, manage_url=f"{manage_url}?lang={locale}")


@endpoint("GET", "/manage/{token}/following", summary="The policies a subscriber follows (signed manage link)",
          tag="pages", html=True, query=(LANG,), errors=(400, 404, 410))
async def following_page(request: web.Request) -> web.Response:
    session = await _session(request, locale_of(request))
    if isinstance(session, web.Response):
        return session
    return await _following_page(request, locale_of(request, fallback=session.subscriber["locale"]), session)


@endpoint("POST", "/manage/{token}/following", summary="Follow (action=follow) or unfollow (action=unfollow) "
          "the policy `policy`", tag="pages", html=True, body_media=FORM_MEDIA,
          errors=(400, 403, 404, 409, 410, 413, 422, 503))
@redis_needed
async def change_following(request: web.Request) -> web.Response:
    fields = await read_form(request)
    session = await _session(request, locale_of(request, fields))
    if isinstance(session, web.Response):
        return session
    locale = locale_of(request, fields, fallback=session.subscriber["locale"])
    words = page_words(locale)
    if not csrf.valid(request, FOLLOWING_FORM, fields):
        return await _following_page(request, locale, session, errors={"form": words.gettext(EXPIRED_FORM)},
                                     status=403)
    text, action = fields.get("policy", ""), fields.get("action")
    if not (text.isdigit() and len(text) < 19) or action not in ("follow", "unfollow"):
        return await _following_page(request, locale, session, status=422,
                                     errors={"form": words.gettext("Choose a policy to follow or unfollow.")})
    svc = services(request)
    if action == "unfollow":
        await following.unfollow(svc, int(text), session.subscriber_id)
        return await _following_page(request, locale, session,
                                     notices=(words.gettext("You no longer follow this policy."),))
    said = await following.follow(svc, int(text), session.subscriber)
    if said != "following":
        msgid = _NO_CHANNEL if said == "no_channel" else _NOT_IN_FORCE
        return await _following_page(request, locale, session, errors={"form": words.gettext(msgid)}, status=409)
    response = await _following_page(request, locale, session, notices=(words.gettext(_FOLLOWING),))
    response.del_cookie(WISH_COOKIE, path="/manage/")
    return response
