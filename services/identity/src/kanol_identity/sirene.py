"""Import organisations from a CSV in the columns of INSEE's SIRENE register.

The national stock file of legal units (``StockUniteLegale``) gives for each SIREN its name
(``denominationUniteLegale``), its legal category (``categorieJuridiqueUniteLegale``) and
whether it still exists (``etatAdministratifUniteLegale``, ``C`` for ceased). It says
nothing of where an organisation is nor of the EPCI a commune belongs to, so the import
also reads these optional columns, when the file has them:

- ``codeDepartement`` (``35``, ``2A``, ``974``; or already ``035``), else the département
  of ``codeCommuneEtablissement`` (the code commune of the head office, a column of the
  ``StockEtablissement`` file; ``codeCommune`` is read too);
- ``sirenEpci``: a commune's EPCI, or a CIAS's; ``sirenParent``: any organisation's parent
  (a CCAS's commune), preferred to ``sirenEpci``. A parent column present but empty on a line
  detaches the organisation; a file without either column leaves parents as they are.

Only local public bodies are imported: legal categories 72xx (collectivités territoriales),
73xx (établissements publics locaux) and 7470 (groupement d'intérêt public). The kind
follows the category (:data:`CATEGORY_KINDS`); a 72xx or 73xx category not listed there is
kind ``autre``.

Lines are applied parents first (EPCIs before communes, communes before CCAS), each under a
savepoint, committed in batches. A line that changes nothing writes nothing and publishes
nothing, so running the same file twice changes nothing the second time. A refused line is
reported with its line number and the reason, and the others are imported.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from kanol_common.db import Database
from kanol_common.errors import Problem
from kanol_common.logging import get_logger
from kanol_identity import service
from kanol_identity.models import OrganisationCreate, OrganisationKind, OrganisationUpdate
from kanol_identity.repository import OrganisationRepository

log = get_logger(__name__)

SIREN = "siren"
NAME = "denominationUniteLegale"
CATEGORY = "categorieJuridiqueUniteLegale"
STATE = "etatAdministratifUniteLegale"
DEPARTEMENT = "codeDepartement"
COMMUNE_CODES = ("codeCommuneEtablissement", "codeCommune")
PARENT = "sirenParent"
EPCI = "sirenEpci"
REQUIRED_COLUMNS = (SIREN, NAME, CATEGORY)

# INSEE's nomenclature of legal categories (level III), the local public bodies among them.
CATEGORY_KINDS: dict[str, OrganisationKind] = {
    "7210": OrganisationKind.COMMUNE,  # commune et commune nouvelle
    "7220": OrganisationKind.DEPARTEMENT,
    "7230": OrganisationKind.REGION,
    "7342": OrganisationKind.EPCI,  # district urbain
    "7343": OrganisationKind.EPCI,  # communauté urbaine
    "7344": OrganisationKind.EPCI,  # métropole
    "7346": OrganisationKind.EPCI,  # communauté de communes
    "7347": OrganisationKind.EPCI,  # communauté de villes
    "7348": OrganisationKind.EPCI,  # communauté d'agglomération
    "7340": OrganisationKind.SYNDICAT,  # pôle métropolitain (a syndicat mixte)
    "7345": OrganisationKind.SYNDICAT,  # syndicat intercommunal à vocation multiple
    "7353": OrganisationKind.SYNDICAT,  # syndicat intercommunal à vocation unique
    "7354": OrganisationKind.SYNDICAT,  # syndicat mixte fermé
    "7355": OrganisationKind.SYNDICAT,  # syndicat mixte ouvert
    "7356": OrganisationKind.SYNDICAT,  # commission syndicale (biens indivis des communes)
    "7357": OrganisationKind.SYNDICAT,  # pôle d'équilibre territorial et rural
    "7361": OrganisationKind.CCAS,  # centre communal d'action sociale
    "7367": OrganisationKind.CCAS,  # centre intercommunal d'action sociale (CIAS)
    "7378": OrganisationKind.REGIE,  # régie d'une collectivité locale (administrative)
}

# Parents before children, so a commune's EPCI exists when the commune is applied.
_KIND_ORDER: dict[OrganisationKind, int] = {
    OrganisationKind.REGION: 0,
    OrganisationKind.DEPARTEMENT: 1,
    OrganisationKind.EPCI: 2,
    OrganisationKind.SYNDICAT: 3,
    OrganisationKind.REGIE: 3,
    OrganisationKind.AUTRE: 3,
    OrganisationKind.COMMUNE: 4,
    OrganisationKind.CCAS: 5,
}
BATCH_SIZE = 500


class ImportFileInvalid(Exception):
    """The file as a whole cannot be imported (not a CSV, a required column missing)."""


@dataclass(frozen=True)
class Refusal:
    line: int
    siren: str
    reason: str


@dataclass(frozen=True)
class _Line:
    number: int
    data: OrganisationCreate
    # Whether the file says anything of the parent (a column present), and of the département.
    parent_given: bool
    departement_given: bool


@dataclass
class ImportReport:
    lines: int = 0
    registered: int = 0
    updated: int = 0
    unchanged: int = 0
    # Lines of other legal units (companies, associations, State services...): the national
    # stock file is mostly made of them, so they are counted, not listed.
    skipped: int = 0
    refused: list[Refusal] = field(default_factory=list)

    def count(self, outcome: service.Outcome) -> None:
        if outcome is service.Outcome.REGISTERED:
            self.registered += 1
        elif outcome is service.Outcome.UPDATED:
            self.updated += 1
        else:
            self.unchanged += 1

    def summary(self) -> str:
        return (
            f"{self.lines} lines: {self.registered} registered, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} not local public bodies, "
            f"{len(self.refused)} refused"
        )


Progress = Callable[[int], None]


def departement_code(code: str) -> str | None:
    """The ACTES 3-character département of a département code (35, 2A, 974, 035)."""
    code = code.strip().upper()
    if len(code) == 3:
        return code
    if len(code) == 2:
        return f"0{code}"
    return None


def departement_of_commune(code_commune: str) -> str | None:
    """The ACTES département of an INSEE code commune: 35238 -> 035, 2A004 -> 02A, 97411 -> 974."""
    code = code_commune.strip().upper()
    if len(code) != 5:
        return None
    if code.startswith("97"):
        return code[:3]
    return f"0{code[:2]}"


def kind_of(category: str) -> OrganisationKind | None:
    """The kind of a legal category, or None when it is not a local public body."""
    category = category.strip()
    if category in CATEGORY_KINDS:
        return CATEGORY_KINDS[category]
    if category[:2] in ("72", "73") or category == "7470":
        return OrganisationKind.AUTRE
    return None


def read_lines(source: str | TextIO, report: ImportReport) -> list[_Line]:
    """Parse and check every line; refused ones go to ``report``, the others are returned.

    ``source`` is read as a stream: only the lines of local public bodies are kept, so the
    national stock file (millions of lines) needs the memory of its public bodies only.
    """
    stream = io.StringIO(source) if isinstance(source, str) else source
    head = stream.read(4096)
    stream.seek(0)
    try:
        dialect = csv.Sniffer().sniff(head, delimiters=",;\t")
    except csv.Error as exc:
        raise ImportFileInvalid("The file is not a CSV with , ; or tab separators.") from exc
    reader = csv.DictReader(stream, dialect=dialect)
    columns = set(reader.fieldnames or ())
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise ImportFileInvalid(f"Missing columns: {', '.join(missing)}")
    parent_columns = [column for column in (PARENT, EPCI) if column in columns]

    lines: list[_Line] = []
    first_seen: dict[str, int] = {}
    for row in reader:
        report.lines += 1
        number = reader.line_num
        siren = (row.get(SIREN) or "").strip()
        if None not in row and kind_of(row.get(CATEGORY) or "") is None:
            report.skipped += 1
            continue
        reason = _line_problem(row, siren, first_seen)
        if reason is not None:
            report.refused.append(Refusal(number, siren, reason))
            continue
        first_seen[siren] = number

        parsed = _parse(row, siren, number, parent_columns)
        if isinstance(parsed, str):
            report.refused.append(Refusal(number, siren, parsed))
            continue
        lines.append(parsed)
    return sorted(lines, key=lambda line: (_KIND_ORDER[line.data.kind], line.number))


def _line_problem(row: dict[str, str | None], siren: str, first_seen: dict[str, int]) -> str | None:
    if None in row:
        return "more fields than the header has columns"
    if siren in first_seen:
        return f"the SIREN {siren} is already on line {first_seen[siren]}"
    if (row.get(STATE) or "").strip() == "C":
        return "the legal unit has ceased (etatAdministratifUniteLegale C)"
    return None


def _parse(
    row: dict[str, str | None], siren: str, number: int, parent_columns: list[str]
) -> _Line | str:
    kind = kind_of(row.get(CATEGORY) or "")
    assert kind is not None
    departement = _departement(row)
    parent = _parent(row, kind, parent_columns)
    try:
        data = OrganisationCreate(
            siren=siren,
            name=(row.get(NAME) or "").strip(),
            kind=kind,
            # Checked against an existing organisation later, when the file gives none.
            departement=departement or "035",
            parent_siren=parent,
        )
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return _Line(number, data, bool(parent_columns), departement is not None)


def _departement(row: dict[str, str | None]) -> str | None:
    code = (row.get(DEPARTEMENT) or "").strip()
    if code:
        return departement_code(code) or code
    for column in COMMUNE_CODES:
        commune = (row.get(column) or "").strip()
        if commune:
            return departement_of_commune(commune) or commune
    return None


def _parent(
    row: dict[str, str | None], kind: OrganisationKind, parent_columns: list[str]
) -> str | None:
    parent = (row.get(PARENT) or "").strip()
    if parent:
        return parent
    if kind in (OrganisationKind.COMMUNE, OrganisationKind.CCAS) and EPCI in parent_columns:
        return (row.get(EPCI) or "").strip() or None
    return None


def _read_file(path: Path, report: ImportReport) -> list[_Line]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return read_lines(stream, report)


async def import_file(
    database: Database, path: Path, *, progress: Progress | None = None
) -> ImportReport:
    """Import ``path``; the report counts what each line did and why lines were refused."""
    report = ImportReport()
    lines = await asyncio.to_thread(_read_file, path, report)

    done = 0
    for start in range(0, len(lines), BATCH_SIZE):
        async with database.session() as session:
            for line in lines[start : start + BATCH_SIZE]:
                await _apply(session, line, report)
                done += 1
                if progress is not None:
                    progress(done)
            await session.commit()
    log.info(
        "sirene.imported",
        file=path.name,
        lines=report.lines,
        registered=report.registered,
        updated=report.updated,
        unchanged=report.unchanged,
        refused=len(report.refused),
    )
    return report


async def _apply(session: AsyncSession, line: _Line, report: ImportReport) -> None:
    """Apply one line under a savepoint, so a refusal undoes only its own work."""
    savepoint = await session.begin_nested()
    try:
        outcome = await _upsert(session, line)
    except Problem as problem:
        await savepoint.rollback()
        report.refused.append(Refusal(line.number, line.data.siren, problem.detail))
        return
    await savepoint.commit()
    report.count(outcome)


async def _upsert(session: AsyncSession, line: _Line) -> service.Outcome:
    data = line.data
    existing = await OrganisationRepository(session).get_by_siren(data.siren)
    if existing is None:
        if not line.departement_given:
            raise _Refused("no département: add a codeDepartement or codeCommuneEtablissement")
        await service.register_organisation(session, data)
        return service.Outcome.REGISTERED

    changes: dict[str, object] = {"name": data.name, "kind": data.kind}
    if line.departement_given:
        changes["departement"] = data.departement
    if line.parent_given:
        changes["parent_siren"] = data.parent_siren
    _, changed = await service.update_organisation(
        session, data.siren, OrganisationUpdate.model_validate(changes)
    )
    return service.Outcome.UPDATED if changed else service.Outcome.UNCHANGED


class _Refused(Problem):
    status = 422
    type_slug = "sirene-line-refused"
    title = "Line refused"


def iter_report(report: ImportReport) -> Iterator[str]:
    """The refused lines, one sentence each, in file order."""
    for refusal in sorted(report.refused, key=lambda refusal: refusal.line):
        yield f"line {refusal.line}: {refusal.siren or '(no SIREN)'}: {refusal.reason}"
