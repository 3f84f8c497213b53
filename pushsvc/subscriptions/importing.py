"""CSV import of subscribers, shared by the API and `pushsvc subscribers import`.

Rows are validated one by one (a bad row is reported with its number and field, never written)
and written in chunks, each chunk one transaction, so 100,000 rows cost a few hundred commits.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pushsvc.core.errors import FieldError
from pushsvc.core.subscribers import ChannelContacts, NewSubscriber, csv_row_to_subscriber, validate_subscriber
from pushsvc.services import Services
from pushsvc.store.subscribers import import_chunk, refresh_statistics

CHUNK = 1000
# After a large import PostgreSQL plans with the tables' old statistics until autovacuum analyses
# them (a minute or more); a policy published meanwhile had its deliver jobs' contact lookup
# planned for a channel that looked rare: seconds per batch instead of milliseconds.
ANALYZE_AFTER = 10_000


@dataclass
class ImportReport:
    imported: int = 0
    merged: int = 0
    rejected: list[tuple[int, list[FieldError]]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "merged": self.merged,
            "rejected": [{"row": row, "errors": [e.as_dict() for e in errs]} for row, errs in self.rejected],
        }


async def import_csv(
    svc: Services,
    lines: Iterable[str],
    *,
    source: str,
    department_id: int | None,
    channel_contacts: ChannelContacts,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Row numbers count the header as row 1, as a spreadsheet shows them."""
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
            report.rejected.append((index, errors))
        else:
            chunk.append((index, sub))
        if len(chunk) >= CHUNK:
            await _write(svc, chunk, report, source, department_id)
            chunk = []
            if progress:
                progress(index)
            await asyncio.sleep(0)  # let the server answer other requests between chunks
    if chunk:
        await _write(svc, chunk, report, source, department_id)
    if report.imported + report.merged >= ANALYZE_AFTER:
        await refresh_statistics(svc.db)
    report.rejected.sort(key=lambda r: r[0])
    return report


async def _write(
    svc: Services, chunk: list[tuple[int, NewSubscriber]], report: ImportReport, source: str, department_id: int | None
) -> None:
    async with svc.db.write() as conn:
        outcome = await import_chunk(conn, chunk, source=source, department_id=department_id)
    report.imported += outcome.imported
    report.merged += outcome.merged
    report.rejected.extend(outcome.rejected)
