"""QR codes read back with a real QR reader (zxing-cpp): the images the service makes decode to the
policy's short link, the short link redirects to the policy page, the poster prints on A4."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import zxingcpp
from PIL import Image, ImageDraw

from pushsvc.core.qr import PNG_MODULE_PIXELS, QUIET_ZONE, qr_png, qr_svg
from pushsvc.settings import Settings
from pushsvc.store.db import Database
from pushsvc.store.short_links import code_for, short_code
from tests.conftest import Api
from tests.test_api_foundation import POLICY

URL = "https://push.example.gov.cn/s/Ab3dEfG"
SVG_NS = "{http://www.w3.org/2000/svg}"
_MODULE = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H\d+z")


def decode(png: bytes) -> list[tuple[str, str]]:
    """Every QR code in the image: (its text, its error-correction level)."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return [(code.text, code.ec_level) for code in found if code.format == zxingcpp.BarcodeFormat.QRCode]


def rasterise(svg: str, scale: int = 8) -> bytes:
    """Draw the SVG's modules (unit squares in its single path) as a PNG, to read it back."""
    root = ET.fromstring(svg)
    size = int(root.attrib["viewBox"].split()[2])
    image = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(image)
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    for x0, y0, x1, y1 in (map(int, m) for m in _MODULE.findall(path.attrib["d"])):
        draw.rectangle((x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_png_decodes_at_level_m_with_a_quiet_zone() -> None:
    png = qr_png(URL)
    assert decode(png) == [(URL, "M")]
    image = Image.open(io.BytesIO(png)).convert("L")
    width, height = image.size
    margin = QUIET_ZONE * PNG_MODULE_PIXELS
    assert width == height and (width // PNG_MODULE_PIXELS - 2 * QUIET_ZONE - 21) % 4 == 0  # a QR version's size
    for band in ((0, 0, width, margin), (0, height - margin, width, height), (0, 0, margin, height),
                 (width - margin, 0, width, height)):
        assert image.crop(band).getextrema() == (255, 255)  # 4 white modules all round
    assert image.getpixel((margin, margin)) == 0  # and the finder pattern starts right after


def test_svg_is_well_formed_and_encodes_the_same() -> None:
    svg = qr_svg(URL)
    root = ET.fromstring(svg)  # well-formed XML, as a file and inline
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}rect").attrib["fill"] == "white"  # type: ignore[union-attr]  # readable on any background
    assert decode(rasterise(svg)) == [(URL, "M")]


def test_longer_data_grows_the_version_not_fails() -> None:
    url = "https://push.example.gov.cn/subscribe?" + "&".join(f"domain=domain-number-{i}" for i in range(20))
    assert decode(qr_png(url)) == [(url, "M")]


# -- through the service ---------------------------------------------------------------------------


async def published(api: Api, **changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    dept = await api.department()
    status, policy = await api.call("POST", "/v1/policies", dept["api_key"], json={**POLICY, **changes})
    assert status == 202, policy
    return dept, policy


async def fetch(api: Api, path: str, **headers: str) -> tuple[int, Mapping[str, str], bytes]:
    async with api.session.get(api.base + path, headers=headers, allow_redirects=False) as resp:
        return resp.status, resp.headers.copy(), await resp.read()  # case-insensitive keys


async def test_policy_qr_is_its_short_link_and_redirects(api: Api, settings: Settings) -> None:
    _, policy = await published(api)
    status, headers, png = await fetch(api, f"/p/{policy['id']}/qr.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    [(link, level)] = decode(png)
    assert level == "M" and link.startswith(f"{settings.public_url}/s/")
    code = link.rsplit("/", 1)[1]

    db = Database(settings.database_url)
    try:
        async with db.read() as conn:  # the policy's short link for QR readers (tests/test_via_links.py)
            assert await code_for(conn, f"/p/{policy['id']}?via=qr") == code
        async with db.write() as conn:  # asking again never issues another code
            assert await short_code(conn, f"/p/{policy['id']}?via=qr") == code
    finally:
        await db.close()

    # Cached: long-lived, with an entity tag that a revalidation matches.
    assert "max-age" in headers["Cache-Control"]
    etag = headers["ETag"]
    status, _, body = await fetch(api, f"/p/{policy['id']}/qr.png", **{"If-None-Match": etag})
    assert status == 304 and body == b""

    status, headers, _ = await fetch(api, f"/s/{code}")
    assert status == 302 and headers["Location"] == f"{settings.public_url}/p/{policy['id']}"

    status, headers, svg = await fetch(api, f"/p/{policy['id']}/qr.svg")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert decode(rasterise(svg.decode("ascii"))) == [(link, "M")]
    assert headers["ETag"] != etag


async def test_unknown_short_link_is_a_404_page(api: Api) -> None:
    for code in ("Zzzzzzz", "x" * 500):
        status, headers, body = await fetch(api, f"/s/{code}")
        assert status == 404 and headers["Content-Type"].startswith("text/html")
        assert b'<html lang="' in body and "短链接".encode() in body


async def test_no_qr_or_poster_for_what_is_not_public(api: Api) -> None:
    _, scheduled = await published(api, publish_at="2099-01-01T09:00:00+08:00")
    assert scheduled["status"] == "scheduled"
    for pid in (scheduled["id"], 999_999, "abc", 0):
        for suffix in ("qr.png", "qr.svg", "poster"):
            status, headers, _ = await fetch(api, f"/p/{pid}/{suffix}")
            assert status == 404 and headers["Content-Type"].startswith("text/html"), (pid, suffix)


class _Outline(HTMLParser):
    """What a basic check of a page needs: its lang, title, stylesheets, and tags left open."""

    VOID = {"meta", "link", "br", "img", "input", "path", "rect"}

    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.title = ""
        self.stylesheets: list[str] = []
        self.open: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "link" and a.get("rel") == "stylesheet":
            self.stylesheets.append(a.get("href") or "")
        self._in_title = tag == "title"
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <rect ... /> in the inline SVG

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag not in self.VOID:
            assert self.open and self.open.pop() == tag, f"</{tag}> closes {self.open[-1:]}"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


async def test_poster_for_the_public_information_zone(api: Api, settings: Settings) -> None:
    dept, policy = await published(api, summary="对吸纳就业的小微企业给予补贴。<script>alert(1)</script>")
    status, headers, raw = await fetch(api, f"/p/{policy['id']}/poster")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    html = raw.decode("utf-8")
    outline = _Outline()
    outline.feed(html)
    outline.close()
    assert outline.lang == "zh-CN" and POLICY["title"] in outline.title and outline.open == []
    for text in (POLICY["title"], POLICY["doc_number"], dept["name"], "对吸纳就业的小微企业给予补贴。", "扫描二维码"):
        assert text in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # department text is data

    # The QR is inline SVG (the page's CSP allows no other origin) and leads to the short link.
    [svg] = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    [(link, level)] = decode(rasterise(svg))
    assert level == "M"
    assert link.startswith(f"{settings.public_url}/s/") and link in html  # also printed, to type in

    [css_href] = outline.stylesheets
    status, headers, css = await fetch(api, css_href)
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert re.search(rb"@page\s*\{[^}]*size:\s*A4", css) and b"@media print" in css


async def test_subscribe_qr(api: Api, settings: Settings) -> None:
    base = f"{settings.public_url}/subscribe"
    cases = {
        "?domain=employment-entrepreneurship&audience=enterprise":
            f"{base}?domain=employment-entrepreneurship&audience=enterprise",
        "?domain=social-insurance&domain=tax-administration&domain=social-insurance":
            f"{base}?domain=social-insurance&domain=tax-administration",
        "?audience=aid_recipient": f"{base}?audience=aid_recipient",
        "": base,
    }
    for query, expected in cases.items():
        status, headers, png = await fetch(api, f"/subscribe/qr.png{query}")
        assert status == 200 and headers["Content-Type"] == "image/png", query
        assert decode(png) == [(expected, "M")]

    for query, field in (("?domain=no-such-domain", "domain"), ("?domain=healthcare&audience=martians", "audience")):
        status, body = await api.call("GET", f"/subscribe/qr.png{query}")
        assert status == 422 and [e["field"] for e in body["errors"]] == [field], body
