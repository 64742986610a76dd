"""The event catalog as contracts: a JSON Schema document, an AsyncAPI 3 document, releases.

The catalog is exported, committed under ``tests/contract/`` and checked there against the
models, so a change to an event shows up in review as a change to the contract. Each released
version of an event type is kept in ``released/<ce_type>.json``; a change that would break
its consumers (a field removed or retyped, a new required field) fails the check and needs a
new version of the type instead.

    python -m kanol_common.events.export --write tests/contract
    python -m kanol_common.events.export --check tests/contract
    python -m kanol_common.events.export --release tests/contract

Only the standard library writes the files: the AsyncAPI YAML comes from a small emitter
below, so kanol_common needs no YAML library at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from kanol_common import envelope
from kanol_common.events import EVENT_TYPES, EventData, actes, archive, identity, pes

CATALOG_FILE = "events.schema.json"
ASYNCAPI_FILE = "asyncapi.yaml"
RELEASED_DIR = "released"
DEFAULT_CONTRACT_DIR = Path("tests/contract")

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URI = "https://kanol.fr/schemas/events/"
ENVELOPE_DEFINITION = "CloudEventAttributes"
HEADERS_DEFINITION = "CloudEventKafkaHeaders"
KAFKA_BINDING_VERSION = "0.5.0"

# The service that publishes on each topic: the ``send`` operations of the AsyncAPI document.
PUBLISHERS: Mapping[str, str] = {
    identity.TOPIC: "identity",
    actes.TOPIC: "actes-pes",
    archive.TOPIC: "archive",
    pes.TOPIC: "actes-pes",
}

REGENERATE_HINT = "uv run python -m kanol_common.events.export --write tests/contract"
RELEASE_HINT = "uv run python -m kanol_common.events.export --release tests/contract"

Schema = dict[str, Any]


@dataclass(frozen=True)
class EnvelopeAttribute:
    """One CloudEvents attribute and the Kafka header that carries it in binary mode."""

    name: str
    header: str
    schema: Schema
    description: str
    required: bool = True


def envelope_attributes() -> tuple[EnvelopeAttribute, ...]:
    """The attributes of every Kanol event, as :mod:`kanol_common.envelope` writes them."""
    string: Schema = {"type": "string", "minLength": 1}
    return (
        EnvelopeAttribute(
            "specversion",
            envelope.H_SPECVERSION,
            {"const": envelope.SPEC_VERSION},
            "CloudEvents specification version.",
        ),
        EnvelopeAttribute(
            "id",
            envelope.H_ID,
            {"type": "string", "format": "uuid"},
            "A UUIDv7 naming the event; consumers recognise a redelivered event by it.",
        ),
        EnvelopeAttribute(
            "type",
            envelope.H_TYPE,
            {"type": "string", "pattern": r"^fr\.kanol\.[a-z_]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$"},
            "fr.kanol.<domain>.<entity>.<past-tense-verb>.v<N>: says which data schema applies.",
        ),
        EnvelopeAttribute(
            "source", envelope.H_SOURCE, string, "The name of the publishing service."
        ),
        EnvelopeAttribute(
            "subject",
            envelope.H_SUBJECT,
            string,
            "The id of the aggregate the event is about; also the Kafka record key, so one "
            "aggregate's events stay in order.",
        ),
        EnvelopeAttribute(
            "time",
            envelope.H_TIME,
            {"type": "string", "format": "date-time"},
            "When the event happened (RFC 3339, UTC).",
        ),
        EnvelopeAttribute(
            "tenant",
            envelope.H_TENANT,
            string,
            "Extension attribute: the SIREN of the organisation the event belongs to.",
        ),
        EnvelopeAttribute(
            "datacontenttype",
            envelope.H_CONTENT_TYPE,
            {"const": envelope.CONTENT_TYPE},
            "The record value is the event data as JSON.",
        ),
        EnvelopeAttribute(
            "traceparent",
            envelope.H_TRACEPARENT,
            string,
            "W3C trace context of the operation that caused the event.",
            required=False,
        ),
        EnvelopeAttribute(
            "tracestate",
            envelope.H_TRACESTATE,
            string,
            "W3C trace state, when the trace carries one.",
            required=False,
        ),
    )


# --- JSON Schema -----------------------------------------------------------------------------


def event_types() -> dict[str, type[EventData]]:
    """Every registered event type, sorted by its CloudEvents type."""
    return dict(sorted(EVENT_TYPES.items()))


def event_schema(model: type[EventData]) -> Schema:
    """One event type's data as a self-contained JSON Schema, nested models under ``$defs``.

    This is the form kept for a released version in ``released/<ce_type>.json``.
    """
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}{model.event_type}.json",
        **schema,
        "x-kanol-event": {
            "type": model.event_type,
            "topic": model.topic,
            "publisher": publisher_of(model.topic),
        },
    }


def publisher_of(topic: str) -> str:
    try:
        return PUBLISHERS[topic]
    except KeyError:
        raise ValueError(f"No publishing service is declared for topic {topic}") from None


def _split_definitions(
    schemas: Mapping[str, Schema],
) -> tuple[dict[str, Schema], dict[str, Schema]]:
    """Each event schema without its ``$defs``, and the nested definitions they share."""
    shared: dict[str, Schema] = {}
    events: dict[str, Schema] = {}
    for event_type, schema in schemas.items():
        body = {key: value for key, value in schema.items() if key not in {"$schema", "$id"}}
        for name, definition in body.pop("$defs", {}).items():
            if name in shared and shared[name] != definition:
                raise ValueError(f"Two different nested models are named {name} in the catalog")
            shared[name] = definition
        events[event_type] = body
    return events, shared


def envelope_schema(types: Sequence[str]) -> Schema:
    """The CloudEvents attributes of a Kanol event, each with the header that carries it."""
    properties: dict[str, Schema] = {}
    for attribute in envelope_attributes():
        schema = {**attribute.schema, "description": attribute.description}
        schema["x-kafka-header"] = attribute.header
        properties[attribute.name] = schema
    properties["type"] = {**properties["type"], "enum": list(types)}
    return {
        "title": "CloudEvents attributes",
        "description": (
            "CloudEvents 1.0 in Kafka binary content mode: each attribute travels as the "
            "record header named by x-kafka-header, the data as the JSON record value, the "
            "subject as the record key."
        ),
        "type": "object",
        "properties": properties,
        "required": [attribute.name for attribute in envelope_attributes() if attribute.required],
    }


def catalog_schema() -> Schema:
    """Every event type's data schema under ``$defs``, keyed by its CloudEvents type."""
    types = event_types()
    events, shared = _split_definitions(
        {event_type: event_schema(model) for event_type, model in types.items()}
    )
    clash = set(events) & (set(shared) | {ENVELOPE_DEFINITION})
    if clash:
        raise ValueError(f"Definition names clash with event types: {sorted(clash)}")

    catalog = {
        event_type: {
            "topic": model.topic,
            "publisher": publisher_of(model.topic),
            "data": {"$ref": f"#/$defs/{event_type}"},
        }
        for event_type, model in types.items()
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE_URI}events.schema.json",
        "title": "Kanol event catalog",
        "description": (
            "The data of every Kanol event type, under $defs keyed by its CloudEvents type, "
            "and the envelope attributes every event carries (CloudEventAttributes). "
            f"Generated from the models: {REGENERATE_HINT}"
        ),
        "$defs": {
            **shared,
            **events,
            ENVELOPE_DEFINITION: envelope_schema(list(types)),
        },
        "x-kanol-events": catalog,
    }


