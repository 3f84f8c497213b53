"""A CSV import the console runs as a job, so that the clerk's page shows its progress instead of
waiting on one long request.

The upload is kept in a Redis hash (`redis_keys.roster_import`) with who asked, and the
`roster_import` job imports it a slice of SLICE rows at a time through the one import
(`pushsvc.subscriptions.importing`: every row checked, nothing of a bad row written), writing
the progress after each slice. A run stops after half a job timeout and enqueues its continuation,
as the fan-out does; a run repeated after a crash repeats at most its slice, whose rows then merge
into the records the first try wrote. When it ends the file is dropped and only the rejected rows
are kept (with their row numbers, fields and messages) for the clerk to download; the hash
expires a day after the upload. Losing Redis loses the progress page, never a written row.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pushsvc import redis_keys
from pushsvc.channels import CHANNEL_CONTACTS
from pushsvc.jobs import ROSTER_IMPORT, enqueue
from pushsvc.services import Services
from pushsvc.subscriptions.importing import import_csv

SLICE = 500
KEEP_SECONDS = 24 * 3600
# Rejected rows kept for the download; beyond them only counted (a file of bad rows must not fill Redis).
MAX_REJECTED = 10_000


@dataclass(frozen=True)
class ImportState:
    id: str
    department_id: int | None
    status: str  # queued | running | done
    total: int
    done: int
    imported: int
    merged: int
    rejected: int  # bad rows, those kept for the download and those beyond them

    @property
    def percent(self) -> int:
        return 100 if self.status == "done" else (100 * self.done // self.total if self.total else 0)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "total": self.total, "done": self.done,
                "percent": self.percent, "imported": self.imported, "merged": self.merged, "rejected": self.rejected}


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


async def start(svc: Services, text: str, *, department_id: int | None, actor: str, source: str) -> str:
    """Keep the upload (UTF-8 text, already decoded) and enqueue its import; its id."""
    import_id = secrets.token_urlsafe(16)
    key = redis_keys.roster_import(import_id)
    await svc.redis.hset(key, mapping={
        "department_id": "" if department_id is None else str(department_id), "actor": actor, "source": source,
        "csv": text, "status": "queued", "total": max(len(_rows(text)) - 1, 0), "done": 0,
        "imported": 0, "merged": 0, "rejected": "[]", "rejected_more": 0,
    })
    await svc.redis.expire(key, KEEP_SECONDS)
    await enqueue(svc.redis, ROSTER_IMPORT, import_id, 0, _job_id=f"import:{import_id}:0")
    return import_id


async def _fields(svc: Services, import_id: str) -> dict[str, str]:
    raw = await svc.redis.hgetall(redis_keys.roster_import(import_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def state(svc: Services, import_id: str, department_id: int | None) -> ImportState | None:
    """The import's progress, or None when unknown, expired, or another department's."""
    f = await _fields(svc, import_id)
    if not f or f["department_id"] != ("" if department_id is None else str(department_id)):
        return None
    return ImportState(
        id=import_id, department_id=department_id, status=f["status"], total=int(f["total"]), done=int(f["done"]),
        imported=int(f["imported"]), merged=int(f["merged"]),
        rejected=len(json.loads(f["rejected"])) + int(f["rejected_more"]),
    )


async def rejected_csv(svc: Services, import_id: str, department_id: int | None) -> str | None:
    """The rejected rows as CSV: row number, field, message, then the row as uploaded (one line per
    error). None until the import is done, or when `state` would be None."""
    found = await state(svc, import_id, department_id)
    if found is None or found.status != "done":
        return None
    f = await _fields(svc, import_id)
    header = json.loads(f.get("header", "[]"))
    lines: list[list[str]] = [["row", "field", "message", *header]]
    for rowno, errors, original in json.loads(f["rejected"]):
        lines.extend([str(rowno), field, message, *original] for field, message in errors)
    return _csv_text(lines)


async def run_import(svc: Services, import_id: str, start_at: int) -> None:
    """Import data rows from `start_at` (0-based) on, a slice at a time, until the job's budget is spent."""
    key = redis_keys.roster_import(import_id)
    f = await _fields(svc, import_id)
    if not f or f["status"] == "done" or int(f["done"]) != start_at:  # expired, finished, or a repeat of a past run
        return
    rows = _rows(f["csv"])
    header, data = (rows[0], rows[1:]) if rows else ([], [])
    department_id = int(f["department_id"]) if f["department_id"] else None
    rejected: list[Any] = json.loads(f["rejected"])
    rejected_more, imported, merged = int(f["rejected_more"]), int(f["imported"]), int(f["merged"])
    await svc.redis.hset(key, "status", "running")
    deadline = time.monotonic() + svc.settings.send_budget_seconds
    done = start_at
    while True:
        piece = data[done : done + SLICE]
        report = await import_csv(
            svc, io.StringIO(_csv_text([header, *piece]), newline=""), source=f["source"], actor=f["actor"],
            department_id=department_id, channel_contacts=CHANNEL_CONTACTS,
        )
        for rowno, errors in report.rejected:
            # The slice's rows are numbered from 2 (after its header); the file's from done + 2.
            at = rowno + done if rowno > 1 else 1
            original = data[at - 2] if at > 1 else header
            if len(rejected) < MAX_REJECTED:
                rejected.append([at, [[e.field, e.message] for e in errors], original])
            else:
                rejected_more += 1
        rejected_more += report.rejected_more
        imported, merged = imported + report.imported, merged + report.merged
        done = len(data) if any(r[0] == 1 for r in report.rejected) else min(done + SLICE, len(data))
        finished = done >= len(data)
        progress: dict[str, Any] = {"done": done, "imported": imported, "merged": merged,
                                    "rejected": json.dumps(rejected, ensure_ascii=False), "rejected_more": rejected_more}
        if finished:
            progress |= {"status": "done", "header": json.dumps(header, ensure_ascii=False)}
        await svc.redis.hset(key, mapping=progress)
        if finished:
            await svc.redis.hdel(key, "csv")  # only the rejected rows stay, for the download
            return
        if time.monotonic() > deadline:
            await enqueue(svc.redis, ROSTER_IMPORT, import_id, done, _job_id=f"import:{import_id}:{done}")
            return
