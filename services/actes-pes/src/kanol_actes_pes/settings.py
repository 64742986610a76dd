"""Settings of actes-pes, read from the environment with the ``KANOL_`` prefix."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field

from kanol_common.settings import CommonSettings

MIB = 1024 * 1024


class ActesPesSettings(CommonSettings):
    """What actes-pes needs on top of the common settings."""

    service_name: str = "actes-pes"
    port: int = 8002
    # Absolute base URL at which other services reach this one: document references in
    # events (claim checks) point below it.
    public_url: str = "http://127.0.0.1:8002"

    # The prefecture's gateway; the simulator listens there in development and tests.
    prefecture_url: str = "http://127.0.0.1:8090"
    prefecture_timeout_seconds: float = 30.0
    # How long one long poll for return messages waits at the gateway.
    prefecture_poll_wait_seconds: float = 20.0

    max_upload_bytes: int = Field(default=20 * MIB, gt=0)
    # A decision older than this is refused as a typing mistake rather than transmitted.
    max_decision_age_days: int = Field(default=5 * 366, gt=0)

    # The envelope's codes (IDCL) of an organisation that has none: the département when
    # neither the acte's metadata nor identity give one; the arrondissement and the nature
    # code when identity holds none for it (an operator sets them there, from the
    # organisation's convention with its prefecture).
    departement: str = Field(default="035", pattern=r"^[09][0-9][0-9AB]$")
    arrondissement: int = Field(default=1, ge=0, le=9)
    nature_collectivite: str = Field(default="31", pattern=r"^[0-9]{2}$")
    adresse_retour: str = "teletransmission@kanol.fr"

    # The version an acte declares when none was recorded at its submission (actes posted
    # before classifications were kept); each acte now declares the one it was checked with.
    classification_date: date = date(2019, 3, 1)
    # The SIREN in the envelope of a classification request (7-1): the operator's own.
    classification_siren: str = Field(default="253514491", pattern=r"^[0-9]{9}$")
    # Ask each département's prefecture for its classification (7-1) at start.
    classification_request_at_start: bool = True

    # Transmissions per hour towards the prefecture (actes and messages); beyond, actes
    # wait in order, shown as waiting_for_capacity.
    prefecture_max_per_hour: int = Field(default=1000, gt=0)
    # A transmitted acte without an acknowledgement this long is reported (event, metric,
    # API field); so is an acte stuck transmitting this long.
    acknowledgement_overdue_seconds: float = Field(default=3600.0, gt=0)
    transmission_stuck_seconds: float = Field(default=900.0, gt=0)
    monitor_poll_seconds: float = Field(default=30.0, gt=0)

    # The transmitter wakes on each submission and polls at this interval as a fallback.
    transmit_poll_seconds: float = Field(default=2.0, gt=0)
    transmit_batch_size: int = Field(default=50, gt=0)
    # Actes sent at once; the gateway's answer, not this process, is what each one waits on.
    transmit_concurrency: int = Field(default=8, gt=0)
    # An acte left "transmitting" this long by a crashed process is recovered.
    transmit_lease_seconds: float = Field(default=120.0, gt=0)
    transmit_retry_base_seconds: float = Field(default=5.0, gt=0)
    transmit_retry_max_seconds: float = Field(default=900.0, gt=0)
    transmit_max_attempts: int = Field(default=12, gt=0)
    # Off in unit tests that drive the transmitter and the receiver by hand.
    background_tasks: bool = True

    # -- PES V2 (kanol_actes_pes.pes) --
    # Hélios's gateway; the Hélios simulator listens there in development and tests.
    helios_url: str = "http://127.0.0.1:8091"
    helios_timeout_seconds: float = 30.0
    # How long one long poll for acknowledgements waits at the gateway.
    helios_poll_wait_seconds: float = 20.0
    # How often the PES_Retour files are fetched.
    pes_retour_poll_seconds: float = Field(default=60.0, gt=0)
    pes_max_upload_bytes: int = Field(default=100 * MIB, gt=0)
    # PEM file of the certification authorities whose signers are trusted. Without it the
    # signatures are verified but their chain is not, and flows say signer_trusted false.
    pes_trust_anchors_file: Path | None = None
    # CRL files (PEM or DER) of those authorities and their intermediates, refreshed by the
    # operator from their distribution points; read at start. A signer revoked at or before
    # its signing time is refused.
    pes_crl_files: list[Path] = Field(default_factory=list)
    # Hélios takes unsigned flows (the signature can be made by other means for some
    # types): by default they are accepted and flagged (signed false); false refuses them.
    pes_accept_unsigned: bool = True
    # A flow deposited this long without a PES_ACQUIT is reported (gauge, log, API field).
    pes_acquit_overdue_seconds: float = Field(default=12 * 3600.0, gt=0)

    def objects_dir(self) -> Path:
        return self.data_dir / "actes-pes" / "objects"
