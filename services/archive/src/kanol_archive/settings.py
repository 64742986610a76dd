"""Settings of archive, read from the environment with the ``KANOL_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kanol_common.settings import CommonSettings
from kanol_common.storage import S3Location

MIB = 1024 * 1024


class ArchiveSettings(CommonSettings):
    """What archive needs on top of the common settings."""

    service_name: str = "archive"
    host: str = "127.0.0.1"
    port: int = 8003

    # The client credentials archive presents to identity to fetch documents from their
    # owners (scope documents:read).
    archive_client_id: str = "archive-service"
    archive_client_secret: str = ""

    # Origins (scheme://host:port) archive may fetch documents from and send its token to.
    # TODO: empty trusts every origin named in an event, so a forged reference on
    # actes.events would receive archive's documents:read token; production sets the owners.
    trusted_document_origins: list[str] = Field(default_factory=list)
    document_fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    # A claim check announcing more than this is refused rather than held in memory.
    max_document_bytes: int = Field(default=200 * MIB, gt=0)

    # SEDA transfers: the archive's identifier as ArchivalAgency, and what a package may be.
    archival_agency_identifier: str = "KANOL-SAE"
    transfer_max_bytes: int = Field(default=2 * 1024 * MIB, gt=0)
    transfer_max_files: int = Field(default=10_000, gt=0)
    transfer_max_unpacked_bytes: int = Field(default=4 * 1024 * MIB, gt=0)
    transfer_max_compression_ratio: int = Field(default=100, gt=1)
    # How long a finished `respond-async` transfer's status and KO reply stay to be fetched
    # (an accepted transfer's ATR stays with its archive).
    pending_transfer_keep_days: float = Field(default=30.0, gt=0)

    # Object storage: "local" (objects_dir) or "s3" (an S3-compatible bucket).
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str = ""
    s3_bucket: str = "kanol-archive"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = "objects/"

    # Trust: the audit's read rate (decimal MB/s, 0 for no limit), how often the logbook's
    # head is published on archive.events, and how often due archives are proposed for
    # elimination (0 turns a periodic task off; the commands stay).
    audit_rate_mb_per_second: float = Field(default=50.0, ge=0)
    # A deposit's logbook entry holds the logbook's lock until its consumer batch commits:
    # short batches keep the reads, each logged too, from waiting behind the deposits (at
    # 1 s a search waited about 0.9 s while deposits ran; at 0.2 s about 0.1 s, for the same
    # deposit rate, bench/archive.py).
    consumer_transaction_seconds: float = 0.2
    logbook_seal_period_seconds: float = Field(default=300.0, ge=0)
    elimination_sweep_period_seconds: float = Field(default=86_400.0, ge=0)

    def s3_location(self) -> S3Location:
        return S3Location(
            endpoint_url=self.s3_endpoint_url,
            bucket=self.s3_bucket,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            region=self.s3_region,
            prefix=self.s3_prefix,
        )

    def objects_dir(self) -> Path:
        return self.data_dir / "archive" / "objects"

    def spool_dir(self) -> Path:
        """Where received packages wait on disk while they are checked."""
        return self.data_dir / "archive" / "spool"
