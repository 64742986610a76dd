"""``python -m kanol_archive serve | audit | verify-logbook | seal-logbook |
propose-eliminations | collect-orphans``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from kanol_archive.app import MIGRATIONS_DIR, create_app
from kanol_archive.settings import ArchiveSettings
from kanol_common.db import Database, upgrade_to_head
from kanol_common.orphans import add_command as add_orphans_command
from kanol_common.storage import ObjectStore, object_store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanol_archive")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service and its consumer")
    serve.add_argument("--host", help="listen address (default: settings host)")
    serve.add_argument("--port", type=int, help="listen port (default: settings port, 8003)")

    audit = commands.add_parser(
        "audit", help="recompute every stored object's fingerprints; resumes an unfinished run"
    )
    audit.add_argument(
        "--rate", type=float, help="MB/s to read at most (default: settings, 0: no limit)"
    )
    audit.add_argument("--restart", action="store_true", help="start over instead of resuming")
    audit.add_argument("--quiet", action="store_true", help="no progress bar")

    verify = commands.add_parser(
        "verify-logbook", help="prove the logbook's hash chain intact, or show its first break"
    )
    verify.add_argument(
        "--published",
        action="store_true",
        help="also compare with the heads published on archive.events (needs Kafka)",
    )
    commands.add_parser("seal-logbook", help="publish the logbook's head now")
    commands.add_parser(
        "propose-eliminations", help="raise elimination proposals for the archives now due"
    )
    add_orphans_command(commands)
    args = parser.parse_args(argv)

    settings = ArchiveSettings()
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    if args.command == "audit":
        rate = settings.audit_rate_mb_per_second if args.rate is None else args.rate
        return asyncio.run(_audit(settings, rate, restart=args.restart, quiet=args.quiet))
    if args.command == "verify-logbook":
        return asyncio.run(_verify_logbook(settings, published=args.published))
    if args.command == "seal-logbook":
        return asyncio.run(_seal_logbook(settings))
    if args.command == "collect-orphans":
        return asyncio.run(_collect_orphans(settings, args))
    return asyncio.run(_propose_eliminations(settings))


def _serve(settings: ArchiveSettings, host: str | None, port: int | None) -> int:
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
    )
    return 0


async def _audit(settings: ArchiveSettings, rate: float, *, restart: bool, quiet: bool) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from kanol_archive.audit import findings_of, run_audit

    database, store = await _open(settings)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, disable=quiet) as bar:
            task = bar.add_task("audit")

            class Display:
                def start(self, total_bytes: int, done_bytes: int) -> None:
                    bar.update(task, total=total_bytes, completed=done_bytes)

                def advance(self, nbytes: int) -> None:
                    bar.advance(task, nbytes)

            run = await run_audit(
                database,
                store,
                rate_mb_per_second=rate or None,
                progress=Display(),
                restart=restart,
            )
        async with database.session() as session:
            findings = await findings_of(session, run.id)
    finally:
        await store.close()
        await database.dispose()

    print(
        f"audit {run.id}: {run.objects_checked} objects, {run.bytes_checked / 1e6:.1f} MB, "
        f"{run.failures} failure(s)"
    )
    for finding in findings:
        print(
            f"  archive {finding.archive_id} ({finding.siren}) {finding.document} "
            f"{finding.sha256}: {finding.problem}"
        )
    return 0 if run.failures == 0 else 1


async def _verify_logbook(settings: ArchiveSettings, *, published: bool) -> int:
    from kanol_archive import logbook
    from kanol_common.events.archive import TOPIC

    heads = None
    if published:
        topic = f"{settings.kafka_topic_prefix}{TOPIC}"
        heads = await logbook.published_heads(settings.kafka_bootstrap, topic)
    database, store = await _open(settings)
    try:
        async with database.session() as session:
            report = await logbook.verify(session, heads)
    finally:
        await store.close()
        await database.dispose()

    print(
        f"logbook: {report.checked} entries, head {report.head_sequence} {report.head_hash}"
        + (f", {report.published_checked} published head(s) compared" if published else "")
    )
    if report.first_broken is not None:
        print(f"BROKEN at entry {report.first_broken.sequence}: {report.first_broken.reason}")
    for problem in report.problems:
        print(f"BROKEN: {problem}")
    if report.intact:
        print("intact")
    return 0 if report.intact else 1


async def _seal_logbook(settings: ArchiveSettings) -> int:
    from kanol_archive import logbook

    database, store = await _open(settings)
    try:
        async with database.session() as session:
            sealed = await logbook.seal(session, tenant=settings.archival_agency_identifier)
            await session.commit()
    finally:
        await store.close()
        await database.dispose()
    print("nothing new to seal" if sealed is None else f"sealed {sealed.sequence} {sealed.hash}")
    return 0


async def _propose_eliminations(settings: ArchiveSettings) -> int:
    from kanol_archive import retention

    database, store = await _open(settings)
    try:
        proposals = await retention.sweep(database, store)
    finally:
        await store.close()
        await database.dispose()
    for proposal in proposals:
        print(f"proposal {proposal.id} for {proposal.siren}")
    print(f"{len(proposals)} proposal(s) raised")
    return 0


async def _collect_orphans(settings: ArchiveSettings, args: argparse.Namespace) -> int:
    from kanol_archive import orphans
    from kanol_archive.retention import in_use
    from kanol_common.orphans import run_command

    database, store = await _open(settings)
    try:
        return await run_command(args, database, store, in_use, record=orphans.record)
    finally:
        await store.close()
        await database.dispose()


async def _open(settings: ArchiveSettings) -> tuple[Database, ObjectStore]:
    """The service's database, migrated, and its object store: what the commands work on."""
    database = Database(settings.resolved_database_url())
    if settings.run_migrations:
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, database.url)
    return database, object_store(settings.storage, settings.objects_dir(), settings.s3_location())


if __name__ == "__main__":
    sys.exit(main())
