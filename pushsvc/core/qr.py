"""QR codes as PNG and SVG bytes: error correction M (survives a smudged or creased poster), the
4-module quiet zone the standard asks for, the smallest version that holds the data."""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.svg import SvgPathFillImage

QUIET_ZONE = 4  # modules of white around the code
PNG_MODULE_PIXELS = 8  # a short link (version 3, 37 modules with the quiet zone) is 296 px square
_SVG_BOX = 10  # the qrcode library's SVG unit: 10 "pixels" a millimetre, so one module a unit


def _code(data: str, box_size: int) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE, box_size=box_size)
    code.add_data(data)
    code.make(fit=True)
    return code


def qr_png(data: str) -> bytes:
    """A black-and-white (1-bit) PNG of `data`."""
    out = io.BytesIO()
    _code(data, PNG_MODULE_PIXELS).make_image().save(out, format="PNG")
    return out.getvalue()


def qr_svg(data: str) -> str:
    """An `<svg>` element of `data` with a white background: a complete SVG document (no XML
    declaration needed for ASCII) that can also be placed inline in an HTML page. One module is
    one unit of its viewBox; size it with CSS or its width/height (1 mm a module by default)."""
    return _code(data, _SVG_BOX).make_image(image_factory=SvgPathFillImage).to_string(encoding="unicode")
