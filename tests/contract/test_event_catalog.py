"""The committed event catalog matches the models and honours every released version."""

from __future__ import annotations

import difflib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kanol_common.events import EVENT_TYPES, DocumentRef, EventData
from kanol_common.events.actes import ActeAcknowledged
from kanol_common.events.archive import ArchiveDeposited
from kanol_common.events.export import (
    ASYNCAPI_FILE,
    CATALOG_FILE,
    ENVELOPE_DEFINITION,
    REGENERATE_HINT,
    RELEASE_HINT,
    catalog_schema,
    compatibility_problems,
    released_schemas,
    rendered_contracts,
)

CONTRACT_DIR = Path(__file__).resolve().parent


@pytest.mark.parametrize("name", [CATALOG_FILE, ASYNCAPI_FILE])
def test_committed_export_matches_the_models(name: str) -> None:
    expected = rendered_contracts()[name]
    committed_path = CONTRACT_DIR / name
    committed = committed_path.read_text(encoding="utf-8") if committed_path.exists() else ""

    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    f"committed/{name}",
                    f"models/{name}",
                )
            )[:60]
        )
        pytest.fail(
            f"tests/contract/{name} is out of date with the event models. Regenerate it "
            f"with `{REGENERATE_HINT}` and review the change.\n{diff}"
        )


def test_released_versions_are_not_broken() -> None:
    problems = compatibility_problems(CONTRACT_DIR)

    assert not problems, (
        "A released event version changed incompatibly; keep it as released and add the "
        "next version (.v<N+1>) as a new class instead:\n" + "\n".join(problems)
    )


def test_released_files_hold_the_schema_of_their_event_type() -> None:
    released = released_schemas(CONTRACT_DIR)

    assert released, f"no released event version is recorded; run `{RELEASE_HINT}`"
    for event_type, schema in released.items():
        assert schema["x-kanol-event"]["type"] == event_type
        assert schema["$id"].endswith(f"/{event_type}.json")


def test_catalog_is_a_valid_json_schema_document() -> None:
    jsonschema.Draft202012Validator.check_schema(catalog_schema())


def _validator_for(event_type: str) -> jsonschema.Draft202012Validator:
    catalog = catalog_schema()
    schema = {"$ref": f"#/$defs/{event_type}", "$defs": catalog["$defs"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _acknowledged() -> ActeAcknowledged:
    return ActeAcknowledged(
        acte_id="0193a2c4-1111-7000-8000-000000000001",
        siren="213502388",
        identifiant_acte="035-213502388-20240312-2024_45-DE",
        numero_interne="2024_45",
        nature=1,
        matiere="1.1",
        objet="Budget primitif 2024",
        date_decision=date(2024, 3, 12),
        date_reception=date(2024, 3, 13),
        acknowledged_at=datetime(2024, 3, 13, 9, 30, tzinfo=UTC),
        documents=(
            DocumentRef(
                role="acte",
                uri="http://127.0.0.1:8002/v1/actes/x/documents/acte",
                sha256="a" * 64,
                size=1234,
                media_type="application/pdf",
                filename="acte.pdf",
            ),
        ),
    )


def _deposited() -> ArchiveDeposited:
    return ArchiveDeposited(
        archive_id="0193a2c4-2222-7000-8000-000000000002",
        siren="213502388",
        source_event_id="0193a2c4-3333-7000-8000-000000000003",
        source_event_type=ActeAcknowledged.event_type,
        acte_id="0193a2c4-1111-7000-8000-000000000001",
        object_count=1,
        total_size=1234,
        deposited_at=datetime(2024, 3, 13, 9, 31, tzinfo=UTC),
    )


@pytest.mark.parametrize("data", [_acknowledged(), _deposited()], ids=lambda d: d.event_type)
def test_published_data_validates_against_the_catalog(data: EventData) -> None:
    instance = json.loads(data.model_dump_json())

    errors = list(_validator_for(data.event_type).iter_errors(instance))

    assert errors == []


def test_catalog_rejects_data_that_breaks_the_schema() -> None:
    instance: dict[str, Any] = json.loads(_acknowledged().model_dump_json())
    instance["siren"] = "not a siren"
    del instance["objet"]
    instance["documents"][0]["sha256"] = "XYZ"

    messages = sorted(
        e.message for e in _validator_for(ActeAcknowledged.event_type).iter_errors(instance)
    )

    assert len(messages) == 3
    assert any("'objet' is a required property" in message for message in messages)


def test_envelope_attributes_name_every_event_type_and_their_headers() -> None:
    envelope = catalog_schema()["$defs"][ENVELOPE_DEFINITION]

    assert envelope["properties"]["type"]["enum"] == sorted(EVENT_TYPES)
    assert envelope["properties"]["tenant"]["x-kafka-header"] == "ce_tenant"
    assert envelope["properties"]["datacontenttype"]["x-kafka-header"] == "content-type"
    assert {"id", "type", "source", "subject", "time", "tenant"} <= set(envelope["required"])
