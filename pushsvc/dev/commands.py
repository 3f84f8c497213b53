"""The `pushsvc demo` and `pushsvc stub ...` commands, plugged into the `pushsvc` command through
the `pushsvc.commands` entry point (pyproject.toml): the service never imports the dev package.
Each command imports what it runs when it runs, so the other commands start without it."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushsvc.settings import get_settings

AddCommand = Callable[..., argparse.ArgumentParser]


def _stub_smtp(args: argparse.Namespace) -> int:
    from pushsvc.dev.stubs.smtp_sink import serve_sink

    maildir = Path(args.maildir) if args.maildir else None
    asyncio.run(serve_sink(args.host, args.port, args.web_port, maildir))
    return 0


def _stub_sms(args: argparse.Namespace) -> int:
    from pushsvc.dev.stubs.sms_gateway import serve_sms_stub

    settings = get_settings()
    receipts_url = args.receipts_url or f"{settings.public_url}/v1/receipts/sms"
    asyncio.run(serve_sms_stub(settings, args.host, args.port, receipts_url, args.receipt_delay))
    return 0


def _stub_wechat(args: argparse.Namespace) -> int:
    from pushsvc.dev.stubs.wechat import serve_wechat_stub

    asyncio.run(serve_wechat_stub(get_settings(), args.host, args.port))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pushsvc.dev.demo import run_demo

    return run_demo(once=args.once)


def add_commands(sub: Any, add: AddCommand) -> None:
    """Register the commands on the `pushsvc` parser's subcommands (`add(name, run, help, parent)`)."""
    p = add("demo", _demo, "Start API, worker, a local SMTP sink and the SMS and WeChat stand-ins; seed sample "
            "subscribers; publish a sample policy and show its delivery live on every channel.")
    p.add_argument("--once", action="store_true", help="exit when the fan-out is done (status 0 only if all sent)")

    stub = sub.add_parser("stub", help="Stand-in servers for providers.", description="Stand-in servers for providers.")
    stub_sub = stub.add_subparsers(dest="stub_command", required=True, metavar="STUB")
    p = add("smtp", _stub_smtp, "A local SMTP sink that keeps what it receives, with a web page to read it.", stub_sub)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525, help="SMTP port (default 2525)")
    p.add_argument("--web-port", type=int, default=8025, help="port of the page listing the mails (default 8025)")
    p.add_argument("--maildir", default="var/mail", help="folder to write each mail to as N.eml")
    p = add("sms", _stub_sms, "A stand-in SMS gateway: records requests, posts signed receipts, injects faults.",
            stub_sub)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091, help="port (default 8091)")
    p.add_argument("--receipts-url", default=None,
                   help="where receipts are posted (default $PUSHSVC_PUBLIC_URL/v1/receipts/sms)")
    p.add_argument("--receipt-delay", type=float, default=1.0, help="seconds before a receipt is posted (default 1)")
    p = add("wechat", _stub_wechat, "A stand-in for WeChat: token endpoint, template messages, robot webhooks.",
            stub_sub)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8092, help="port (default 8092)")
