"""The committed AsyncAPI document is a valid AsyncAPI 3.0.0 document whose refs resolve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

from kanol_common.events import EVENT_TYPES
from kanol_common.events.export import ASYNCAPI_FILE, asyncapi_document, render_yaml

CONTRACT_DIR = Path(__file__).resolve().parent
OFFICIAL_SCHEMA = CONTRACT_DIR / "asyncapi-3.0.0" / "asyncapi.schema.json"


@cache
def _committed() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CONTRACT_DIR / ASYNCAPI_FILE).read_text("utf-8"))
    return document


def _official_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(OFFICIAL_SCHEMA.read_text(encoding="utf-8"))
    # The bundled definitions carry their own $id; crawling registers them, so no
    # reference is fetched over the network.
    registry: Registry[Any] = (DRAFT7.create_resource(schema) @ Registry()).crawl()
    return jsonschema.Draft7Validator(schema, registry=registry)


def test_the_document_is_valid_against_the_official_asyncapi_schema() -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in _official_validator().iter_errors(_committed())
    ]

    assert errors == []


def test_the_official_schema_rejects_a_broken_document() -> None:
    # Proves the validation above can fail: an operation without its channel.
    broken = json.loads(json.dumps(_committed()))
    operation = next(iter(broken["operations"].values()))
    del operation["channel"]
    operation["action"] = "publish"

    assert list(_official_validator().iter_errors(broken))


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    target: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict) and key in target, f"{ref} does not resolve"
        target = target[key]
    return target


def test_every_reference_resolves() -> None:
    document = _committed()
    refs = sorted(set(_refs(document)))

    assert refs
    for ref in refs:
        assert _resolve(document, ref) is not None


def test_operations_send_messages_of_their_own_channel() -> None:
    document = _committed()

    for operation_id, operation in document["operations"].items():
        assert operation["action"] == "send", operation_id
        channel_ref = operation["channel"]["$ref"]
        channel = _resolve(document, channel_ref)
        assert operation["messages"], operation_id
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), operation_id
            assert _resolve(document, message["$ref"]) in channel["messages"].values()


def test_every_event_type_is_a_message_on_its_topic() -> None:
    document = _committed()

    for event_type, model in EVENT_TYPES.items():
        channel = document["channels"][model.topic]
        assert channel["address"] == model.topic
        assert event_type in channel["messages"]
        message = document["components"]["messages"][event_type]
        assert message["payload"] == {"$ref": f"#/components/schemas/{event_type}"}
        type_header = message["headers"]["allOf"][1]["properties"]["ce_type"]
        assert type_header == {"const": event_type}


def test_message_headers_describe_the_cloudevents_kafka_headers() -> None:
    headers = _committed()["components"]["schemas"]["CloudEventKafkaHeaders"]

    assert {"ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "ce_tenant"} <= set(
        headers["required"]
    )
    assert "traceparent" in headers["properties"]


def test_the_yaml_file_reads_back_as_the_generated_document() -> None:
    document = asyncapi_document()

    assert yaml.safe_load(render_yaml(document)) == json.loads(json.dumps(document))
