"""The `pushsvc demo` and `pushsvc stub ...` commands, plugged into the `pushsvc` command through
the `pushsvc.commands` entry point (pyproject.toml): the service never imports the dev package.
Each command imports what it runs when it runs, so the other commands start without it."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushsvc.settings import get_settings

AddCommand = Callable[..., argparse.ArgumentParser]
DEMO_SMS = ("generic", "aliyun", "tencent", "both")  # pushsvc.dev.demo.SMS_SETUPS


def _stub_smtp(args: argparse.Namespace) -> int:
    from pushsvc.dev.stubs.smtp_sink import serve_sink

    maildir = Path(args.maildir) if args.maildir else None
    asyncio.run(serve_sink(args.host, args.port, args.web_port, maildir))
    return 0


def _stub_sms(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.provider == "generic":
        from pushsvc.dev.stubs.sms_gateway import serve_sms_stub

        if args.secret:
            settings = settings.model_copy(update={"sms_secret": args.secret})
        receipts_url = args.receipts_url or f"{settings.public_url}/v1/receipts/sms"
        asyncio.run(serve_sms_stub(settings, args.host, args.port, receipts_url, args.receipt_delay))
        return 0
    from pushsvc.channels.sms.providers.base import callback_path
    from pushsvc.dev.stubs.sms import serve_cloud_stub

    token = settings.sms_callback_token
    if not (args.key_id and args.secret and token):
        raise SystemExit("pushsvc stub sms: --key-id, --secret and PUSHSVC_SMS_CALLBACK_TOKEN are needed for "
                         f"--provider {args.provider}")
    template = (settings.sms_aliyun_template_code if args.provider == "aliyun"
                else settings.sms_tencent_template_id) or settings.sms_template_code
    asyncio.run(serve_cloud_stub(
        args.provider, args.key_id, args.secret, args.host, args.port,
        args.receipts_url or settings.public_url + callback_path(args.provider, token, "report"),
        settings.public_url + callback_path(args.provider, token, "reply"), args.receipt_delay, template))
    return 0


def _stub_wechat(args: argparse.Namespace) -> int:
    from pushsvc.dev.stubs.wechat import serve_wechat_stub

    asyncio.run(serve_wechat_stub(get_settings(), args.host, args.port))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pushsvc.dev.demo import run_demo

    if args.sms not in DEMO_SMS:  # argparse checks what is typed, not a default from the environment
        raise SystemExit(f"pushsvc demo: PUSHSVC_DEMO_SMS must be one of {', '.join(DEMO_SMS)}, not {args.sms!r}")
    return run_demo(once=args.once, sms=args.sms)


def add_commands(sub: Any, add: AddCommand) -> None:
    """Register the commands on the `pushsvc` parser's subcommands (`add(name, run, help, parent)`)."""
    p = add("demo", _demo, "Start API, worker, a local SMTP sink and the SMS and WeChat stand-ins; seed sample "
            "subscribers; publish a sample policy and show its delivery live on every channel.")
    p.add_argument("--once", action="store_true", help="exit when the fan-out is done (status 0 only if all sent)")
    p.add_argument("--sms", choices=DEMO_SMS, default=os.environ.get("PUSHSVC_DEMO_SMS") or "generic",
                   help="SMS through the generic gateway's stand-in, the Aliyun or Tencent Cloud one, or both with "
                   "failover (one told to fail midway); default $PUSHSVC_DEMO_SMS, else generic")

    stub = sub.add_parser("stub", help="Stand-in servers for providers.", description="Stand-in servers for providers.")
    stub_sub = stub.add_subparsers(dest="stub_command", required=True, metavar="STUB")
    p = add("smtp", _stub_smtp, "A local SMTP sink that keeps what it receives, with a web page to read it.", stub_sub)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525, help="SMTP port (default 2525)")
    p.add_argument("--web-port", type=int, default=8025, help="port of the page listing the mails (default 8025)")
    p.add_argument("--maildir", default="var/mail", help="folder to write each mail to as N.eml")
    p = add("sms", _stub_sms, "A stand-in SMS provider (the generic gateway, Aliyun or Tencent Cloud): checks "
            "signatures, records requests, pushes receipts and replies, injects faults.", stub_sub)
    p.add_argument("--provider", choices=("generic", "aliyun", "tencent"), default="generic",
                   help="the protocol to speak (default generic)")
    p.add_argument("--key-id", default="", help="the AccessKey ID / SecretId signatures must name (aliyun, tencent)")
    p.add_argument("--secret", default="", help="the key to check signatures with (generic: default "
                   "$PUSHSVC_SMS_SECRET)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091, help="port (default 8091)")
    p.add_argument("--receipts-url", default=None,
                   help="where receipts are posted (default $PUSHSVC_PUBLIC_URL/v1/receipts/sms, or the "
                   "provider's /v1/callbacks/sms/... report URL)")
    p.add_argument("--receipt-delay", type=float, default=1.0, help="seconds before a receipt is posted (default 1)")
    p = add("wechat", _stub_wechat, "A stand-in for WeChat: token endpoint, template messages, robot webhooks.",
            stub_sub)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8092, help="port (default 8092)")
