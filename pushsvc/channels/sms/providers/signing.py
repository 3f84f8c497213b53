"""The request signatures of the two clouds, as their official SDKs compute them (read from
alibabacloud_tea_openapi 0.4 `Utils.get_authorization` and tencentcloud-sdk-python-common 3.1
`AbstractClient._get_tc3_signature`); our clients sign with these and the stand-ins check with
them. Pure functions over a request's parts."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

ACS3 = "ACS3-HMAC-SHA256"
TC3 = "TC3-HMAC-SHA256"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Aliyun: ACS3-HMAC-SHA256 (the V3 signature) -----------------------------------------------------


def acs3_signature(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                   payload_hash: str, secret: str) -> tuple[str, str]:
    """(signature, signed header names) over the canonical request. `headers`: the signed headers,
    names in any case (they are lower-cased and sorted, values trimmed, as the SDK does)."""
    canonical_query = "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    names = sorted(lowered)
    canonical_headers = "".join(f"{k}:{lowered[k]}\n" for k in names)
    signed = ";".join(names)
    canonical = f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_hash}"
    to_sign = f"{ACS3}\n{sha256_hex(canonical.encode())}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest(), signed


def acs3_authorization(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                       payload_hash: str, key_id: str, secret: str) -> str:
    signature, signed = acs3_signature(method, path, query, headers, payload_hash, secret)
    return f"{ACS3} Credential={key_id},SignedHeaders={signed},Signature={signature}"


_ACS3_AUTH = re.compile(rf"^{ACS3} Credential=([^,]+),SignedHeaders=([^,]*),Signature=([0-9a-f]+)$")


def parse_acs3(authorization: str) -> tuple[str, list[str], str] | None:
    """(key id, signed header names, signature) of an ACS3 Authorization header, or None."""
    m = _ACS3_AUTH.match(authorization)
    return None if m is None else (m.group(1), m.group(2).split(";"), m.group(3))


# -- Tencent Cloud: TC3-HMAC-SHA256 ----------------------------------------------------------------------


def tc3_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def tc3_signature(method: str, path: str, query_string: str, content_type: str, host: str, payload: bytes,
                  timestamp: int, service: str, secret: str) -> str:
    """The signature over content-type and host (the headers the SDK signs) and the payload."""
    canonical = (f"{method}\n{path}\n{query_string}\ncontent-type:{content_type}\nhost:{host}\n\n"
                 f"content-type;host\n{sha256_hex(payload)}")
    date = tc3_date(timestamp)
    to_sign = f"{TC3}\n{timestamp}\n{date}/{service}/tc3_request\n{sha256_hex(canonical.encode())}"
    key = hmac.new(("TC3" + secret).encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_authorization(key_id: str, timestamp: int, service: str, signature: str) -> str:
    return (f"{TC3} Credential={key_id}/{tc3_date(timestamp)}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}")


_TC3_AUTH = re.compile(rf"^{TC3} Credential=([^/]+)/(\d{{4}}-\d\d-\d\d)/([a-z]+)/tc3_request, "
                       r"SignedHeaders=([a-z;-]+), Signature=([0-9a-f]+)$")


def parse_tc3(authorization: str) -> tuple[str, str, str, str, str] | None:
    """(key id, date, service, signed headers, signature) of a TC3 Authorization header, or None."""
    m = _TC3_AUTH.match(authorization)
    return None if m is None else (m.group(1), m.group(2), m.group(3), m.group(4), m.group(5))
