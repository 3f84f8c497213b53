"""GET /v1/policies/{id}/render: exactly what a channel would send for a policy, in one locale."""

from __future__ import annotations

from typing import get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, field_validator

from pushsvc.api.policies import own_policy
from pushsvc.channels import CHANNELS
from pushsvc.core.models import Locale
from pushsvc.core.rendering import RenderError
from pushsvc.http.problems import Problem
from pushsvc.http.routing import Param, endpoint, json_response, parse_model, services
from pushsvc.policies.messages import load_message


class RenderQuery(BaseModel):
    channel: str
    locale: Locale = "zh-CN"

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, v: str) -> str:
        if v not in CHANNELS:
            raise ValueError(f"must be one of {', '.join(CHANNELS)}")
        return v


class RenderOut(BaseModel):
    """The channel's own parts (e-mail: subject, text, html, inline_images; SMS: text, parts; ...),
    with recipient values shown as placeholders."""

    model_config = ConfigDict(extra="allow")


@endpoint("GET", "/v1/policies/{id}/render", summary="What a channel would send for the policy, in a locale",
          tag="policies", auth="department_or_admin", response=RenderOut, errors=(401, 404, 422),
          query=(Param("channel", "the channel", required=True, schema={"type": "string", "enum": list(CHANNELS)}),
                 Param("locale", "the subscriber's language (default zh-CN)",
                       schema={"type": "string", "enum": list(get_args(Locale))})))
async def render_policy(request: web.Request) -> web.Response:
    query = parse_model(RenderQuery, dict(request.query))
    policy = await own_policy(request)
    message = await load_message(services(request), policy["id"])
    if message is None:  # deleted between the two reads
        raise Problem(404, "no such policy")
    try:
        rendered = services(request).channels[query.channel].preview(message, query.locale)
    except RenderError as exc:
        raise Problem(422, f"the {query.channel} templates cannot render this policy: {exc}") from None
    return json_response(rendered)
