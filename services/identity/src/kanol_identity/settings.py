"""identity's settings: the common ones plus where it listens and how long its tokens live."""

from __future__ import annotations

from kanol_common.settings import CommonSettings


class IdentitySettings(CommonSettings):
    service_name: str = "identity"
    host: str = "127.0.0.1"
    port: int = 8001

    access_token_lifetime_seconds: int = 15 * 60
    signing_key_bits: int = 2048
    # A retired signing key stays in the JWKS this long after rotation, so the tokens it
    # signed keep verifying until they expire (their lifetime plus the verifiers' leeway).
    retired_key_grace_seconds: int = 15 * 60 + 120
