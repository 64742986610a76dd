"""archive's orphan collection (:mod:`kanol_common.orphans`): what it still needs is what
:func:`kanol_archive.retention.in_use` names, and each collection that removed something is
written in the logbook (``storage.orphans_collected``) with the contents it removed."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_archive import logbook
from kanol_archive.logbook import Operation
from kanol_archive.retention import in_use
from kanol_common import orphans
from kanol_common.db import Database
from kanol_common.orphans import Collection
from kanol_common.storage import ObjectStore

ACTOR: Final = "archive.collect-orphans"


async def collect(
    database: Database, store: ObjectStore, *, grace: timedelta, dry_run: bool = False
) -> Collection:
    """Remove the archive's orphans written before ``grace`` ago (see
    :func:`kanol_common.orphans.collect`)."""
    return await orphans.collect(
        database, store, in_use, grace=grace, dry_run=dry_run, record=record
    )


async def record(session: AsyncSession, collection: Collection, grace: timedelta) -> None:
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
