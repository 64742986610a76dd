"""Events published by archive on ``archive.events``."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kanol_common.events.base import EventData

TOPIC = "archive.events"


class ArchiveDeposited(EventData):
    """Documents were deposited in the regional archive, each stored with its SHA-512."""

    event_type = "fr.kanol.archive.archive.deposited.v1"
    topic = TOPIC

    archive_id: str
    siren: str = Field(pattern=r"^[0-9]{9}$")
    source_event_id: str = Field(description="The event that caused the deposit")
    source_event_type: str
    acte_id: str | None = None
    identifiant_acte: str | None = None
    object_count: int = Field(ge=0)
    total_size: int = Field(ge=0)
    deposited_at: datetime
