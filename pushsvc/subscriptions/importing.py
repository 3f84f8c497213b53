"""CSV import of subscribers, shared by the API and `pushsvc subscribers import`.

Rows are validated one by one (a bad row is reported with its number and field, never written)
and written in chunks, each chunk one transaction, so 100,000 rows cost a few hundred commits.
The import yields to the event loop every YIELD_EVERY rows, good or bad, so the server keeps
answering while a large file is checked, and names at most MAX_REPORTED bad rows (the rest are
counted): a file of bad rows gets a short answer, not megabytes of errors.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pushsvc.core.errors import FieldError
from pushsvc.core.subscribers import ChannelContacts, NewSubscriber, csv_row_to_subscriber, validate_subscriber
from pushsvc.services import Services
from pushsvc.store import audit
from pushsvc.store.subscribers import import_chunk, refresh_statistics

CHUNK = 1000
YIELD_EVERY = 200
MAX_REPORTED = 1000
# After a large import PostgreSQL plans with the tables' old statistics until autovacuum analyses
# them (a minute or more); a policy published meanwhile had its deliver jobs' contact lookup
# planned for a channel that looked rare: seconds per batch instead of milliseconds.
ANALYZE_AFTER = 10_000


@dataclass
class ImportReport:
    imported: int = 0
    merged: int = 0
    rejected: list[tuple[int, list[FieldError]]] = field(default_factory=list)
    rejected_more: int = 0  # bad rows beyond the MAX_REPORTED named in `rejected`

    def reject(self, rows: Iterable[tuple[int, list[FieldError]]]) -> None:
        for row in rows:
            if len(self.rejected) < MAX_REPORTED:
                self.rejected.append(row)
            else:
                self.rejected_more += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "merged": self.merged,
            "rejected": [{"row": row, "errors": [e.as_dict() for e in errs]} for row, errs in self.rejected],
            "rejected_more": self.rejected_more,
        }


async def import_csv(
    svc: Services,
    lines: Iterable[str],
    *,
    source: str,
    actor: str,
    department_id: int | None,
    channel_contacts: ChannelContacts,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Row numbers count the header as row 1, as a spreadsheet shows them. `actor` for the audit log."""
    report = ImportReport()
    reader = csv.DictReader(lines)
    missing = {"domains", "channels"} - set(reader.fieldnames or [])
    if missing:
        report.rejected.append((1, [FieldError(m, "column missing from the header") for m in sorted(missing)]))
        return report
    chunk: list[tuple[int, NewSubscriber]] = []
    origins = svc.settings.webhook_origins
    for index, row in enumerate(reader, start=2):
        sub, errors = validate_subscriber(csv_row_to_subscriber(row), svc.catalogue, channel_contacts, origins)
        if sub is None:
            report.reject([(index, errors)])
        else:
            chunk.append((index, sub))
        if index % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # let the server answer other requests while rows are checked
        if len(chunk) >= CHUNK:
            await _write(svc, chunk, report, source, actor, department_id)
            chunk = []
            if progress:
                progress(index)
    if chunk:
        await _write(svc, chunk, report, source, actor, department_id)
    if report.imported + report.merged >= ANALYZE_AFTER:
        await refresh_statistics(svc.db)
    report.rejected.sort(key=lambda r: r[0])
    return report


async def _write(
    svc: Services, chunk: list[tuple[int, NewSubscriber]], report: ImportReport, source: str, actor: str,
    department_id: int | None,
) -> None:
    async with svc.db.write() as conn:
        outcome = await import_chunk(conn, chunk, source=source, department_id=department_id)
        await audit.record(conn, actor, "subscriber.import", outcome.subscriber_ids)
    report.imported += outcome.imported
    report.merged += outcome.merged
    report.reject(outcome.rejected)
