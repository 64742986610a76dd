"""``python -m kanol_archive serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kanol_archive.app import create_app
from kanol_archive.settings import ArchiveSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanol_archive")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service and its consumer")
    serve.add_argument("--host", help="listen address (default: settings host)")
    serve.add_argument("--port", type=int, help="listen port (default: settings port, 8003)")
    args = parser.parse_args(argv)

    import uvicorn

    settings = ArchiveSettings()
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