# --- AsyncAPI --------------------------------------------------------------------------------


def _rewrite_refs(value: Any, old_prefix: str, new_prefix: str) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                new_prefix + item[len(old_prefix) :]
                if key == "$ref" and isinstance(item, str) and item.startswith(old_prefix)
                else _rewrite_refs(item, old_prefix, new_prefix)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(item, old_prefix, new_prefix) for item in value]
    return value


def headers_schema() -> Schema:
    """The Kafka record headers of a Kanol event, as an AsyncAPI message ``headers`` schema."""
    properties = {
        attribute.header: {
            **attribute.schema,
            "description": f"CloudEvents {attribute.name}: {attribute.description}",
        }
        for attribute in envelope_attributes()
    }
    return {
        "type": "object",
        "properties": properties,
        "required": [item.header for item in envelope_attributes() if item.required],
    }


def _summary(model: type[EventData]) -> str:
    doc = (model.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else model.__name__


def _message(model: type[EventData]) -> Schema:
    ce_type_header: Schema = {
        "type": "object",
        "properties": {envelope.H_TYPE: {"const": model.event_type}},
    }
    return {
        "name": model.__name__,
        "title": f"{model.__name__} ({model.event_type})",
        "summary": _summary(model),
        "contentType": envelope.CONTENT_TYPE,
        "headers": {
            "allOf": [{"$ref": f"#/components/schemas/{HEADERS_DEFINITION}"}, ce_type_header]
        },
        "payload": {"$ref": f"#/components/schemas/{model.event_type}"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The aggregate id (ce_subject)."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operation_id(publisher: str, topic: str) -> str:
    return f"{publisher}.publish.{topic}"


def asyncapi_document() -> Schema:
    """An AsyncAPI 3.0.0 document: a channel per topic, a message per event type."""
    types = event_types()
    events, shared = _split_definitions(
        {event_type: event_schema(model) for event_type, model in types.items()}
    )
    schemas = _rewrite_refs({**shared, **events}, "#/$defs/", "#/components/schemas/")
    schemas[HEADERS_DEFINITION] = headers_schema()

    topics = sorted({model.topic for model in types.values()})
    channels: dict[str, Schema] = {}
    operations: dict[str, Schema] = {}
    for topic in topics:
        publisher = publisher_of(topic)
        on_topic = [event_type for event_type, model in types.items() if model.topic == topic]
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": (
                f"Events published by {publisher}. Consumers select by the ce_type header; "
                "the physical topic name carries the deployment's prefix, if any."
            ),
            "messages": {
                event_type: {"$ref": f"#/components/messages/{event_type}"}
                for event_type in on_topic
            },
        }
        operations[_operation_id(publisher, topic)] = {
            "action": "send",
            "title": f"{publisher} publishes on {topic}",
            "summary": "Published from the service's transactional outbox, at least once.",
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [
                {"$ref": f"#/channels/{topic}/messages/{event_type}"} for event_type in on_topic
            ],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kanol events",
            "version": _catalog_version(),
            "description": (
                "Domain events between Kanol services on Kafka: CloudEvents 1.0 in binary "
                f"content mode. Generated from the models: {REGENERATE_HINT}"
            ),
        },
        "defaultContentType": envelope.CONTENT_TYPE,
        "servers": {
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The single-node broker of make up.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": {event_type: _message(model) for event_type, model in types.items()},
        },
    }


