"""Collecting orphans: stored content that nothing in a service's database refers to.

A service stores a document's bytes before the transaction that records the document
commits. When that transaction fails (a crash, a lost connection, a refused check), the
content stays under its address and nothing points at it: a retry reuses it, and otherwise
it is an orphan that takes space for ever. The collector walks the store, leaves alone
whatever was written within the grace period (a writer may still be on its way to its
commit), takes each older content for removal (see :mod:`kanol_common.holds`), asks the
service which of them it still needs, and removes the others. It also removes what
interrupted writes left (temporary files, unfinished uploads).

Each service says what it needs (``InUse``) and may record a collection (``Record``): the
archive writes it in its logbook. :func:`add_command` and :func:`run_command` give every
service the same ``collect-orphans`` command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common import holds
from kanol_common.db import Database
from kanol_common.holds import InUse
from kanol_common.logging import get_logger
from kanol_common.storage import ListedObject, ObjectStore

log = get_logger(__name__)

# Contents checked per transaction: each holds one advisory lock until its transaction
# ends, and PostgreSQL's shared lock table is not endless.
BATCH_SIZE: Final = 200
DEFAULT_GRACE_HOURS: Final = 24.0


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


Record = Callable[[AsyncSession, Collection, timedelta], Awaitable[None]]
"""Writes a collection that removed something in the service's own records; the collector
commits."""


async def collect(
    database: Database,
    store: ObjectStore,
    in_use: InUse,
    *,
    grace: timedelta,
    dry_run: bool = False,
    record: Record | None = None,
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
            collection.orphans += await _collect_batch(database, store, in_use, batch, dry_run)
            batch = []
    collection.orphans += await _collect_batch(database, store, in_use, batch, dry_run)

    if dry_run:
        return collection
    collection.leftovers = await store.remove_leftovers(written_before)
    if record is not None and (collection.orphans or collection.leftovers):
        async with database.session() as session:
            await record(session, collection, grace)
            await session.commit()
    log.info(
        "storage.orphans_collected",
        listed=collection.listed,
        orphans=len(collection.orphans),
        orphan_bytes=collection.orphan_bytes,
        leftovers=collection.leftovers,
    )
    return collection


async def _collect_batch(
    database: Database,
    store: ObjectStore,
    in_use: InUse,
    batch: list[ListedObject],
    dry_run: bool,
) -> list[ListedObject]:
    """The orphans of ``batch``, removed unless ``dry_run``; taken contents are held until
    the batch's transaction ends, so no writer stores one of them meanwhile."""
    if not batch:
        return []

    listed = {item.sha256: item for item in batch}
    async with database.session() as session:
        unused = await holds.remove_unused(session, store, listed, in_use, dry_run=dry_run)
        await session.commit()
    orphans = [listed[sha256] for sha256 in unused]
    if not dry_run:
        for orphan in orphans:
            log.info("storage.orphan_removed", sha256=orphan.sha256, size=orphan.size)
    return orphans


# -- the command ---------------------------------------------------------------------------


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``collect-orphans [--grace-hours H] [--dry-run] [--quiet]`` among a service's
    commands."""
    command = commands.add_parser(
        "collect-orphans",
        help="remove stored content nothing refers to (left by failed transactions)",
    )
    command.add_argument(
        "--grace-hours",
        type=float,
        default=DEFAULT_GRACE_HOURS,
        help=f"leave content written less than this ago (default: {DEFAULT_GRACE_HOURS:g})",
    )
    command.add_argument(
        "--dry-run", action="store_true", help="list the orphans without removing them"
    )
    command.add_argument("--quiet", action="store_true", help="no progress display")


async def run_command(
    args: argparse.Namespace,
    database: Database,
    store: ObjectStore,
    in_use: InUse,
    *,
    record: Record | None = None,
) -> int:
    """Run ``collect-orphans`` as parsed by :func:`add_command`, print what it found; the
    exit code (2 for a negative grace period)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    if args.grace_hours < 0:
        print("--grace-hours cannot be negative", file=sys.stderr)
        return 2
    columns = (SpinnerColumn(), TextColumn("{task.completed} objects listed"))
    with Progress(*columns, disable=args.quiet) as display:
        task = display.add_task("collect-orphans")
        collection = await collect(
            database,
            store,
            in_use,
            grace=timedelta(hours=args.grace_hours),
            dry_run=args.dry_run,
            record=record,
            progress=lambda listed: display.advance(task, listed),
        )

    for orphan in collection.orphans:
        written = f"{orphan.modified_at:%Y-%m-%d %H:%M}"
        print(f"  {orphan.sha256} {orphan.size} bytes, written {written}")
    verb = "would remove" if args.dry_run else "removed"
    leftovers = f", and {collection.leftovers} leftover(s) of interrupted writes"
    print(
        f"{collection.listed} objects listed; {verb} {len(collection.orphans)} orphan(s), "
        f"{collection.orphan_bytes / 1e6:.1f} MB" + ("" if args.dry_run else leftovers)
    )
    return 0
