"""The base of every event's data: frozen Pydantic models registered by their CloudEvents type."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_PREFIX = "fr.kanol."


class EventData(BaseModel):
    """The data of one version of one event type.

    ``event_type`` is the CloudEvents ``type`` (``fr.kanol.<domain>.<entity>.<verb>.v<N>``),
    ``topic`` the topic of the publishing domain. A published version never changes: a
    change that removes or retypes a field needs a new class with the next version.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    topic: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if event_type is None:
            return
        if not event_type.startswith(EVENT_TYPE_PREFIX):
            raise ValueError(f"{cls.__name__}: event type must start with {EVENT_TYPE_PREFIX}")
        if event_type in EVENT_TYPES and EVENT_TYPES[event_type] is not cls:
            raise ValueError(f"{event_type} is declared twice")
        EVENT_TYPES[event_type] = cls


EVENT_TYPES: dict[str, type[EventData]] = {}


class DocumentRef(BaseModel):
    """A claim check: where to fetch a document from its owner, and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(description="What the document is in its flow, e.g. acte, ar_acte")
    uri: str = Field(description="Absolute URL at the owning service's API")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    media_type: str
    filename: str
