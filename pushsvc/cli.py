"""The `pushsvc` command: run the service's processes and do an operator's chores."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from pushsvc.core.catalogue import CatalogueError, load_catalogue
from pushsvc.logs import configure_logging
from pushsvc.settings import Settings, get_settings

Command = Callable[[argparse.Namespace], int]


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from pushsvc.app import build_app
    from pushsvc.http.access_log import AccessLogger

    settings = _checked_settings()
    configure_logging(settings.log_format or "json")
    web.run_app(build_app(settings), host=args.host, port=args.port, access_log_class=AccessLogger,
                print=lambda m: print(m, flush=True))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.settings import make_worker

    settings = _checked_settings()
    configure_logging(settings.log_format or "json")
    make_worker(settings, burst=args.burst).run()
    return 0


def _status(args: argparse.Namespace) -> int:
    from pushsvc.status import run_status

    return run_status(get_settings())


def _db_upgrade(args: argparse.Namespace) -> int:
    from pushsvc.store.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    print(f"database is up to date: {_safe_url(settings.database_url)}")
    return 0


def _departments_create(args: argparse.Namespace) -> int:
    from pushsvc.store.db import Database
    from pushsvc.store.departments import DuplicateDepartment, create_department

    settings = _checked_settings()
    catalogue = load_catalogue(settings.audiences_dir)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = [d for d in domains if d not in catalogue.domains]
    if not domains or unknown:
        print(f"--domains: unknown policy domain(s): {', '.join(unknown) or '(none given)'}", file=sys.stderr)
        print(f"known: {', '.join(catalogue.domains)}", file=sys.stderr)
        return 2

    async def run() -> tuple[int, str]:
        db = Database(settings.database_url)
        try:
            async with db.write() as conn:
                return await create_department(conn, args.name, domains, args.contact_email)
        finally:
            await db.close()

    try:
        dept_id, key = asyncio.run(run())
    except DuplicateDepartment:
        print(f"--name: a department named '{args.name}' already exists", file=sys.stderr)
        return 1
    print(f"department {dept_id} '{args.name}' created; domains: {', '.join(domains)}")
    print("API key (shown once, store it now):")
    print(key)
    return 0


def _subscribers_import(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from pushsvc.channels import CHANNEL_CONTACTS
    from pushsvc.services import open_services
    from pushsvc.subscriptions.importing import import_csv

    settings = _checked_settings()
    path = Path(args.file)
    if not path.is_file():
        print(f"FILE: no such file: {path}", file=sys.stderr)
        return 2
    with path.open("rb") as f:
        total_rows = max(0, sum(1 for _ in f) - 1)

    async def run() -> dict[str, object]:
        svc = await open_services(settings)
        try:
            with path.open(encoding="utf-8-sig", newline="") as lines, Progress() as progress:
                task = progress.add_task(f"importing {path.name}", total=total_rows)
                report = await import_csv(
                    svc, lines, source=f"import:{path.name}", department_id=args.department_id,
                    channel_contacts=CHANNEL_CONTACTS, progress=lambda row: progress.update(task, completed=row - 1),
                )
                progress.update(task, completed=total_rows)
            return report.as_dict()
        finally:
            await svc.close()

    report = asyncio.run(run())
    rejected = report["rejected"]
    assert isinstance(rejected, list)
    print(f"imported {report['imported']}, merged {report['merged']}, rejected {len(rejected)}")
    for item in rejected[:50]:
        for err in item["errors"]:
            print(f"  row {item['row']}: {err['field']}: {err['message']}")
    if len(rejected) > 50:
        print(f"  ... and {len(rejected) - 50} more rejected rows")
    return 0 if not rejected else 1


def _safe_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else url


def _checked_settings() -> Settings:
    """Settings and the audience catalogue are checked before anything starts."""
    settings = get_settings()
    try:
        load_catalogue(settings.audiences_dir)
    except CatalogueError as exc:
        raise SystemExit(f"pushsvc cannot start: broken audience catalogue: {exc}") from None
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushsvc",
        description="Targeted push of government policy by e-mail, SMS, WeChat and QR code. "
        "Settings come from PUSHSVC_* environment variables or a .env file (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, help_text: str, parent: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=run)
        return p

    p = add("serve", _serve, "Run the HTTP API and the public pages.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")

    p = add("worker", _worker, "Run an arq worker: fan-out, delivery and the sweeper. Run as many as you like.")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")

    add("status", _status, "Show the job queue and the delivery ledger: waiting, running and scheduled jobs, "
        "deliveries by channel and status, the oldest queued delivery, policies publishing.")

    db = sub.add_parser("db", help="Database chores.", description="Database chores.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    add("upgrade", _db_upgrade, "Create or migrate the database schema to the latest version.", db_sub)

    deps = sub.add_parser("departments", help="Manage departments.", description="Manage departments.")
    deps_sub = deps.add_subparsers(dest="departments_command", required=True, metavar="DEPARTMENTS_COMMAND")
    p = add("create", _departments_create, "Create a department and print its API key (shown once).", deps_sub)
    p.add_argument("--name", required=True, help="the department's name, unique")
    p.add_argument("--domains", required=True, help="comma-separated policy domain slugs it may publish in")
    p.add_argument("--contact-email", default=None, help="where the department is alerted")

    subs = sub.add_parser("subscribers", help="Manage subscribers.", description="Manage subscribers.")
    subs_sub = subs.add_subparsers(dest="subscribers_command", required=True, metavar="SUBSCRIBERS_COMMAND")
    p = add("import", _subscribers_import, "Import subscribers from a CSV file (columns in the README).", subs_sub)
    p.add_argument("file", metavar="FILE", help="UTF-8 CSV file with a header row")
    p.add_argument("--department-id", type=int, default=None, help="record the import as this department's")

    # Commands of installed plug-ins: the demo and the stand-ins (pushsvc.dev) register here, so that
    # the service itself never imports them.
    for plugin in entry_points(group="pushsvc.commands"):
        plugin.load()(sub, add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Text, contacts masked; serve and worker switch to PUSHSVC_LOG_FORMAT (json unless set).
    configure_logging("text")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
