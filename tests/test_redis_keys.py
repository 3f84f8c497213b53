"""Every Redis key pushsvc writes is named in pushsvc.redis_keys and lies under `pushsvc:`."""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from pushsvc import redis_keys
from pushsvc.cases.dispatcher import push_due
from pushsvc.channels.wechat.token import AccessTokens
from pushsvc.core.verification import ContactKeys
from pushsvc.metrics import observe_fanout
from pushsvc.ratelimit import ProviderPace
from pushsvc.settings import REPO_ROOT
from pushsvc.subscriptions.codes import Codes

# What a key spelled outside redis_keys would look like: ours, or one of the prefixes used before.
_KEY_LIKE = re.compile(r"^(pushsvc|ratelimit|selfservice|wechat):[\w-]")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_every_key_and_namespace_is_under_the_prefix() -> None:
    constants = [v for k, v in vars(redis_keys).items() if k.isupper() and k != "PREFIX" and isinstance(v, str)]
    made = [redis_keys.rate_limits("x"), redis_keys.sms_code("d"), redis_keys.wechat_token("a"),
            redis_keys.wechat_token_lock("a")]
    assert len(constants) >= 8
    assert all(key.startswith("pushsvc:") for key in constants + made)
    assert len(set(constants + made)) == len(constants + made)


def test_no_other_module_spells_a_key() -> None:
    spelled = []
    for path in sorted((REPO_ROOT / "pushsvc").rglob("*.py")) + sorted((REPO_ROOT / "workers").rglob("*.py")):
        if path == Path(redis_keys.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _KEY_LIKE.match(node.value):
                spelled.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.value!r}")
    assert spelled == []


async def test_what_the_service_writes_lies_under_the_prefix(redis: Redis, redis_url: str) -> None:
    codes = Codes(redis, ContactKeys("s" * 40))
    assert await codes.may_send("+8613800138000", "203.0.113.9") is None
    assert await codes.may_check("203.0.113.9") is None
    await codes.issue("+8613800138000", 7)
    pace = ProviderPace(redis_url, "sms", 10)
    await pace.start()
    try:
        assert await pace.turn(max_wait=1) is None
    finally:
        await pace.close()

    async def fetch() -> tuple[str, int]:
        return "token-1", 7200

    assert await AccessTokens(redis, "wx-app", fetch, fetch_timeout=1).get() == "token-1"
    await observe_fanout(redis, 0.3)
    await push_due(redis, [1, 2])

    keys = sorted([key.decode() async for key in redis.scan_iter()])
    assert len(keys) >= 8, keys
    assert [k for k in keys if not k.startswith("pushsvc:")] == []
    assert redis_keys.wechat_token("wx-app") in keys and redis_keys.CASES_DUE in keys and redis_keys.METRICS in keys
