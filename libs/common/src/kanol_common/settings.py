"""Settings shared by every service, read from the environment with the ``KANOL_`` prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every service needs to run; each service extends it with its own fields.

    The defaults are the embedded mode of ``make up``: SQLite files and a local folder
    under ``data_dir``, a broker on loopback.
    """

    model_config = SettingsConfigDict(env_prefix="KANOL_", env_file=".env", extra="ignore")

    service_name: str = "kanol"
    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = None
    run_migrations: bool = True

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_client_prefix: str = "kanol"
    # Prepended to every physical topic and consumer group name (outbox, consumers, retry
    # and DLQ topics), so that tests or several platforms can share one broker.
    kafka_topic_prefix: str = ""
    kafka_event_topic_partitions: int = 3
    kafka_replication_factor: int = 1
    kafka_start_timeout_seconds: float = 30.0

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    otlp_endpoint: str | None = None

    identity_url: str = "http://127.0.0.1:8001"
    jwks_url: str | None = None
    token_issuer: str = "http://127.0.0.1:8001"
    token_audience: str = "kanol"

    outbox_poll_seconds: float = 1.0
    outbox_batch_size: int = 200
    readiness_outbox_backlog_limit: int = 10_000
    # Published outbox rows are kept this long (to investigate), then deleted.
    outbox_retention_hours: float = 24.0
    # Inbox rows older than this are deleted; a duplicate arriving later would be handled
    # again, so keep it well above any redelivery or DLQ replay delay. 0 keeps them forever.
    inbox_retention_hours: float = 24.0 * 30
    delivery_cleanup_interval_seconds: float = 600.0

    consumer_batch_size: int = 500
    # A fetched batch is handled in one transaction, committed early once it has been open
    # this long (slow handlers must not hold locks, or SQLite's write lock, for long).
    consumer_transaction_seconds: float = 1.0
    consumer_poll_ms: int = 200
    # Tries of a handler in process, the first included, before the record is parked.
    consumer_handler_attempts: int = 3
    consumer_retry_backoff_seconds: float = 0.2
    # Delay of the first park on ``<group>.retry``; it doubles at each park.
    consumer_retry_delay_seconds: float = 30.0
    # Tries in all, across parks, before the record goes to ``<group>.dlq``.
    consumer_max_attempts: int = 9

    def resolved_database_url(self) -> str:
        """The configured database, or a SQLite file of this service under ``data_dir``."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{self.service_name}.sqlite3").resolve()
        return f"sqlite+aiosqlite:///{path}"

    def resolved_jwks_url(self) -> str:
        return self.jwks_url or f"{self.identity_url.rstrip('/')}/.well-known/jwks.json"
