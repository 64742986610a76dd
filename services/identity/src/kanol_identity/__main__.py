"""``python -m kanol_identity serve | seed | import-sirene | rotate-keys``."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from kanol_common.db import Database, upgrade_to_head
from kanol_common.errors import Problem
from kanol_common.logging import configure_logging
from kanol_common.outbox import set_default_source
from kanol_identity import signing, sirene
from kanol_identity.app import MIGRATIONS_DIR, create_app
from kanol_identity.models import KNOWN_SCOPES, OrganisationKind, Service
from kanol_identity.seed import SeedConflict, SeedRequest, seed
from kanol_identity.settings import IdentitySettings

SECRET_ENV = "KANOL_SEED_CLIENT_SECRET"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = IdentitySettings()
    configure_logging(settings)
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "seed":
        return asyncio.run(_seed(settings, args))
    if args.command == "import-sirene":
        return asyncio.run(_import_sirene(settings, args))
    return asyncio.run(_rotate_keys(settings))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kanol_identity")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (default: settings host)")
    serve.add_argument("--port", type=int, help="listen port (default: settings port, 8001)")

    seed_cmd = commands.add_parser(
        "seed", help="declare an organisation and optionally an API client (idempotent)"
    )
    seed_cmd.add_argument("--siren", required=True)
    seed_cmd.add_argument("--name", required=True)
    seed_cmd.add_argument(
        "--kind", required=True, choices=[kind.value for kind in OrganisationKind]
    )
    seed_cmd.add_argument("--departement", required=True, help="ACTES code, e.g. 035, 02A, 974")
    seed_cmd.add_argument("--client-id")
    seed_cmd.add_argument(
        "--client-secret",
        help=f"the client's secret; else ${SECRET_ENV}; else one is generated and printed",
    )
    seed_cmd.add_argument(
        "--scopes", default="", help=f"space separated, among: {' '.join(KNOWN_SCOPES)}"
    )
    seed_cmd.add_argument(
        "--services",
        help="the organisation's own subscriptions, space separated, or 'all', among: "
        f"{' '.join(Service)} (absent: left as they are)",
    )
    seed_cmd.add_argument("--parent-siren", help="a commune's EPCI, a CCAS's commune")
    seed_cmd.add_argument(
        "--arrondissement", type=int, help="its arrondissement in the ACTES envelope (0-9)"
    )
    seed_cmd.add_argument(
        "--nature-collectivite", help="its nature code in the ACTES envelope (2 digits)"
    )

    sirene_cmd = commands.add_parser(
        "import-sirene",
        help="register or update organisations from a CSV in SIRENE's columns (idempotent)",
        description=sirene.__doc__.split("\n\n")[0] if sirene.__doc__ else None,
    )
    sirene_cmd.add_argument("file", type=Path, help="CSV: siren, denominationUniteLegale, ...")
    sirene_cmd.add_argument("--report", type=Path, help="also write the refused lines to a CSV")

    commands.add_parser("rotate-keys", help="make a new signing key current, retire the others")
    return parser


def _serve(settings: IdentitySettings, args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
    )
    return 0


async def _migrate(settings: IdentitySettings) -> Database:
    if settings.run_migrations:
        url = settings.resolved_database_url()
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_DIR, url)
    return Database(settings.resolved_database_url())


async def _seed(settings: IdentitySettings, args: argparse.Namespace) -> int:
    scopes = tuple(args.scopes.split())
    if args.client_id and not scopes:
        print("seed: --scopes is required with --client-id", file=sys.stderr)
        return 2

    try:
        services = _services(args.services)
    except ValueError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2

    set_default_source(settings.service_name)
    request = SeedRequest(
        siren=args.siren,
        name=args.name,
        kind=OrganisationKind(args.kind),
        departement=args.departement,
        client_id=args.client_id,
        client_secret=args.client_secret or os.environ.get(SECRET_ENV) or None,
        scopes=scopes,
        services=services,
        parent_siren=args.parent_siren,
        arrondissement=args.arrondissement,
        nature_collectivite=args.nature_collectivite,
    )
    database = await _migrate(settings)
    try:
        outcome = await seed(database, request)
    except (SeedConflict, ValueError, Problem) as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    finally:
        await database.dispose()

    print(f"organisation {request.siren}: {_state(outcome.organisation_created, False)}")
    if request.services is not None:
        subscribed = " ".join(request.services) or "none"
        state = _state(False, outcome.subscriptions_changed)
        print(f"subscriptions {request.siren}: {subscribed} ({state})")
    if request.client_id:
        print(
            f"client {request.client_id}: {_state(outcome.client_created, outcome.client_updated)}"
        )
    if outcome.generated_secret:
        print(f"client_secret (shown once): {outcome.generated_secret}")
    return 0


def _services(text: str | None) -> tuple[Service, ...] | None:
    if text is None:
        return None
    if text.strip() == "all":
        return tuple(Service)
    return tuple(Service(name) for name in text.split())


def _state(created: bool, updated: bool) -> str:
    if created:
        return "registered"
    return "updated" if updated else "unchanged"


async def _import_sirene(settings: IdentitySettings, args: argparse.Namespace) -> int:
    """Exit 0 when every line was imported, 1 when some were refused, 2 for a bad file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    set_default_source(settings.service_name)
    database = await _migrate(settings)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("import", total=None)
            report = await sirene.import_file(
                database,
                args.file,
                progress=lambda done: progress.update(task, completed=done),
            )
    except (sirene.ImportFileInvalid, OSError, UnicodeDecodeError) as exc:
        print(f"import-sirene: {args.file}: {exc}", file=sys.stderr)
        return 2
    finally:
        await database.dispose()

    for sentence in sirene.iter_report(report):
        print(f"import-sirene: refused {sentence}", file=sys.stderr)
    if args.report:
        _write_refusals(args.report, report)
    print(f"import-sirene: {args.file}: {report.summary()}")
    return 1 if report.refused else 0


def _write_refusals(path: Path, report: sirene.ImportReport) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["line", "siren", "reason"])
        for refusal in sorted(report.refused, key=lambda refusal: refusal.line):
            writer.writerow([refusal.line, refusal.siren, refusal.reason])


async def _rotate_keys(settings: IdentitySettings) -> int:
    database = await _migrate(settings)
    try:
        async with database.session() as session:
            row = await signing.rotate(session, settings)
            await session.commit()
    finally:
        await database.dispose()
    print(f"signing key {row.kid}: current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
