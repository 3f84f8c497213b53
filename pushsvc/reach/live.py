"""The reach index of one API process, built at start in the background and kept current from the
database's change log (`subscriber_changes`, written in the same transaction as every change to a
subscriber's audience data). The database stays the truth: until the index is built, and whenever
it cannot be used, the preview counts in SQL.

Following the log: each catch-up (before every preview, and every POLL_SECONDS) reads the entries
after the last one seen and re-reads those subscribers whole. On PostgreSQL sequence numbers are
taken before commit, so a number below the last one seen may still commit later: such gaps are
asked for again until they show up or GAP_SECONDS pass (a rolled-back transaction leaves one
for good). Several API processes each follow the log; entries are pruned once every live index has
read them (KEEP_SECONDS; an index that fell further behind is rebuilt instead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace

from pyroaring import BitMap

from pushsvc.core.catalogue import Catalogue
from pushsvc.core.targeting import Targeting
from pushsvc.reach.index import ReachIndex, parse_ids, sparse_clauses, sparse_columns
from pushsvc.store.db import Database
from pushsvc.store.matching import predicate_condition
from pushsvc.store.reach_index import ReachCounts, changes, last_change, matching_ids, prune_changes, read_audience_data

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
RETRY_SECONDS = 30.0
GAP_SECONDS = 300.0
# Entries this old are read by every live index: one that has not caught up for REBUILD_SECONDS rebuilds.
KEEP_SECONDS = 3600.0
REBUILD_SECONDS = 600.0
# Sequence numbers below the newest at a build that may still commit (transactions in flight).
BUILD_LOOKBACK = 10_000
# More changed subscribers than this at once (a big import): rebuilding is cheaper than re-reading.
REBUILD_ABOVE = 200_000
CHUNK = 900  # ids per refresh query: under SQLite's bound-parameter limit


class LiveReach:
    def __init__(self, db: Database, catalogue: Catalogue) -> None:
        self.db = db
        self.sparse = sparse_columns(catalogue)
        self.index: ReachIndex | None = None
        self.build_seconds = 0.0
        self._last = 0
        self._gaps: dict[int, float] = {}  # sequence number not seen yet -> when first missed
        self._caught_up_at = 0.0
        self._marks: deque[tuple[float, int]] = deque()  # (when, last seen then), for pruning
        self._outdated = False  # a change too big to re-read: rebuild
        self._lock = asyncio.Lock()

    @property
    def usable(self) -> bool:
        """Built and following the log; otherwise the preview counts in SQL."""
        return self.index is not None and not self._outdated and time.monotonic() - self._caught_up_at < REBUILD_SECONDS

    async def run(self) -> None:
        """Build, then follow the log until cancelled; rebuild when it fell behind (the log may
        have been pruned past it) or a change was too big to re-read. A failure is logged and
        tried again: the preview meanwhile counts in SQL."""
        while True:
            try:
                if self.usable:
                    await self.catch_up()
                else:
                    await self.build()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reach index: build or catch-up failed; previews count in SQL meanwhile")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await asyncio.sleep(POLL_SECONDS)

    async def build(self) -> None:
        """A new index from the tables; the old one (if any) answers until it is swapped in."""
        started = time.monotonic()
        async with self.db.read() as conn:
            newest = await last_change(conn)
            recent = {seq for seq, _ in await changes(conn, max(0, newest - BUILD_LOOKBACK))}
        index = ReachIndex()
        async with self.db.read() as conn:  # everything committed before `newest` was read is in here
            async for kind, key, text in read_audience_data(conn, self.sparse):
                # In a thread: parsing a million ids takes a while, and the API keeps answering meanwhile.
                index.add(kind, key, await asyncio.to_thread(parse_ids, text))
        index.compact()
        async with self._lock:  # what was applied to the old index meanwhile is after `newest`: read again
            now = time.monotonic()
            self.index, self._last, self._outdated = index, newest, False
            self._gaps = {seq: now for seq in range(max(1, newest - BUILD_LOOKBACK + 1), newest + 1)
                          if seq not in recent}
            self._caught_up_at = now
            self._marks.clear()
        self.build_seconds = now - started
        log.info("reach index built in %.1f s", self.build_seconds)

    async def catch_up(self) -> None:
        """Apply every change committed so far (and any late one in a gap)."""
        async with self._lock:
            now = time.monotonic()
            if self.index is None or self._outdated:
                return
            gaps = {seq: at for seq, at in self._gaps.items() if now - at < GAP_SECONDS}
            async with self.db.read() as conn:
                found = await changes(conn, self._last, _ranges(gaps))
            expected = self._last + 1
            for seq, _ in found:
                gaps.pop(seq, None)
                if seq >= expected:
                    gaps.update((missed, now) for missed in range(expected, seq))
                    expected = seq + 1
            ids = {sid for _, sid in found}
            if len(ids) > REBUILD_ABOVE:
                self._outdated = True
                return
            await self._refresh(ids)
            self._last, self._gaps, self._caught_up_at = expected - 1, gaps, now
            await self._prune(now)

    async def _refresh(self, ids: set[int]) -> None:
        if not ids or self.index is None:
            return
        ordered = sorted(ids)
        fresh = []
        async with self.db.read() as conn:
            for start in range(0, len(ordered), CHUNK):
                async for kind, key, text in read_audience_data(conn, self.sparse, ordered[start:start + CHUNK]):
                    fresh.append((kind, key, parse_ids(text)))
        # No await from here on: a preview sees these subscribers either before or after, never half.
        self.index.forget(BitMap(ordered))
        for kind, key, members in fresh:
            self.index.add(kind, key, members)

    async def _prune(self, now: float) -> None:
        if not self._marks or now - self._marks[-1][0] >= 60:
            self._marks.append((now, self._last))
        if now - self._marks[0][0] < KEEP_SECONDS:
            return
        _, below = self._marks.popleft()
        async with self.db.write() as conn:
            await prune_changes(conn, below)

    async def counts(self, targeting: Targeting, domain: str, channels: list[str],
                     department_id: int | None) -> ReachCounts | None:
        """The preview's counts from the index, current as of now; None while it is not usable."""
        if not self.usable:
            return None
        await self.catch_up()
        if self.index is None or self._outdated:
            return None
        looked_up: dict[int, BitMap] = {}
        clauses = sparse_clauses(targeting.where, self.sparse)
        if clauses:
            async with self.db.read() as conn:
                for c in clauses:  # `not_in` is the holders minus those `in`: only the few are looked up
                    probe = replace(c, op="in") if c.op == "not_in" else c
                    looked_up[id(c)] = BitMap(await matching_ids(conn, predicate_condition(probe)))
        return self.index.counts(targeting, domain, channels, department_id, looked_up)


def _ranges(seqs: dict[int, float]) -> list[tuple[int, int]]:
    """Sequence numbers as inclusive ranges of consecutive ones, for a short query."""
    out: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out
