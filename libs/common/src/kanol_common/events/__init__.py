"""The event catalog: every event Kanol publishes, one module per publishing domain."""

from kanol_common.events import actes, archive, identity, pes
from kanol_common.events.base import EVENT_TYPES, DocumentRef, EventData

TOPICS: tuple[str, ...] = (identity.TOPIC, actes.TOPIC, archive.TOPIC, pes.TOPIC)

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "DocumentRef",
    "EventData",
    "actes",
    "archive",
    "identity",
    "pes",
]
