"""The `pushsvc` command: run the service's processes and do an operator's chores."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pushsvc.core.catalogue import CatalogueError, load_catalogue
from pushsvc.logs import configure_logging
from pushsvc.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

Command = Callable[[argparse.Namespace], int]
T = TypeVar("T")
# Who, in the audit log, for what an operator does on the command line.
CLI_ACTOR = "cli"


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


def _bounces(args: argparse.Namespace) -> int:
    from pushsvc.delivery.bounce_server import serve_bounces

    settings = _checked_settings()
    configure_logging(settings.log_format or "json")
    try:
        asyncio.run(serve_bounces(settings, args.host, args.port))
    except KeyboardInterrupt:
        pass
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


def _keys_create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pushsvc.core.models import KeyIn
    from pushsvc.store import audit
    from pushsvc.store.keys import active_key_named, issue_key

    try:
        args.name = KeyIn(name=args.name, kind=args.kind).name.strip()
    except ValidationError:
        print("--name: give 1 to 100 characters, not blank, no control characters", file=sys.stderr)
        return 2

    async def run(conn: AsyncConnection) -> str | None:
        if await active_key_named(conn, args.department_id, args.name):
            return None
        row, key = await issue_key(conn, args.department_id, args.name, args.kind)
        await audit.record(conn, CLI_ACTOR, "key.issue", None, key_id=row["id"], name=args.name, kind=args.kind,
                           department=args.department_id)
        print(f"key {row['id']} '{args.name}' ({args.kind}) issued; API key (shown once, store it now):")
        return key

    key = _with_department(args.department_id, run)
    if key is None:
        print(f"--name: department {args.department_id} has a key named '{args.name}' in use", file=sys.stderr)
        return 1
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from pushsvc.core.quiet_hours import local_time
    from pushsvc.store.keys import list_keys

    async def run(conn: AsyncConnection) -> bool:
        for k in await list_keys(conn, args.department_id):
            used = local_time(k["last_used_at"]) if k["last_used_at"] else "never used"
            state = f"revoked {local_time(k['revoked_at'])}" if k["revoked_at"] else "active"
            print(f"{k['id']}\t{k['name']}\t{k['kind']}\t{k['prefix']}…\tcreated {local_time(k['created_at'])}"
                  f"\t{used}\t{state}")
        return True

    return 0 if _with_department(args.department_id, run) else 1


def _keys_revoke(args: argparse.Namespace) -> int:
    from pushsvc.store import audit
    from pushsvc.store.keys import revoke_key

    async def run(conn: AsyncConnection) -> bool:
        row = await revoke_key(conn, args.department_id, args.key_id)
        if row is not None:
            await audit.record(conn, CLI_ACTOR, "key.revoke", None, key_id=args.key_id, department=args.department_id)
        return row is not None

    if not _with_department(args.department_id, run):
        print(f"KEY_ID: department {args.department_id} has no key {args.key_id}", file=sys.stderr)
        return 1
    print(f"key {args.key_id} revoked: refused from the next request on")
    return 0


def _with_department(department_id: int, run: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`run` in one write transaction, once the department is known to exist."""
    from pushsvc.store.db import Database
    from pushsvc.store.departments import department_by_id

    settings = _checked_settings()

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            async with db.write() as conn:
                if await department_by_id(conn, department_id) is None:
                    raise SystemExit(f"--department-id: no department {department_id}")
                return await run(conn)
        finally:
            await db.close()

    return asyncio.run(main())