def _catalog_version() -> str:
    try:
        return version("kanol-common")
    except PackageNotFoundError:
        return "0.0.0"


# --- Rendering -------------------------------------------------------------------------------


def render_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_yaml(document: Mapping[str, Any]) -> str:
    """Block-style YAML with sorted keys: the same models always give the same bytes."""
    return yaml.safe_dump(
        dict(document), sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )


def rendered_contracts() -> dict[str, str]:
    """The files of the exported catalog, by name, as they should be committed."""
    return {
        CATALOG_FILE: render_json(catalog_schema()),
        ASYNCAPI_FILE: render_yaml(asyncapi_document()),
    }


# --- Compatibility with released versions ----------------------------------------------------


class _SchemaWalker:
    """Follows local ``$ref``s of one self-contained schema."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, schema: Schema) -> tuple[Schema, str | None]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema, None
        if not ref.startswith("#/"):
            raise ValueError(f"Only local references are supported, not {ref}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target, ref


def _variants(schema: Schema) -> list[Schema]:
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            return list(schema[keyword])
    return [schema]


def _type_signature(schema: Schema, walker: _SchemaWalker) -> frozenset[str]:
    """What values a schema admits, coarsely: JSON types with their format, consts, enums.

    A ``$ref`` stands for what it points to, so renaming a nested model is not a change.
    """
    signature: set[str] = set()
    for variant in _variants(schema):
        resolved, ref = walker.resolve(variant)
        if ref is not None:
            signature |= _type_signature(resolved, walker)
            continue
        if "const" in resolved:
            signature.add(f"const:{json.dumps(resolved['const'], sort_keys=True)}")
            continue
        if "enum" in resolved:
            signature.add(f"enum:{json.dumps(sorted(map(str, resolved['enum'])))}")
            continue
        declared = resolved.get("type", "any")
        for json_type in declared if isinstance(declared, list) else [declared]:
            fmt = resolved.get("format")
            signature.add(f"{json_type}:{fmt}" if fmt else str(json_type))
    return frozenset(signature)


def _describe(signature: frozenset[str]) -> str:
    return " | ".join(sorted(signature))


def _paired_variants(
    released: Schema, current: Schema, walkers: tuple[_SchemaWalker, _SchemaWalker]
) -> Iterator[tuple[Schema, Schema]]:
    """Each released variant of a union with the current variant of the same type."""
    old_walker, new_walker = walkers
    candidates: dict[frozenset[str], list[Schema]] = {}
    for variant in _variants(current):
        candidates.setdefault(_type_signature(variant, new_walker), []).append(variant)
    for variant in _variants(released):
        matches = candidates.get(_type_signature(variant, old_walker))
        if matches:
            yield variant, matches.pop(0)


def _compare(
    released: Schema,
    current: Schema,
    path: str,
    walkers: tuple[_SchemaWalker, _SchemaWalker],
    seen: frozenset[tuple[str, str]],
) -> Iterator[str]:
    old_walker, new_walker = walkers
    old_signature = _type_signature(released, old_walker)
    new_signature = _type_signature(current, new_walker)
    if old_signature != new_signature:
        yield (
            f"{path}: type changed from {_describe(old_signature)} to {_describe(new_signature)}"
        )
        return

    # Same types: look inside each variant (objects by their properties, arrays by items).
    for old_variant, new_variant in _paired_variants(released, current, walkers):
        old, old_ref = old_walker.resolve(old_variant)
        new, new_ref = new_walker.resolve(new_variant)
        if old_ref is not None and new_ref is not None:
            if (old_ref, new_ref) in seen:
                continue
            seen = seen | {(old_ref, new_ref)}
        yield from _compare_object(old, new, path, walkers, seen)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            yield from _compare(old["items"], new["items"], f"{path}[]", walkers, seen)


def _compare_object(
    released: Schema,
    current: Schema,
    path: str,
    walkers: tuple[_SchemaWalker, _SchemaWalker],
    seen: frozenset[tuple[str, str]],
) -> Iterator[str]:
    old_properties: dict[str, Schema] = released.get("properties", {})
    new_properties: dict[str, Schema] = current.get("properties", {})
    prefix = f"{path}." if path else ""
    for name, old_property in old_properties.items():
        if name not in new_properties:
            yield f"{prefix}{name}: field removed"
            continue
        yield from _compare(old_property, new_properties[name], f"{prefix}{name}", walkers, seen)

    old_required = set(released.get("required", []))
    for name in sorted(set(current.get("required", [])) - old_required):
        if name in old_properties:
            yield f"{prefix}{name}: optional field became required"
        else:
            yield f"{prefix}{name}: new required field"


def breaking_changes(released: Schema, current: Schema) -> list[str]:
    """What in ``current`` would break a consumer of the ``released`` version, if anything.

    Walks both self-contained schemas: properties, their types (with formats, following
    ``$ref``s into ``$defs`` and through ``anyOf``/``oneOf``), array items and ``required``.
    A new optional field is compatible. Constraints such as patterns and bounds are not
    compared: a tightened pattern goes unnoticed here.
    """
    walkers = (_SchemaWalker(released), _SchemaWalker(current))
    return list(_compare(released, current, "", walkers, frozenset()))


def released_schemas(contract_dir: Path) -> dict[str, Schema]:
    folder = contract_dir / RELEASED_DIR
    if not folder.is_dir():
        return {}
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.json"))
    }


def compatibility_problems(contract_dir: Path) -> list[str]:
    """Every released version that the current models no longer honour, with the reason."""
    types = event_types()
    problems: list[str] = []
    for event_type, released in released_schemas(contract_dir).items():
        model = types.get(event_type)
        if model is None:
            problems.append(f"{event_type}: released, but no model declares it any more")
            continue
        problems.extend(
            f"{event_type}: {change}" for change in breaking_changes(released, event_schema(model))
        )
    return problems


def outdated_files(contract_dir: Path) -> list[str]:
    """The committed export files that differ from what the models give."""
    outdated: list[str] = []
    for name, text in rendered_contracts().items():
        path = contract_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            outdated.append(name)
    return outdated


def write_contracts(contract_dir: Path) -> list[Path]:
    contract_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in rendered_contracts().items():
        path = contract_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def release_new_versions(contract_dir: Path) -> list[Path]:
    """Record every event type not released yet; a released version is never rewritten."""
    folder = contract_dir / RELEASED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    added: list[Path] = []
    for event_type, model in event_types().items():
        path = folder / f"{event_type}.json"
        if path.exists():
            continue
        path.write_text(render_json(event_schema(model)), encoding="utf-8")
        added.append(path)
    return added


# --- Command line ----------------------------------------------------------------------------


def _check(contract_dir: Path) -> int:
    outdated = outdated_files(contract_dir)
    problems = compatibility_problems(contract_dir)
    for name in outdated:
        print(f"{contract_dir / name} differs from the event models; run: {REGENERATE_HINT}")
    for problem in problems:
        print(f"breaking change to a released event: {problem}")
    if problems:
        print("Keep the released version as it is and add a new version (.v<N+1>) instead.")
    return 1 if outdated or problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kanol_common.events.export",
        description="Export the event catalog as JSON Schema and AsyncAPI, and check it.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    for flag, help_text in (
        ("--write", "write events.schema.json and asyncapi.yaml into DIR"),
        ("--check", "exit 1 if DIR's files differ from the models or break a release"),
        ("--release", "record every event type not released yet under DIR/released/"),
    ):
        action.add_argument(
            flag, metavar="DIR", nargs="?", const=DEFAULT_CONTRACT_DIR, type=Path, help=help_text
        )
    arguments = parser.parse_args(argv)

    if arguments.write is not None:
        for path in write_contracts(arguments.write):
            print(f"wrote {path}")
        return 0
    if arguments.check is not None:
        return _check(arguments.check)

    problems = compatibility_problems(arguments.release)
    if problems:
        return _check(arguments.release)
    added = release_new_versions(arguments.release)
    for path in added:
        print(f"released {path}")
    if not added:
        print("every event type is already released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
