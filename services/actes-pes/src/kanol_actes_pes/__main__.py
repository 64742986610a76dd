"""``python -m kanol_actes_pes serve [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kanol_actes_pes.settings import ActesPesSettings
from kanol_common.logging import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanol_actes_pes")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service with its transmitter")
    serve.add_argument("--host", default="127.0.0.1", help="listen address")
    serve.add_argument("--port", type=int, help="listen port (default: settings port, 8002)")
    args = parser.parse_args(argv)

    settings = ActesPesSettings()
    configure_logging(settings)

    import uvicorn

    from kanol_actes_pes.app import create_app

    uvicorn.run(
        create_app(settings), host=args.host, port=args.port or settings.port, log_config=None
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
