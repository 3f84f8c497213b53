"""Departments' API keys over real HTTP: several named keys, listed without their secrets, revoked
at once on every API process; 401 for a malformed or unknown credential, 403 for a valid one
without the right; only digests in the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from pushsvc.cli import main as cli
from pushsvc.core.clock import now
from pushsvc.settings import Settings, get_settings
from pushsvc.store.db import Database
from pushsvc.store.schema import api_keys, metadata
from tests.conftest import ADMIN, Api, serving
from tests.test_api_foundation import POLICY, enterprise


@pytest.fixture
def command_line(settings: Settings) -> Iterator[Callable[[list[str]], int]]:
    """`pushsvc …` run in this process, reading this test's settings (get_settings is cached)."""
    get_settings.cache_clear()
    yield cli
    get_settings.cache_clear()


@pytest.fixture
async def second_api(settings: Settings) -> AsyncIterator[Api]:
    """Another API process's worth: its own application over the same database and Redis."""
    async with serving(settings) as client:
        yield client


async def test_named_keys_issued_listed_and_revoked_at_once_everywhere(api: Api, second_api: Api,
                                                                      settings: Settings) -> None:
    dept = await api.department()
    first = dept["api_key"]
    path = f"/v1/departments/{dept['id']}/keys"
    status, ci = await api.call("POST", path, ADMIN, json={"name": "case system", "kind": "live"})
    assert status == 201 and ci["api_key"].startswith("psk_") and not ci["api_key"].startswith("psk_test_")
    # A department key may issue its own department's keys (until the console's roles exist).
    status, test = await api.call("POST", path, first, json={"name": "staging", "kind": "test"})
    assert status == 201 and test["api_key"].startswith("psk_test_") and test["kind"] == "test"
    status, body = await api.call("POST", path, first, json={"name": "staging"})
    assert status == 409 and body["errors"][0]["field"] == "name"
    status, body = await api.call("POST", path, first, json={"name": "x", "kind": "prod"})
    assert status == 422 and body["errors"][0]["field"] == "kind"
    status, body = await api.call("POST", path, first, json={"name": "  "})
    assert status == 422 and body["errors"][0]["field"] == "name"

    # Every key works, on both processes.
    for key in (first, ci["api_key"], test["api_key"]):
        for server in (api, second_api):
            assert (await server.call("POST", "/v1/policies/preview", key, json=POLICY))[0] == 200

    status, listed = await api.call("GET", path, first)
    assert status == 200
    assert [(k["name"], k["kind"]) for k in listed["items"]] == [("default", "live"), ("case system", "live"),
                                                                 ("staging", "test")]
    text = str(listed)
    for key in (first, ci["api_key"], test["api_key"]):
        assert key not in text and key[len(key) // 2:] not in text
    assert all(k["last_used_at"] is not None and k["revoked_at"] is None for k in listed["items"])
    assert listed["items"][2]["prefix"] == test["api_key"][:13]

    # Revoked on one process, refused by both at the very next request (no cache to wait out).
    status, _ = await api.call("DELETE", f"{path}/{ci['id']}", first)
    assert status == 204
    for server in (second_api, api):
        status, body = await server.call("POST", "/v1/policies/preview", ci["api_key"], json=POLICY)
        assert status == 401 and body["status"] == 401
    assert (await second_api.call("POST", "/v1/policies/preview", first, json=POLICY))[0] == 200
    status, listed = await second_api.call("GET", path, ADMIN)
    assert [k["revoked_at"] is not None for k in listed["items"]] == [False, True, False]
    assert (await api.call("DELETE", f"{path}/{ci['id']}", first))[0] == 204  # again: stays revoked
    assert (await api.call("DELETE", f"{path}/999999", first))[0] == 404
    assert (await api.call("DELETE", f"{path}/abc", first))[0] == 404

    # Only digests are stored: no table holds any key.
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            for table in metadata.sorted_tables:
                for row in (await conn.execute(sa.select(table))).all():
                    dump = repr(tuple(row))
                    for key in (first, ci["api_key"], test["api_key"]):
                        assert key not in dump, table.name
    finally:
        await db.close()


async def test_another_department_manages_none_of_the_keys(api: Api) -> None:
    dept, other = await api.department(), await api.department("市税务局", ["tax-administration"])
    path = f"/v1/departments/{dept['id']}/keys"
    status, key = await api.call("POST", path, ADMIN, json={"name": "ci"})
    assert status == 201
    status, body = await api.call("POST", path, other["api_key"], json={"name": "mine"})
    assert status == 403 and body["status"] == 403
    assert (await api.call("GET", path, other["api_key"]))[0] == 403
    assert (await api.call("DELETE", f"{path}/{key['id']}", other["api_key"]))[0] == 403
    # The other department's key id under its own department: not theirs to revoke.
    assert (await api.call("DELETE", f"/v1/departments/{other['id']}/keys/{key['id']}", other["api_key"]))[0] == 404
    status, listed = await api.call("GET", path, ADMIN)
    assert [k["revoked_at"] for k in listed["items"]] == [None, None]
    assert (await api.call("POST", "/v1/policies/preview", key["api_key"], json=POLICY))[0] == 200
    assert (await api.call("GET", "/v1/departments/999999/keys", ADMIN))[0] == 404


async def test_401_for_bad_credentials_and_403_for_the_wrong_kind(api: Api) -> None:
    dept = await api.department()
    key = dept["api_key"]
    status, body = await api.call("POST", "/v1/departments", key, json={"name": "x", "domains": ["healthcare"]})
    assert status == 403 and body["status"] == 403
    # The admin token on an endpoint for departments only (publishing needs a department).
    assert (await api.call("POST", "/v1/policies/preview", ADMIN, json=POLICY))[0] == 403
    for bad in ("psk_wrong", "x", ADMIN + "x"):
        status, body = await api.call("POST", "/v1/policies/preview", bad, json=POLICY)
        assert status == 401 and body["status"] == 401
    for header in ("Basic " + key, "Bearer", key, "Bearer   "):
        status, _ = await api.call("GET", f"/v1/departments/{dept['id']}/keys", headers={"Authorization": header})
        assert status == 401
    # Non-ASCII tokens: hmac.compare_digest raised on them (a 500); now a plain 401, on admin and
    # department endpoints alike.
    for token in ("密钥", "psk_é" + key[5:], ADMIN[:-1] + "é"):
        for method, path in (("POST", "/v1/departments"), ("POST", "/v1/policies/preview"),
                             ("GET", f"/v1/subscribers/{1}")):
            status, body = await api.call(method, path, headers={"Authorization": f"Bearer {token}".encode().decode("latin-1")},
                                          json=POLICY)
            assert status == 401, (token, path, body)


async def test_last_used_is_written_at_most_once_a_minute(api: Api, settings: Settings) -> None:
    dept = await api.department()
    path = f"/v1/departments/{dept['id']}/keys"
    await asyncio.gather(*(api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(n)) for n in range(5)))
    status, listed = await api.call("GET", path, ADMIN)
    first_use = listed["items"][0]["last_used_at"]
    assert status == 200 and first_use is not None
    for n in range(5, 10):
        assert (await api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(n)))[0] == 201
    assert (await api.call("GET", path, ADMIN))[1]["items"][0]["last_used_at"] == first_use
    # A minute later (the stored time moved back two), the next use is written again.
    earlier = now() - timedelta(minutes=2)
    db = Database(settings.database_url)
    try:
        async with db.write() as conn:
            await conn.execute(sa.update(api_keys).values(last_used_at=earlier))
    finally:
        await db.close()
    assert (await api.call("POST", "/v1/subscribers", dept["api_key"], json=enterprise(10)))[0] == 201
    later = (await api.call("GET", path, ADMIN))[1]["items"][0]["last_used_at"]
    assert datetime.fromisoformat(later) > earlier + timedelta(minutes=1)


def test_keys_on_the_command_line(command_line: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]) -> None:
    cli = command_line
    assert cli(["departments", "create", "--name", "市民政局", "--domains", "social-assistance"]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli(["departments", "keys", "create", "--department-id", "1", "--name", "batch", "--kind", "test"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("psk_test_") and "shown once" in out[0]
    assert cli(["departments", "keys", "create", "--department-id", "1", "--name", "batch"]) == 1
    capsys.readouterr()
    assert cli(["departments", "keys", "list", "--department-id", "1"]) == 0
    listed = capsys.readouterr().out
    assert "default" in listed and "batch" in listed and first not in listed and out[-1] not in listed
    assert cli(["departments", "keys", "revoke", "--department-id", "1", "2"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli(["departments", "keys", "revoke", "--department-id", "1", "7"]) == 1
    with pytest.raises(SystemExit, match="no department 9"):
        cli(["departments", "keys", "list", "--department-id", "9"])
