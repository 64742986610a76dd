"""Collecting orphans: stored content that nothing in the archive's database refers to.

A deposit, a transfer or an accepted package stores its bytes before its transaction
commits. When that transaction fails (a crash, a lost connection, a refused check), the
content stays under its address and nothing points at it: a retry of the same deposit
reuses it, and otherwise it is an orphan that takes space forever. The collector walks the
store, leaves alone whatever was written within the grace period (a deposit may still be
on its way to its commit), takes each older content for removal (see
:mod:`kanol_archive.holds`), checks that nothing committed needs it, and removes it. It
also removes what interrupted writes left (temporary files, unfinished uploads), and
records what it removed in the logbook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from kanol_archive import holds, logbook
from kanol_archive.logbook import Operation
from kanol_archive.retention import in_use
from kanol_common.db import Database
from kanol_common.logging import get_logger
from kanol_common.storage import ListedObject, ObjectStore

log = get_logger(__name__)

# Contents checked per transaction: each holds one advisory lock until its transaction
# ends, and PostgreSQL's shared lock table is not endless.
BATCH_SIZE: Final = 200
ACTOR: Final = "archive.collect-orphans"


@dataclass
class Collection:
    """What one collection found: objects listed, orphans removed (or, in a dry run, that
    would be), and leftovers of interrupted writes removed."""

    listed: int = 0
    orphans: list[ListedObject] = field(default_factory=list)
    leftovers: int = 0

    @property
    def orphan_bytes(self) -> int:
        return sum(item.size for item in self.orphans)


async def collect(
    database: Database,
    store: ObjectStore,
    *,
    grace: timedelta,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Collection:
    """Remove every orphan written before ``grace`` ago; with ``dry_run``, only find them."""
    written_before = datetime.now(UTC) - grace
    collection = Collection()
    batch: list[ListedObject] = []
    async for listed in store.list_objects():
        collection.listed += 1
        if progress is not None:
            progress(1)
        if listed.modified_at >= written_before:
            continue
        batch.append(listed)
        if len(batch) >= BATCH_SIZE:
            collection.orphans += await _collect_batch(database, store, batch, dry_run)
            batch = []
    collection.orphans += await _collect_batch(database, store, batch, dry_run)

    if dry_run:
        return collection
    collection.leftovers = await store.remove_leftovers(written_before)
    if collection.orphans or collection.leftovers:
        await _record(database, collection, grace)
    log.info(
        "storage.orphans_collected",
        listed=collection.listed,
        orphans=len(collection.orphans),
        orphan_bytes=collection.orphan_bytes,
        leftovers=collection.leftovers,
    )
    return collection


async def _collect_batch(
    database: Database, store: ObjectStore, batch: list[ListedObject], dry_run: bool
) -> list[ListedObject]:
    """The orphans of ``batch``, removed unless ``dry_run``; taken contents are held until
    the batch's transaction ends, so no deposit stores one of them meanwhile."""
    if not batch:
        return []

    async with database.session() as session:
        taken = [item for item in batch if await holds.take(session, item.sha256)]
        needed = await in_use(session, (item.sha256 for item in taken))
        orphans = [item for item in taken if item.sha256 not in needed]
        if dry_run:
            return orphans
        for orphan in orphans:
            await store.delete(orphan.sha256)
            log.info("storage.orphan_removed", sha256=orphan.sha256, size=orphan.size)
        await session.commit()
    return orphans


async def _record(database: Database, collection: Collection, grace: timedelta) -> None:
    async with database.session() as session:
        await logbook.append(
            session,
            operation=Operation.ORPHANS_COLLECTED,
            siren=None,
            actor=ACTOR,
            details={
                "grace_hours": grace.total_seconds() / 3600,
                "orphans": [item.sha256 for item in collection.orphans],
                "orphan_bytes": collection.orphan_bytes,
                "leftovers": collection.leftovers,
            },
        )
        await session.commit()