def _audit_purge(args: argparse.Namespace) -> int:
    from pushsvc.core.clock import now
    from pushsvc.store.audit import RETENTION_YEARS, purge_before
    from pushsvc.store.db import Database

    settings = _checked_settings()
    at = now()
    cutoff = at.replace(year=at.year - RETENTION_YEARS, day=28 if (at.month, at.day) == (2, 29) else at.day)

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            async with db.write() as conn:
                return await purge_before(conn, cutoff)
        finally:
            await db.close()

    print(f"{asyncio.run(run())} audit entries older than {RETENTION_YEARS} years deleted")
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
                    svc, lines, source=f"import:{path.name}", actor=CLI_ACTOR, department_id=args.department_id,
                    channel_contacts=CHANNEL_CONTACTS, progress=lambda row: progress.update(task, completed=row - 1),
                )
                progress.update(task, completed=total_rows)
            return report.as_dict()
        finally:
            await svc.close()

    report = asyncio.run(run())
    rejected = report["rejected"]
    more = report["rejected_more"]
    assert isinstance(rejected, list) and isinstance(more, int)
    print(f"imported {report['imported']}, merged {report['merged']}, rejected {len(rejected) + more}")
    for item in rejected[:50]:
        for err in item["errors"]:
            print(f"  row {item['row']}: {err['field']}: {err['message']}")
    if len(rejected) > 50:
        print(f"  ... and {len(rejected) + more - 50} more rejected rows")
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

    p = add("bounces", _bounces, "Receive bounces and auto-replies by SMTP for the return paths' domain "
            "(PUSHSVC_BOUNCE_DOMAIN): failed e-mails are marked, bounced addresses suppressed.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2526, help="port to listen on (default 2526; MX traffic arrives on 25)")

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
    keys = deps_sub.add_parser("keys", help="Manage a department's API keys.", description="Manage a department's API keys.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    p = add("create", _keys_create, "Issue a named API key and print it (shown once).", keys_sub)
    p.add_argument("--department-id", type=int, required=True, help="the department the key acts for")
    p.add_argument("--name", required=True, help="what the key is for, e.g. 'case system'")
    p.add_argument("--kind", choices=("live", "test"), default="live", help="test keys reach only simulated contacts")
    p = add("list", _keys_list, "List the department's keys: id, name, kind, prefix, created, last used, revoked.", keys_sub)
    p.add_argument("--department-id", type=int, required=True, help="the department")
    p = add("revoke", _keys_revoke, "Revoke a key: every API process refuses it from the next request on.", keys_sub)
    p.add_argument("--department-id", type=int, required=True, help="the department")
    p.add_argument("key_id", metavar="KEY_ID", type=int, help="the key's id (from `list`)")

    aud = sub.add_parser("audit", help="The audit log.", description="The audit log.")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True, metavar="AUDIT_COMMAND")
    add("purge", _audit_purge, "Delete audit entries older than the retention period (3 years); run daily from cron.",
        aud_sub)

    subs = sub.add_parser("subscribers", help="Manage subscribers.", description="Manage subscribers.")
    subs_sub = subs.add_subparsers(dest="subscribers_command", required=True, metavar="SUBSCRIBERS_COMMAND")
    p = add("import", _subscribers_import, "Import subscribers from a CSV file (columns in the README).", subs_sub)
    p.add_argument("file", metavar="FILE", help="UTF-8 CSV file with a header row")
    p.add_argument("--department-id", type=int, default=None, help="record the import as this department's")

    staff = sub.add_parser("staff", help="Console accounts.", description="Console accounts.")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True, metavar="STAFF_COMMAND")
    p = add("create", _staff_create, "Create a console account. Asks for its password twice on a terminal; "
            "otherwise (or with --generate-password) prints a generated one, shown once.", staff_sub)
    p.add_argument("--department", type=int, default=None, help="the department's id (not for an overseer)")
    p.add_argument("--role", required=True, choices=("drafter", "approver", "department_admin", "overseer"))
    p.add_argument("--username", required=True, help="3 to 64 lower-case letters, digits, . _ -")
    p.add_argument("--display-name", default=None, help="the person's name as colleagues read it (default: username)")
    p.add_argument("--email", default=None, help="where the person's test sends go")
    p.add_argument("--phone", default=None, help="the person's mobile, for test sends")
    p.add_argument("--generate-password", action="store_true", help="print a generated password instead of asking")

    # Commands of installed plug-ins: the demo and the stand-ins (pushsvc.dev) register here, so that
    # the service itself never imports them.
    for plugin in entry_points(group="pushsvc.commands"):
        plugin.load()(sub, add)
    return parser


_STAFF_OPTIONS = {"username": "--username", "display_name": "--display-name", "role": "--role", "email": "--email",
                  "phone": "--phone", "password": "password"}


def _staff_create(args: argparse.Namespace) -> int:
    import getpass

    from pydantic import ValidationError

    from pushsvc.core.errors import NotFound, ValidationFailed
    from pushsvc.core.models import pydantic_errors
    from pushsvc.staff.accounts import StaffIn, create_staff
    from pushsvc.store.db import Database

    settings = _checked_settings()
    if (args.role == "overseer") != (args.department is None):
        print("--department: an overseer takes none; every other role needs one", file=sys.stderr)
        return 2
    try:
        person = StaffIn(username=args.username, display_name=args.display_name or args.username, role=args.role,
                         email=args.email, phone=args.phone)
    except ValidationError as exc:
        for err in pydantic_errors(exc):
            print(f"{_STAFF_OPTIONS.get(err.field, err.field)}: {err.message}", file=sys.stderr)
        return 2
    password: str | None = None
    if not args.generate_password and sys.stdin.isatty():
        password = getpass.getpass("Password (12 characters or more): ")
        if getpass.getpass("Password again: ") != password:
            print("password: the two passwords differ", file=sys.stderr)
            return 2

    async def run() -> tuple[int, str]:
        db = Database(settings.database_url)
        try:
            return await create_staff(db, CLI_ACTOR, args.department, person, password)
        finally:
            await db.close()

    try:
        staff_id, given = asyncio.run(run())
    except ValidationFailed as exc:
        for err in exc.errors:
            print(f"{_STAFF_OPTIONS.get(err.field, err.field)}: {err.message}", file=sys.stderr)
        return 1
    except NotFound:
        print(f"--department: no department {args.department}", file=sys.stderr)
        return 1
    where = f"department {args.department}" if args.department is not None else "the city (overseer)"
    print(f"staff {staff_id} '{person.username}' ({args.role}) created in {where}; sign in at "
          f"{settings.public_url}/console")
    if password is None:
        print("password (shown once; the person changes it in /console/account):")
        print(given)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Text, contacts masked; serve and worker switch to PUSHSVC_LOG_FORMAT (json unless set).
    configure_logging("text")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
