"""The public addresses a policy's messages carry: its page and its short link."""

from __future__ import annotations


def policy_path(policy_id: int) -> str:
    return f"/p/{policy_id}"


def page_url(public_url: str, policy_id: int) -> str:
    return public_url + policy_path(policy_id)


def short_url(public_url: str, code: str) -> str:
    """/s/{code}: what SMS, WeChat and QR codes carry."""
    return f"{public_url}/s/{code}"
