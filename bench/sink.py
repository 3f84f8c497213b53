"""The benches' SMTP sink, in a process of its own: pushsvc's SmtpSink plus a tiny stats endpoint.

    python -m bench.sink [--cpu N]

Prints `READY <smtp port> <stats port>` once listening. `GET /stats` gives how many messages it
has accepted, their total size and when the last one arrived (epoch seconds); `GET /recipients`
how many messages each address received (the fault bench counts losses and duplicates by it);
`POST /clear` forgets them. (`pushsvc stub smtp` would do, but its pages parse every message: too slow to poll
at 100,000 messages.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter

from aiohttp import web

from pushsvc.dev.stubs.smtp_sink import SmtpSink


def stats_app(sink: SmtpSink) -> web.Application:
    async def stats(request: web.Request) -> web.Response:
        messages = sink.messages()
        return web.json_response({
            "messages": len(messages),
            "bytes": sum(len(m.data) for m in messages),
            "last_at": messages[-1].received_at.timestamp() if messages else None,
        })  # fmt: skip

    async def recipients(request: web.Request) -> web.Response:
        return web.json_response(Counter(to for m in sink.messages() for to in m.rcpt_tos))

    async def clear(request: web.Request) -> web.Response:
        sink.clear()
        return web.json_response({"messages": 0})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/recipients", recipients)
    app.router.add_post("/clear", clear)
    return app


async def serve(host: str) -> None:
    sink = SmtpSink(host, 0, maildir=None)
    await asyncio.to_thread(sink.start)
    runner = web.AppRunner(stats_app(sink), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    stats_port = runner.addresses[0][1]
    print(f"READY {sink.port} {stats_port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(sink.stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cpu", type=int, default=None, help="pin the sink to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        asyncio.run(serve(args.host))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
