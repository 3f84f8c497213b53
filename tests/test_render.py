"""GET /v1/policies/{id}/render: what each channel would send, checked against what it does send."""

from __future__ import annotations

import base64
import json

import pytest

from pushsvc.channels import CHANNELS
from pushsvc.channels.email import EmailChannel
from pushsvc.core.messages import Recipient
from pushsvc.core.rendering import Renderer
from pushsvc.core.tokens import TokenSigner
from pushsvc.policies.messages import load_message
from pushsvc.services import open_services
from pushsvc.settings import Settings
from tests.conftest import ADMIN, Api
from tests.test_api_foundation import POLICY
from tests.test_email_channel import inline_qr, parse
from tests.test_qr import decode, published


async def test_render_email_is_what_the_email_carries(api: Api, settings: Settings) -> None:
    dept, policy = await published(api)
    status, shown = await api.call("GET", f"/v1/policies/{policy['id']}/render?channel=email&locale=en", dept["api_key"])
    assert status == 200, shown
    assert shown["subject"] == f"{POLICY['title']} ({dept['name']})"
    assert "Dear {recipient_name}," in shown["text"] and f"/p/{policy['id']}" in shown["text"]
    [image] = shown["inline_images"]
    assert f'src="cid:{image["content_id"]}"' in shown["html"]
    [(link, _)] = decode(base64.b64decode(image["data"]))
    status, _ = await api.call("GET", link.removeprefix(settings.public_url), allow_redirects=False)
    assert status == 302  # the short link, live

    # The same policy through the channel the worker uses: the same subject, bodies and image.
    svc = await open_services(settings)
    try:
        message = await load_message(svc, policy["id"])
    finally:
        await svc.close()
    assert message is not None
    channel = EmailChannel(settings, Renderer(settings.templates_dir), TokenSigner(settings.secret_key))
    person = Recipient(delivery_id=1, subscriber_id=1, name="ACME Ltd", locale="en", email="boss@example.com")
    sent = parse(channel.compose(message, person, "boss@example.com", "Tue, 01 Dec 2026 00:00:00 +0000")[1])
    cid, png = inline_qr(sent)
    unsub = sent["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    fill = {"{recipient_name}": "ACME Ltd", "{unsubscribe_url}": unsub, image["content_id"]: cid}
    assert sent["Subject"] == shown["subject"]
    for part, kind in (("text", "plain"), ("html", "html")):
        expected = shown[part]
        for placeholder, value in fill.items():
            expected = expected.replace(placeholder, value)
        assert sent.get_body((kind,)).get_content() == expected  # type: ignore[union-attr]
    assert png == base64.b64decode(image["data"])


async def test_render_locales_access_and_bad_queries(api: Api) -> None:
    dept, policy = await published(api)
    key, path = dept["api_key"], f"/v1/policies/{policy['id']}/render"

    status, zh = await api.call("GET", f"{path}?channel=email", key)  # zh-CN unless asked
    assert status == 200 and zh["subject"] == f"【{dept['name']}】{POLICY['title']}"
    status, hk = await api.call("GET", f"{path}?channel=email&locale=zh-HK", ADMIN)
    assert status == 200 and "文號" in hk["text"]

    for query, field in (("channel=fax", "channel"), ("", "channel"), ("channel=email&locale=fr", "locale")):
        status, body = await api.call("GET", f"{path}?{query}", key)
        assert status == 422 and [e["field"] for e in body["errors"]] == [field], (query, body)

    other = await api.department(name="市税务局", domains=["tax-administration"])
    assert (await api.call("GET", f"{path}?channel=email", other["api_key"]))[0] == 404
    assert (await api.call("GET", "/v1/policies/999999/render?channel=email", key))[0] == 404
    assert (await api.call("GET", f"{path}?channel=email"))[0] == 401


@pytest.mark.parametrize("name", ["sms", "wechat"])
async def test_render_other_channels(api: Api, settings: Settings, name: str) -> None:
    if name not in CHANNELS:
        pytest.skip(f"the {name} channel is not registered in pushsvc.channels.CHANNELS yet")
    dept, policy = await published(api)
    status, shown = await api.call("GET", f"/v1/policies/{policy['id']}/render?channel={name}&locale=zh-CN",
                                   dept["api_key"])
    assert status == 200, shown
    assert f"{settings.public_url}/s/" in json.dumps(shown, ensure_ascii=False)  # they carry the short link
    if name == "sms":
        assert isinstance(shown["parts"], int) and shown["parts"] >= 1
        assert POLICY["title"] in shown["text"]
