"""``import-sirene``: organisations from a CSV in SIRENE's columns, refused lines reported
with their number and reason, and a second run that changes nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from kanol_common.events.identity import OrganisationUpdated
from kanol_identity import sirene
from kanol_identity.__main__ import main
from kanol_identity.models import OrganisationKind
from kanol_identity.testing import Identity, new_siren

from .directory import outbox_events, outbox_size

COLUMNS = [
    "siren",
    "statutDiffusionUniteLegale",
    "denominationUniteLegale",
    "categorieJuridiqueUniteLegale",
    "etatAdministratifUniteLegale",
    "codeCommuneEtablissement",
    "sirenEpci",
    "sirenParent",
]


class Register:
    """A CSV of a small territory: the SIRENs it uses and the lines it holds."""

    def __init__(self) -> None:
        self.epci, self.commune, self.corsica, self.ccas = (new_siren() for _ in range(4))
        self.region, self.company, self.ceased, self.orphan = (new_siren() for _ in range(4))
        good_luhn = new_siren()
        self.bad_luhn = good_luhn[:8] + str((int(good_luhn[8]) + 1) % 10)
        self.rows: list[list[str]] = [
            # Children first in the file: the import applies parents first anyway.
            [self.ccas, "O", "CCAS DE RENNES", "7361", "A", "35238", "", self.commune],
            [self.commune, "O", "COMMUNE DE RENNES", "7210", "A", "35238", self.epci, ""],
            [self.corsica, "O", "COMMUNE D'AJACCIO", "7210", "A", "2A004", self.epci, ""],
            [self.epci, "O", "RENNES METROPOLE", "7344", "A", "35238", "", ""],
            [self.region, "O", "REGION BRETAGNE", "7230", "A", "35238", "", ""],
            [self.company, "O", "BOULANGERIE SAS", "5710", "A", "35238", "", ""],
            [self.ceased, "O", "SIVU DISSOUS", "7353", "C", "35238", "", ""],
            [self.bad_luhn, "O", "COMMUNE MAL SAISIE", "7210", "A", "35238", "", ""],
            [self.orphan, "O", "COMMUNE ORPHELINE", "7210", "A", "35238", new_siren(), ""],
            [self.epci, "O", "RENNES METROPOLE (BIS)", "7344", "A", "35238", "", ""],
        ]

    def write(self, path: Path) -> Path:
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(self.rows)
        return path


async def _run(identity: Identity, *args: str) -> int:
    return await asyncio.to_thread(main, ["import-sirene", *args])


@pytest.fixture
def database_env(identity: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANOL_DATABASE_URL", identity.settings.resolved_database_url())


@pytest.mark.usefixtures("database_env")
async def test_import_reports_refusals_and_a_second_run_changes_nothing(
    identity: Identity, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register = Register()
    path = register.write(tmp_path / "StockUniteLegale.csv")
    report_path = tmp_path / "refused.csv"

    assert await _run(identity, str(path), "--report", str(report_path)) == 1
    first = capsys.readouterr()
    events_after_first = await outbox_size(identity)
    assert await _run(identity, str(path)) == 1
    second = capsys.readouterr()

    summary = "5 registered, 0 updated, 0 unchanged, 1 not local public bodies, 4 refused"
    assert f"10 lines: {summary}" in first.out
    summary = "0 registered, 0 updated, 5 unchanged, 1 not local public bodies, 4 refused"
    assert f"10 lines: {summary}" in second.out
    assert await outbox_size(identity) == events_after_first
    assert register.company not in first.err  # a company is no refusal: it is not for us
    with report_path.open(encoding="utf-8") as file:
        refused = {int(row["line"]): row["reason"] for row in csv.DictReader(file)}
    assert sorted(refused) == [8, 9, 10, 11]
    assert "ceased" in refused[8]
    assert "Luhn" in refused[9]
    assert "register the parent first" in refused[10]
    assert "already on line 5" in refused[11]

    headers = await identity.admin_headers()
    commune = (
        await identity.http.get(f"/v1/organisations/{register.commune}", headers=headers)
    ).json()
    corsica = (
        await identity.http.get(f"/v1/organisations/{register.corsica}", headers=headers)
    ).json()
    ccas = (await identity.http.get(f"/v1/organisations/{register.ccas}", headers=headers)).json()
    assert (commune["kind"], commune["departement"], commune["parent_siren"]) == (
        "commune",
        "035",
        register.epci,
    )
    assert corsica["departement"] == "02A"
    assert (ccas["kind"], ccas["parent_siren"]) == ("ccas", register.commune)


@pytest.mark.usefixtures("database_env")
async def test_a_changed_line_updates_and_publishes_once(
    identity: Identity, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register = Register()
    register.rows = register.rows[:5]
    path = register.write(tmp_path / "first.csv")
    assert await _run(identity, str(path)) == 0
    # Codes SIRENE does not know, set by an operator: a later import keeps them.
    codes = {"arrondissement": 2, "nature_collectivite": "25"}
    headers = await identity.admin_headers()
    patched = await identity.http.patch(
        f"/v1/organisations/{register.commune}", json=codes, headers=headers
    )
    assert patched.status_code == 200, patched.text

    register.rows[3][2] = "RENNES METROPOLE (NOUVEAU NOM)"
    register.rows[1][6] = ""  # the commune leaves its EPCI
    assert await _run(identity, str(register.write(tmp_path / "second.csv"))) == 0

    summary = "0 registered, 2 updated, 3 unchanged, 0 not local public bodies, 0 refused"
    assert f"5 lines: {summary}" in capsys.readouterr().out
    renamed = await outbox_events(identity, OrganisationUpdated, register.epci)
    assert [event.name for event in renamed] == ["RENNES METROPOLE (NOUVEAU NOM)"]
    left = await outbox_events(identity, OrganisationUpdated, register.commune)
    assert [(event.parent_siren, event.arrondissement) for event in left] == [
        (register.epci, 2),
        (None, 2),
    ]
    commune = await identity.http.get(f"/v1/organisations/{register.commune}", headers=headers)
    assert commune.json()["nature_collectivite"] == "25"


def test_a_national_file_keeps_only_its_local_public_bodies() -> None:
    # The stock file read as a stream: thousands of companies, two public bodies kept.
    epci, commune = new_siren(), new_siren()
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(COLUMNS)
    for _ in range(20_000):
        writer.writerow([new_siren(), "O", "SARL QUELCONQUE", "5499", "A", "35238", "", ""])
    writer.writerow([commune, "O", "COMMUNE DE RENNES", "7210", "A", "35238", epci, ""])
    writer.writerow([epci, "O", "RENNES METROPOLE", "7344", "A", "35238", "", ""])
    stream.seek(0)
    report = sirene.ImportReport()

    lines = sirene.read_lines(stream, report)

    assert [line.data.siren for line in lines] == [epci, commune]  # parents first
    assert (report.lines, report.skipped, report.refused) == (20_002, 20_000, [])


async def test_a_file_without_the_required_columns_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("siren;nom\n213502388;Rennes\n", encoding="utf-8")

    with pytest.raises(sirene.ImportFileInvalid, match="denominationUniteLegale"):
        sirene.read_lines(path.read_text(encoding="utf-8"), sirene.ImportReport())


@pytest.mark.parametrize(
    ("category", "kind"),
    [
        ("7210", OrganisationKind.COMMUNE),
        ("7220", OrganisationKind.DEPARTEMENT),
        ("7230", OrganisationKind.REGION),
        ("7346", OrganisationKind.EPCI),
        ("7348", OrganisationKind.EPCI),
        ("7343", OrganisationKind.EPCI),
        ("7344", OrganisationKind.EPCI),
        ("7361", OrganisationKind.CCAS),
        ("7367", OrganisationKind.CCAS),
        ("7354", OrganisationKind.SYNDICAT),
        ("7355", OrganisationKind.SYNDICAT),
        ("7378", OrganisationKind.REGIE),
        ("7362", OrganisationKind.AUTRE),
        ("7470", OrganisationKind.AUTRE),
        ("5710", None),
        ("9220", None),
    ],
)
def test_legal_categories_map_to_kinds(category: str, kind: OrganisationKind | None) -> None:
    assert sirene.kind_of(category) == kind


@pytest.mark.parametrize(
    ("code", "departement"),
    [("35238", "035"), ("2A004", "02A"), ("2B033", "02B"), ("97411", "974"), ("1234", None)],
)
def test_the_departement_of_a_code_commune(code: str, departement: str | None) -> None:
    assert sirene.departement_of_commune(code) == departement
