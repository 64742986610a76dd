"""``python -m kanol_actes_pes serve [--host H] [--port P] | collect-orphans``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.logging import configure_logging
from kanol_common.orphans import add_command as add_orphans_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanol_actes_pes")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service with its transmitter")
    serve.add_argument("--host", default="127.0.0.1", help="listen address")
    serve.add_argument("--port", type=int, help="listen port (default: settings port, 8002)")
    add_orphans_command(commands)
    args = parser.parse_args(argv)

    settings = ActesPesSettings()
    configure_logging(settings)
    if args.command == "collect-orphans":
        return asyncio.run(_collect_orphans(settings, args))

    import uvicorn

    from kanol_actes_pes.app import create_app

    uvicorn.run(
        create_app(settings), host=args.host, port=args.port or settings.port, log_config=None
    )
    return 0


async def _collect_orphans(settings: ActesPesSettings, args: argparse.Namespace) -> int:
    from kanol_actes_pes.app import MIGRATIONS_DIR
    from kanol_actes_pes.orphans import in_use
    from kanol_common.db import Database, upgrade_to_head
    from kanol_common.orphans import run_command
    from kanol_common.storage import LocalObjectStore

    database = Database(settings.resolved_database_url())
    if settings.run_migrations:
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, database.url)
    store = LocalObjectStore(settings.objects_dir())
    try:
        return await run_command(args, database, store, in_use)
    finally:
        await store.close()
        await database.dispose()


if __name__ == "__main__":
    sys.exit(main())
