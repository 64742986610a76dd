"""The compatibility check catches what would break a consumer, and only that."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from kanol_common.events.export import breaking_changes


class Piece(BaseModel):
    sha256: str
    size: int


class Released(BaseModel):
    acte_id: str
    nature: int
    date_decision: str = Field(json_schema_extra={"format": "date"})
    label: str | None = None
    pieces: tuple[Piece, ...]


def _released() -> dict[str, Any]:
    return Released.model_json_schema(ref_template="#/$defs/{model}")


def test_an_unchanged_schema_is_compatible() -> None:
    assert breaking_changes(_released(), _released()) == []


def test_a_removed_field_is_caught() -> None:
    current = _released()
    del current["properties"]["nature"]
    current["required"].remove("nature")

    assert breaking_changes(_released(), current) == ["nature: field removed"]


def test_a_retyped_field_is_caught() -> None:
    current = _released()
    current["properties"]["nature"] = {"type": "string", "title": "Nature"}

    assert breaking_changes(_released(), current) == ["nature: type changed from integer to string"]


def test_a_changed_format_is_a_type_change() -> None:
    current = _released()
    current["properties"]["date_decision"]["format"] = "date-time"

    assert breaking_changes(_released(), current) == [
        "date_decision: type changed from string:date to string:date-time"
    ]


def test_a_field_made_nullable_is_a_type_change() -> None:
    current = _released()
    current["properties"]["acte_id"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}

    assert breaking_changes(_released(), current) == [
        "acte_id: type changed from string to null | string"
    ]


def test_a_new_required_field_is_caught_and_a_new_optional_one_is_not() -> None:
    current = _released()
    current["properties"]["matiere"] = {"type": "string"}
    current["properties"]["commentaire"] = {"type": "string"}
    current["required"].append("matiere")

    assert breaking_changes(_released(), current) == ["matiere: new required field"]


def test_an_optional_field_made_required_is_caught() -> None:
    current = _released()
    current["required"].append("label")

    assert breaking_changes(_released(), current) == ["label: optional field became required"]


def test_changes_inside_a_referenced_definition_are_caught() -> None:
    current = copy.deepcopy(_released())
    piece = current["$defs"]["Piece"]
    del piece["properties"]["sha256"]
    piece["properties"]["size"] = {"type": "string"}

    assert breaking_changes(_released(), current) == [
        "pieces[].sha256: field removed",
        "pieces[].size: type changed from integer to string",
    ]


def test_renaming_a_nested_model_alone_is_compatible() -> None:
    current = copy.deepcopy(_released())
    current["$defs"]["PieceJointe"] = current["$defs"].pop("Piece")
    current["properties"]["pieces"]["items"] = {"$ref": "#/$defs/PieceJointe"}

    assert breaking_changes(_released(), current) == []
