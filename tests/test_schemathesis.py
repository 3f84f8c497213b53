"""Hardening: schemathesis generates requests from /openapi.json (valid and invalid ones) against
the API on loopback, with the test fixtures' databases, and checks every answer: no 5xx, status
codes, media types, headers and bodies as documented, and every 4xx under /v1/ problem+json.
Request and field limits must be in the document for it to respect them.

The numbers (cases, failures) are printed and kept in test-artifacts/schemathesis-<backend>.json."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ADMIN, ARTIFACTS, Api
from tests.test_api_foundation import POLICY, enterprise
from tests.test_cases import case_body

ST = Path(sys.executable).with_name("st")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,allow_header_conformance,unsupported_method,missing_required_header,ignored_auth")
EXAMPLES = 3  # per operation and phase: about 1,500 cases in all, 10 to 20 s
BUDGET_SECONDS = 150  # a hard stop; a run takes 15 to 30 s on 2 cores


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # The request limits are tested in test_rate_limits.py; here they would only answer 429s.
    return {**settings_env, "PUSHSVC_API_REQUESTS_PER_MINUTE": "0", "PUSHSVC_PAGE_REQUESTS_PER_MINUTE": "0"}


async def schemathesis(api: Api, token: str, report: Path, *options: str) -> dict[str, Any]:
    """Runs `st run` against the API; returns its JSON report and the exchanges (HAR) it made."""
    proc = await asyncio.create_subprocess_exec(
        str(ST), "run", f"{api.base}/openapi.json", "--header", f"Authorization: Bearer {token}",
        # One worker thread: with two, hypothesis describes its filter lambdas in both threads at once,
        # and CPython 3.11's ast.parse then fails now and then with "AST constructor recursion depth
        # mismatch" (a SystemError in schemathesis' coverage phase, not a finding about our API).
        "--checks", CHECKS, "--max-examples", str(EXAMPLES), "--workers", "1", "--seed", "20261128",
        "--report", "json,har", "--report-json-path", str(report.with_suffix(".json")),
        "--report-har-path", str(report.with_suffix(".har")), "--no-color", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=report.parent,  # its caches (.schemathesis/, .hypothesis/) stay out of the checkout
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=BUDGET_SECONDS)
    result = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    result["output"] = output.decode(errors="replace")
    result["har"] = json.loads(report.with_suffix(".har").read_text(encoding="utf-8"))["log"]["entries"]
    return result


def summary(name: str, result: dict[str, Any]) -> dict[str, Any]:
    cases = result["test_cases"]
    return {"run": name, "operations": result["operations"]["tested"], "cases": cases["generated"],
            "with_failures": cases["with_failures"], "unique_failures": cases["unique_failures"],
            "errors": len(result["errors"]), "seconds": round(result["running_time"], 1)}


def not_problem_json(entries: list[dict[str, Any]]) -> list[str]:
    """API answers (under /v1/) that are 4xx but not problem+json, or any 5xx at all."""
    bad = []
    for entry in entries:
        status, path = entry["response"]["status"], urlsplit(entry["request"]["url"]).path
        media = entry["response"]["content"].get("mimeType", "")
        if status >= 500 or (400 <= status < 500 and path.startswith("/v1/") and
                             not media.startswith("application/problem+json")):
            bad.append(f"{entry['request']['method']} {path} -> {status} {media}")
    return bad


async def test_schemathesis_finds_nothing(api: Api, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Something to find: ids 1 exist, so generated requests reach past the 404s.
    key = (await api.department())["api_key"]
    for body, path in ((enterprise(1), "/v1/subscribers"), (POLICY, "/v1/policies"), (case_body("C-1"), "/v1/cases")):
        status, created = await api.call("POST", path, key, json=body)
        assert status in (201, 202), created

    department = await schemathesis(api, key, tmp_path / "department")
    # The admin-only operations, with the admin token.
    admin = await schemathesis(api, ADMIN, tmp_path / "admin", "--include-path-regex", "^/v1/departments")

    backend = request.node.callspec.params["database_url"]
    numbers = [summary("department key", department), summary("admin token", admin)]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"schemathesis-{backend}.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    print(f"\nschemathesis ({backend}): " + "; ".join(
        f"{n['run']}: {n['cases']} cases over {n['operations']} operations, {n['unique_failures']} failures, "
        f"{n['errors']} errors, {n['seconds']} s" for n in numbers))
    for result in (department, admin):
        assert result["test_cases"]["generated"] > 0 and not result["errors"], result["output"][-3000:]
        assert result["test_cases"]["with_failures"] == 0, result["output"][-6000:]
        assert not_problem_json(result["har"]) == []
    assert department["test_cases"]["generated"] >= 500


def test_request_bodies_document_their_limits() -> None:
    """Every string of a JSON request body has a maxLength (or is an enum or a date), every array a
    maxItems, every free-form object a maxProperties; the body limit is in the description."""
    from pushsvc.api.openapi import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    unbounded: list[str] = []

    def walk(schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(schemas[name], name)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for i, option in enumerate(schema.get(key, [])):
                walk(option, f"{where}|{i}")
        kind = schema.get("type")
        if kind == "string" and not ({"maxLength", "enum", "const", "format"} & schema.keys()):
            unbounded.append(f"{where}: string without maxLength")
        if kind == "array":
            if "maxItems" not in schema:
                unbounded.append(f"{where}: array without maxItems")
            walk(schema.get("items", {}), f"{where}[]")
        if kind == "object":
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                if "maxProperties" not in schema:
                    unbounded.append(f"{where}: object without maxProperties")
                walk(extra, f"{where}{{}}")
            elif extra is not False and "properties" not in schema and "maxProperties" not in schema:
                unbounded.append(f"{where}: free-form object without maxProperties")
            for name, prop in schema.get("properties", {}).items():
                walk(prop, f"{where}.{name}")

    seen: set[str] = set()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                walk(body["schema"], f"{method.upper()} {path}")
    assert unbounded == [], "\n".join(unbounded)
    assert "at most 1048576 bytes" in doc["info"]["description"]
